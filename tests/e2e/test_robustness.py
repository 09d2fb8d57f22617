"""The running switch under garbage, brute force and restarts (real sockets, real processes)."""

from __future__ import annotations

import random
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import cdrs
from tests.e2e.sipp import SippBackground, run_sipp
from tests.e2e.switchproc import SwitchProcess

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(180)]

DATA = Path(__file__).resolve().parents[1] / "data" / "rfc4475"


def _options(port: int, branch: str) -> bytes:
    return (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{branch};rport\r\n"
            f"From: <sip:probe@127.0.0.1>;tag=p{branch}\r\nTo: <sip:127.0.0.1>\r\nCall-ID: {branch}@probe\r\n"
            f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()


def options_udp(port: int, branch: str, timeout: float = 2.0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.bind(("127.0.0.1", 0))
        s.sendto(_options(port, branch), ("127.0.0.1", port))
        data, _ = s.recvfrom(65535)
        return data


def options_tcp(port: int, branch: str, timeout: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(_options(port, branch))
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65535)
            if not chunk:
                break
            buf += chunk
        return buf


@pytest.fixture(scope="module")
def switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwitchProcess]:
    sw = SwitchProcess(tmp_path_factory.mktemp("robust"), env={"TRUNKLINE_AUTH_ALGORITHMS": "MD5"})
    sw.start()
    yield sw
    assert sw.stop() == 0, sw.log()


def test_options_answered_on_every_port_and_transport(switch: SwitchProcess) -> None:
    for port in switch.ports:
        assert options_udp(port, f"u{port}").startswith(b"SIP/2.0 200 OK")
        assert options_tcp(port, f"t{port}").startswith(b"SIP/2.0 200 OK")


def test_garbage_over_udp_and_tcp_does_not_stop_the_switch(switch: SwitchProcess) -> None:
    rng = random.Random(4475)
    port = switch.ports[0]
    torture = [p.read_bytes() for p in sorted(DATA.glob("*.dat"))]
    deadline = time.monotonic() + 30  # bounded in count and in time
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        for i in range(3000):
            if time.monotonic() > deadline:
                break
            kind = i % 4
            if kind == 0:
                data = rng.randbytes(rng.randint(0, 1500))
            elif kind == 1:  # a torture message with random bytes flipped
                src = bytearray(rng.choice(torture))
                for _ in range(rng.randint(1, 20)):
                    src[rng.randrange(len(src))] = rng.randrange(256)
                data = bytes(src)
            elif kind == 2:  # truncated
                src = rng.choice(torture)
                data = src[: rng.randint(0, len(src))]
            else:
                data = rng.choice(torture)
            udp.sendto(data, ("127.0.0.1", port))
    for _ in range(50):  # TCP: garbage streams, half-sent messages, huge Content-Length
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            choice = rng.randrange(3)
            if choice == 0:
                s.sendall(rng.randbytes(rng.randint(1, 5000)))
            elif choice == 1:
                s.sendall(b"INVITE sip:x@y SIP/2.0\r\nContent-Length: 99999999\r\n\r\nabc")
            else:
                s.sendall(rng.choice(torture)[:200])
    time.sleep(0.5)
    assert options_udp(port, "after-garbage").startswith(b"SIP/2.0 200 OK")
    assert options_tcp(port, "after-garbage-tcp").startswith(b"SIP/2.0 200 OK")
    assert switch.proc is not None and switch.proc.poll() is None
    metrics = switch.metrics()
    parse_errors = float(re.search(r"^trunkline_sip_parse_errors_total (\S+)$", metrics, re.M).group(1))  # type: ignore[union-attr]
    assert parse_errors > 100


def test_brute_force_is_slowed_then_blocked(tmp_path: Path, ports: Callable[[], int]) -> None:
    """Wrong passwords from one source: answers slow down, then the source is blocked (log + metric)."""
    sw = SwitchProcess(tmp_path / "bf", env={"TRUNKLINE_AUTH_ALGORITHMS": "MD5",
                                            "TRUNKLINE_AUTH_GUARD_SLOW_AFTER": "2",
                                            "TRUNKLINE_AUTH_GUARD_BLOCK_AFTER": "5",
                                            "TRUNKLINE_AUTH_GUARD_BLOCK_FOR": "60"})
    sw.start()
    try:
        cust = sw.customer("Victim")
        sw.device(cust["id"], "victim", "Right-pass-1!")
        sw.wait_provisioned()
        times = []
        for i in range(4):
            t = time.monotonic()
            r = run_sipp("register_wrong_password.xml", target=f"127.0.0.1:{sw.ports[0]}", local_port=ports(),
                         workdir=tmp_path / f"try{i}", users=[("victim", f"Wrong-{i}!")], timeout=15)
            assert r.ok, r.explain()
            times.append(time.monotonic() - t)
        assert times[-1] > times[0] + 0.2, times  # the third and later failures are answered late
        # The fifth failure starts the block: after it, nothing is answered at all.
        run_sipp("register_wrong_password.xml", target=f"127.0.0.1:{sw.ports[0]}", local_port=ports(),
                 workdir=tmp_path / "try5", users=[("victim", "Wrong-5!")], timeout=15)
        with pytest.raises(TimeoutError):
            options_udp(sw.ports[0], "blocked", timeout=1.5)
        metrics = sw.metrics()
        assert re.search(r"^trunkline_auth_blocks_total 1\.0$", metrics, re.M), metrics
        assert re.search(r"^trunkline_auth_blocked_sources 1\.0$", metrics, re.M), metrics
        assert "blocking 127.0.0.1" in sw.log()
    finally:
        sw.stop()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_registrations_survive_a_restart(tmp_path: Path, ports: Callable[[], int], backend: str,
                                         request: pytest.FixtureRequest) -> None:
    db_url = None
    if backend == "postgresql":
        db_url = request.getfixturevalue("pg_switch_database")
    sw = SwitchProcess(tmp_path / "restart", db_url=db_url, env={"TRUNKLINE_AUTH_ALGORITHMS": "MD5"})
    sw.start()
    try:
        cust = sw.customer("Persistent")
        sw.device(cust["id"], "pa", "Persist-pass-1!", "501")
        sw.device(cust["id"], "pb", "Persist-pass-2!", "502")
        sw.wait_provisioned()
        callee_port = ports()
        r = run_sipp("register_auth.xml", target=f"127.0.0.1:{sw.ports[0]}", local_port=callee_port,
                     workdir=tmp_path / "reg", users=[("pb", "Persist-pass-2!")], timeout=15)
        assert r.ok, r.explain()
        time.sleep(0.5)  # bindings are written behind, within ~100 ms
        assert sw.stop() == 0
        sw.start()  # same database, same var/
        uas = SippBackground("uas_answer.xml", local_port=callee_port, workdir=tmp_path / "uas", timeout=20)
        try:
            r = run_sipp("uac_call.xml", target=f"127.0.0.1:{sw.ports[0]}", local_port=ports(),
                         workdir=tmp_path / "uac", users=[("pa", "Persist-pass-1!")], service="502", timeout=20)
            assert r.ok, r.explain() + sw.log()[-3000:]
            assert uas.wait().ok
        finally:
            uas.stop()
        assert "1 binding(s) restored" in sw.log()
        if backend == "sqlite":
            (cdr,) = cdrs(sw, where="dialled_number = '502'")
            assert cdr["disposition"] == "ANSWERED"
    finally:
        sw.stop()


def test_deleted_device_loses_its_registration_within_a_second(tmp_path: Path, ports: Callable[[], int]) -> None:
    sw = SwitchProcess(tmp_path / "del", env={"TRUNKLINE_AUTH_ALGORITHMS": "MD5"})
    sw.start()
    try:
        cust = sw.customer("Churn")
        caller = sw.device(cust["id"], "ca", "Churn-pass-1!", "601")
        callee = sw.device(cust["id"], "cb", "Churn-pass-2!", "602")
        assert caller and callee
        sw.wait_provisioned()
        r = run_sipp("register_auth.xml", target=f"127.0.0.1:{sw.ports[0]}", local_port=ports(),
                     workdir=tmp_path / "reg", users=[("cb", "Churn-pass-2!")], timeout=15)
        assert r.ok
        sw.api("PATCH", f"/api/v1/customers/{cust['id']}/sip-devices/{callee['id']}", {"status": "inactive"},
               expect=200)
        sw.wait_provisioned()
        # The callee is now unknown to routing: 404, not a ring to a stale binding.
        from tests.e2e.conftest import scenario_expecting

        r = run_sipp(scenario_expecting(tmp_path, 404), target=f"127.0.0.1:{sw.ports[0]}", local_port=ports(),
                     workdir=tmp_path / "uac", users=[("ca", "Churn-pass-1!")], service="602", timeout=15)
        assert r.ok, r.explain()
        assert "dropped 1 binding(s) of device" in sw.log()
    finally:
        sw.stop()


def test_first_start_generates_an_admin_token_printed_once_and_stored_hashed(tmp_path: Path) -> None:
    import os
    import stat

    import httpx

    sw = SwitchProcess(tmp_path / "token", env={"TRUNKLINE_ADMIN_TOKEN": ""})
    sw.start()
    try:
        token_file = sw.workdir / "var" / "admin-token"
        token = token_file.read_text().strip()
        assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
        assert sw.log().count(token) == 1  # printed once
        ok = httpx.get(f"{sw.base_url}/api/v1/customers", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        bad = httpx.get(f"{sw.base_url}/api/v1/customers", headers={"Authorization": "Bearer wrong"})
        assert bad.status_code == 401
        assert sw.stop() == 0
        sw.start()  # second start: nothing new printed, the same token still works
        assert sw.log().count(token) == 1
        again = httpx.get(f"{sw.base_url}/api/v1/customers", headers={"Authorization": f"Bearer {token}"})
        assert again.status_code == 200
    finally:
        sw.stop()
    # Only the token's hash is at rest.
    assert token.encode() not in (sw.workdir / "var" / "trunkline.db").read_bytes()


def test_stopped_customer_is_refused_within_a_second_and_resumed(tmp_path: Path, ports: Callable[[], int]) -> None:
    """Issue 4: a customer stopped through the API has its calls refused (403 "Customer account
    stopped", tests/core checks the phrase) within one second, with a CDR; resumed, it calls again."""
    from tests.e2e.conftest import scenario_expecting

    sw = SwitchProcess(tmp_path / "stop", env={"TRUNKLINE_AUTH_ALGORITHMS": "MD5"})
    sw.start()
    try:
        cust = sw.customer("Stoppable")
        assert sw.device(cust["id"], "sa", "Stop-pass-1!", "701")
        assert sw.device(cust["id"], "sb", "Stop-pass-2!", "702")  # never registers: 480 while active
        sw.wait_provisioned()

        def call(expect: int, name: str) -> None:
            r = run_sipp(scenario_expecting(tmp_path, expect), target=f"127.0.0.1:{sw.ports[0]}", local_port=ports(),
                         workdir=tmp_path / name, users=[("sa", "Stop-pass-1!")], service="702", timeout=15)
            assert r.ok, r.explain()

        call(480, "active")
        sw.api("POST", f"/api/v1/customers/{cust['id']}/stop", {"reason": "unpaid invoice"}, expect=200)
        sw.wait_provisioned()
        call(403, "stopped")
        rows = cdrs(sw, where="sip_code = 403")
        assert rows[-1]["disposition"] and rows[-1]["customer_id"] == cust["id"]
        sw.api("POST", f"/api/v1/customers/{cust['id']}/resume", {"reason": "paid"}, expect=200)
        sw.wait_provisioned()
        call(480, "resumed")
    finally:
        sw.stop()
