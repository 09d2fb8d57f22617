"""Start a Trunkline switch for load tests and provision it the way the benchmarks need.

The caller side is an IP device (a customer's PBX recognised by its source address and port,
like a carrier's SIPp load generator), the callee a registered SIP device, so a call is
SIPp UAC -> Trunkline (B2BUA) -> SIPp UAS with no digest round trip, as with the peers.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.e2e.sipp import run_sipp
from tests.e2e.switchproc import SwitchProcess

BENCH_ENV = {
    "TRUNKLINE_AUTH_ALGORITHMS": "MD5",  # SIPp 3.6 computes only MD5 digests
    "TRUNKLINE_LOG_LEVEL": "WARNING",
    "TRUNKLINE_AUTH_GUARD_SLOW_AFTER": "1000000",
    "TRUNKLINE_AUTH_GUARD_BLOCK_AFTER": "1000000",
}


def start_bench_switch(workdir: Path, sip_port: int, *, db_url: str | None = None,
                       extra_env: dict[str, str] | None = None) -> SwitchProcess:
    env = dict(BENCH_ENV)
    env.update(extra_env or {})
    sw = SwitchProcess(workdir, ports=(sip_port,), db_url=db_url, env=env)
    return sw.start()


def provision_call_bench(sw: SwitchProcess, *, uac_port: int, uas_port: int, workdir: Path) -> None:
    """IP device for the UAC's address, device "bench" registered from the UAS's port."""
    cust = sw.customer("Load test")
    sw.api("POST", f"/api/v1/customers/{cust['id']}/ip-devices",
           {"ip": "127.0.0.1", "port": uac_port, "caller_number": "442070000001"}, expect=201)
    sw.device(cust["id"], "bench", "Bench-pass-1!", "1000")
    time.sleep(1.0)
    r = run_sipp("register_auth.xml", target=f"127.0.0.1:{sw.ports[0]}", local_port=uas_port,
                 workdir=workdir / "register-bench", users=[("bench", "Bench-pass-1!")], timeout=15,
                 extra=["-default_behaviors", "all,-abortunexp"])
    if not r.ok:
        raise RuntimeError("could not register the bench device:\n" + r.explain())


def provision_register_bench(sw: SwitchProcess, users: int, workdir: Path) -> Path:
    """``users`` devices sharing one password; returns the SIPp injection file."""
    cust = sw.customer("Registration load")
    lines = ["SEQUENTIAL"]
    client = sw.client
    for i in range(users):
        name = f"r{i:06d}"
        r = client.post(f"/api/v1/customers/{cust['id']}/sip-devices",
                        json={"username": name, "password": "Reg-pass-1!"})
        if r.status_code != 201:
            raise RuntimeError(f"creating {name}: {r.status_code} {r.text}")
        lines.append(f"{name};Reg-pass-1!;")
    time.sleep(1.0)
    path = workdir / "reg-users.csv"
    path.write_text("\n".join(lines) + "\n")
    return path
