"""Sockets and the event loop: UDP and TCP SIP transports."""
