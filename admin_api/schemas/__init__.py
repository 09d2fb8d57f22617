"""Pydantic schemas: a Create / Update / Public family per resource.

Create: what a client sends to make one (required fields and documented defaults).
Update: every field optional; only the fields present are changed (PATCH); null is refused
for fields that cannot be empty.  Public: what the API returns (never a secret).
"""
