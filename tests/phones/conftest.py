"""Fixtures for tests that drive pjsua2 phones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.phones.harness import AgentError, Phone, PhoneFactory


@pytest.fixture
def make_phone(tmp_path: Path) -> Iterator[PhoneFactory]:
    """Factory for started phones, each with its logs under ``tmp_path/<name>``.

    All phones are closed at teardown; an agent that crashed or reported an
    internal error fails the test there (its exit is otherwise invisible).
    """
    made: list[Phone] = []

    def factory(name: str, **kwargs: Any) -> Phone:
        # A phone that fails to start has already been cleaned up by start().
        phone = Phone(name, workdir=tmp_path / name, **kwargs).start()
        made.append(phone)
        return phone

    yield factory
    failures: list[str] = []
    for phone in reversed(made):
        try:
            phone.close()
        except AgentError as exc:
            failures.append(str(exc))
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)
