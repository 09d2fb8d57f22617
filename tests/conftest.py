"""Shared pytest configuration: database fixtures (SQLite and a real PostgreSQL) live in tests.dbfixtures."""

pytest_plugins = ["tests.dbfixtures"]
