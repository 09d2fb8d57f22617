"""Fixtures for end-to-end tests: a real `trunkline run` subprocess, provisioned through its API."""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.switchproc import SwitchProcess, free_port
from tests.phones.conftest import make_phone  # noqa: F401 -- the pjsua2 phone fixture, shared

pytestmark = pytest.mark.sipp


def _need_sipp() -> None:
    if shutil.which("sipp") is None:
        pytest.fail("SIPp is not installed: `make test` installs it (apt package sip-tester)")


@pytest.fixture(scope="module")
def sipp_switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwitchProcess]:
    """One switch per test module, answering MD5 digests first (SIPp 3.6 knows only MD5)."""
    _need_sipp()
    workdir = tmp_path_factory.mktemp("switch")
    # The brute-force guard is relaxed here: wrong-password tests from 127.0.0.1 must not block
    # the other tests' traffic (the guard has its own test with its own switch).
    sw = SwitchProcess(workdir, env={"TRUNKLINE_AUTH_ALGORITHMS": "MD5",
                                     "TRUNKLINE_SIP_NO_ANSWER_TIMEOUT": "3",
                                     "TRUNKLINE_AUTH_GUARD_SLOW_AFTER": "1000",
                                     "TRUNKLINE_AUTH_GUARD_BLOCK_AFTER": "1000"})
    sw.start()
    yield sw
    rc = sw.stop()
    assert rc == 0, f"switch exited with {rc}:\n{sw.log()}"


@pytest.fixture(scope="module")
def customer(sipp_switch: SwitchProcess) -> dict[str, Any]:
    return sipp_switch.customer("Acme Ltd")


class DeviceFactory:
    """Fresh devices per test, so no test sees another's registrations."""

    def __init__(self, switch: SwitchProcess, customer_id: int) -> None:
        self.switch = switch
        self.customer_id = customer_id
        self.n = 0

    def __call__(self, count: int = 1) -> list[tuple[str, str, str]]:
        """Create ``count`` devices; returns (username, password, extension) each, once the switch knows them."""
        made = []
        for _ in range(count):
            DeviceFactory.serial += 1
            n = DeviceFactory.serial
            user, pw, ext = f"user{n}", f"Pw-{n}-secret!", str(2000 + n)
            self.switch.device(self.customer_id, user, pw, ext, caller_number=f"44207000{n:04d}")
            made.append((user, pw, ext))
        self.switch.wait_provisioned()  # the bound: a new device can register within one second
        return made

    serial = 0


@pytest.fixture
def devices(sipp_switch: SwitchProcess, customer: dict[str, Any]) -> DeviceFactory:
    return DeviceFactory(sipp_switch, customer["id"])


def cdrs(switch: SwitchProcess, *, where: str = "1=1", wait_for: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
    """CDR rows from the switch's SQLite database, waiting until at least ``wait_for`` match."""
    db = switch.workdir / "var" / "trunkline.db"
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        con.row_factory = sqlite3.Row
        try:
            rows = [dict(r) for r in con.execute(f"SELECT * FROM cdrs WHERE {where} ORDER BY id")]
        except sqlite3.OperationalError:
            rows = []
        finally:
            con.close()
        if len(rows) >= wait_for:
            return rows
        time.sleep(0.1)
    return rows


@pytest.fixture
def ports() -> Callable[[], int]:
    taken: set[int] = set()
    return lambda: free_port(taken)


def scenario_expecting(tmp: Path, code: int) -> Path:
    """uac_expect.xml with its EXPECT_CODE placeholder filled in."""
    from tests.e2e.sipp import SCENARIOS

    path = tmp / f"uac_expect_{code}.xml"
    path.write_text((SCENARIOS / "uac_expect.xml").read_text().replace("EXPECT_CODE", str(code)))
    return path


@pytest.fixture
def pg_switch_database(pg_server: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one switch process (dropped afterwards)."""
    import secrets

    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(pg_server)
    admin = f"host={url.host} port={url.port} user={url.username} dbname=postgres"
    name = f"trunkline_e2e_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{pg_server}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
