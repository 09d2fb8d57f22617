"""Test phones: pjsua2 user agents driven over a JSON pipe, one subprocess per phone.

``tests.phones.agent`` is the subprocess program, ``tests.phones.harness`` the API tests use.
"""
