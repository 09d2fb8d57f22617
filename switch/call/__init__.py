"""Call control: the switch core (the transaction user) and the B2BUA."""
