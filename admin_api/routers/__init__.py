"""Thin routers: parse, call one repository function, commit, serialise."""
