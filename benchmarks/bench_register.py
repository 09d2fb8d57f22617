"""CPU cost of one digest registration inside the switch, without sockets.

REGISTER -> 401 (stateless challenge) -> REGISTER with MD5 credentials -> 200, as SIPp's
register_auth.xml does it, through the real parser, transaction layer, registrar and digest code.
The client's digest computation is not timed; CPU time of the thread (time.thread_time), so
other load on the machine does not inflate the figure.  Run:

    .venv/bin/python -m benchmarks.bench_register [--registrations 20000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from typing import Any

from benchmarks.bench_core import SWITCH, Net, Sink
from switch.call.core import CoreConfig, SwitchCore
from switch.ports import CustomerInfo, DeviceInfo, IpDeviceInfo
from switch.registrar.auth import DeviceAuth
from switch.registrar.guard import AuthGuard
from switch.registrar.registrar import Registrar
from switch.sip import ids
from switch.sip.digest import DigestAuthenticator, ha1, make_authorization
from switch.sip.message import parse_message
from switch.transaction.peer import Peer
from switch.transaction.timers import TimerQueue

USERS = 2000
PASSWORD = "Reg-pass-1!"
CLIENT = Peer("udp", "127.0.0.1", 5061, 5070)


class Directory:
    def __init__(self) -> None:
        self.cust = CustomerInfo(id=1, name="bench", status="active")
        self.devices = {
            f"r{i:06d}": DeviceInfo(id=i + 1, customer_id=1, username=f"r{i:06d}", realm="trunkline",
                                    ha1_md5=ha1("MD5", f"r{i:06d}", "trunkline", PASSWORD),
                                    ha1_sha256=ha1("SHA-256", f"r{i:06d}", "trunkline", PASSWORD))
            for i in range(USERS)
        }

    def device_by_username(self, username: str) -> DeviceInfo | None:
        return self.devices.get(username)

    def device_by_id(self, device_id: int) -> DeviceInfo | None:
        return None

    def device_by_extension(self, customer_id: int, extension: str) -> DeviceInfo | None:
        return None

    def ip_device_by_source(self, ip: str, port: int) -> IpDeviceInfo | None:
        return None

    def customer(self, customer_id: int) -> CustomerInfo | None:
        return self.cust


def register_text(i: int, cseq: int, auth: str | None) -> bytes:
    user = f"r{i % USERS:06d}"
    lines = ["REGISTER sip:127.0.0.1:5070 SIP/2.0",
             f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-7-{i}-{cseq};rport",
             "Max-Forwards: 70", f"From: <sip:{user}@127.0.0.1>;tag={i}", f"To: <sip:{user}@127.0.0.1>",
             f"Call-ID: {i}-7@127.0.0.1", f"CSeq: {cseq} REGISTER",
             f"Contact: <sip:{user}@127.0.0.1:5061;transport=UDP>", "Expires: 300"]
    if auth:
        lines.append(f"Authorization: {auth}")
    lines += ["User-Agent: SIPp", "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def run(n: int, profile: bool) -> float:
    clock = [1000.0]
    net = Net()
    timers = TimerQueue()
    directory = Directory()
    sink: Any = Sink()
    auth = DeviceAuth(directory, DigestAuthenticator(algorithms=["MD5"]), AuthGuard())
    registrar = Registrar(directory, auth, sink, to_tag=ids.new_tag, wall=lambda: clock[0] + 1.7e9)
    core = SwitchCore(sender=net, timers=timers, directory=directory, registrar=registrar, auth=auth, cdr_sink=sink,
                      local_address=lambda peer: SWITCH, config=CoreConfig(), wall=lambda: clock[0] + 1.7e9,
                      mono=lambda: clock[0])
    pr = cProfile.Profile() if profile else None
    spent = 0.0
    for i in range(n):
        clock[0] += 0.0002
        first = register_text(i, 1, None)
        t = time.thread_time()
        if pr:
            pr.enable()
        core.receive(parse_message(first), CLIENT, clock[0])
        if pr:
            pr.disable()
        spent += time.thread_time() - t
        (data, _peer), = net.out
        net.out.clear()
        challenge = parse_message(data)
        value = challenge.headers["www-authenticate"][0]
        user = f"r{i % USERS:06d}"
        authz = make_authorization(value, method="REGISTER", uri="sip:127.0.0.1:5070", username=user,
                                   password=PASSWORD)
        second = register_text(i, 2, authz)
        t = time.thread_time()
        if pr:
            pr.enable()
        core.receive(parse_message(second), CLIENT, clock[0])
        if pr:
            pr.disable()
        spent += time.thread_time() - t
        ((data, _peer),) = net.out
        net.out.clear()
        assert data.startswith(b"SIP/2.0 200"), data[:200]
        if i % 1000 == 999:
            t = time.thread_time()
            timers.run_due(clock[0])
            spent += time.thread_time() - t
    if pr:
        pstats.Stats(pr).sort_stats("tottime").print_stats(20)
    return spent / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--registrations", type=int, default=20000)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    from trunkline.app import tune_gc

    tune_gc()
    per = run(args.registrations, args.profile)
    print(f"switch CPU per digest registration (2 REGISTERs in, 2 answers out, no syscalls): {per * 1e6:.0f} us "
          f"-> {1 / per:.0f} registrations/s on one core")


if __name__ == "__main__":
    main()
