"""Whole-core tests: the SwitchCore with real transactions, a fake network and a hand clock."""
