"""CPU cost of one B2BUA call inside the switch, without sockets: the hot path measured alone.

A scripted caller (the messages SIPp's built-in `uac` sends) and callee (SIPp's `uas`) talk to a
real :class:`SwitchCore` through the real parser; only the switch's own work is timed
(parse + transactions + call logic + serialization, thread CPU time), so the figure is the switch's per-call
Python cost, the part of the budget we control.  Run:

    .venv/bin/python -m benchmarks.bench_core [--calls 20000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from typing import Any

from switch.call.core import CoreConfig, SwitchCore
from switch.ports import CustomerInfo, DeviceInfo, IpDeviceInfo
from switch.registrar.auth import DeviceAuth
from switch.registrar.guard import AuthGuard
from switch.registrar.location import Binding
from switch.registrar.registrar import Registrar
from switch.sip import ids
from switch.sip.digest import DigestAuthenticator
from switch.sip.message import SipMessage, parse_message
from switch.transaction.peer import Peer
from switch.transaction.timers import TimerQueue

SWITCH = ("127.0.0.1", 5070)
UAC = Peer("udp", "127.0.0.1", 5061, 5070)
UAS = Peer("udp", "127.0.0.1", 5062, 5070)

SDP = (b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
       b"t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


class Directory:
    def __init__(self) -> None:
        self.cust = CustomerInfo(id=1, name="bench", status="active")
        self.dev = DeviceInfo(id=1, customer_id=1, username="bench", realm="trunkline", ha1_md5="x", ha1_sha256="y",
                              extension="1000")
        self.ipdev = IpDeviceInfo(id=1, customer_id=1, ip="127.0.0.1", port=5061, caller_number="442070000001")

    def device_by_username(self, username: str) -> DeviceInfo | None:
        return self.dev if username == "bench" else None

    def device_by_id(self, device_id: int) -> DeviceInfo | None:
        return self.dev if device_id == 1 else None

    def device_by_extension(self, customer_id: int, extension: str) -> DeviceInfo | None:
        return self.dev if extension == "1000" else None

    def ip_device_by_source(self, ip: str, port: int) -> IpDeviceInfo | None:
        return self.ipdev if (ip, port) == ("127.0.0.1", 5061) else None

    def customer(self, customer_id: int) -> CustomerInfo | None:
        return self.cust


class Sink:
    def __init__(self) -> None:
        self.n = 0

    def emit(self, record: Any) -> None:
        self.n += 1

    def saved(self, binding: Binding) -> None:
        pass

    def removed(self, aor: str, contact: str) -> None:
        pass


class Net:
    """Collects what the switch sends, per destination port."""

    def __init__(self) -> None:
        self.out: list[tuple[bytes, Peer]] = []

    def send(self, data: bytes, peer: Peer) -> bool:
        self.out.append((data, peer))
        return True


def _hdrs(msg: SipMessage, *names: str) -> str:
    return "".join(f"{n}: {v}\r\n" for n in names for v in msg.headers.get(n.lower(), ()))


def build_switch() -> tuple[SwitchCore, Net, TimerQueue, list[float]]:
    clock = [1000.0]
    net = Net()
    timers = TimerQueue()
    directory = Directory()
    sink = Sink()
    auth = DeviceAuth(directory, DigestAuthenticator(), AuthGuard())
    registrar = Registrar(directory, auth, sink, to_tag=ids.new_tag, wall=lambda: clock[0] + 1.7e9)
    registrar.load([Binding(aor="bench", device_id=1, contact="sip:bench@127.0.0.1:5062", expires_at=clock[0] + 2e9,
                            call_id="x", cseq=1, source_ip="127.0.0.1", source_port=5062, transport="udp",
                            local_port=5070)])
    core = SwitchCore(sender=net, timers=timers, directory=directory, registrar=registrar, auth=auth, cdr_sink=sink,
                      local_address=lambda peer: SWITCH, config=CoreConfig(), wall=lambda: clock[0] + 1.7e9,
                      mono=lambda: clock[0])
    return core, net, timers, clock


def run(calls: int, profile: bool) -> float:
    core, net, timers, clock = build_switch()
    spent = 0.0
    pr = cProfile.Profile() if profile else None

    def feed(data: bytes, peer: Peer) -> None:
        nonlocal spent
        t = time.thread_time()
        if pr:
            pr.enable()
        msg = parse_message(data)
        core.receive(msg, peer, clock[0])
        if pr:
            pr.disable()
        spent += time.thread_time() - t

    def take(port: int) -> list[SipMessage]:
        msgs = [parse_message(d) for d, p in net.out if p.port == port]
        net.out = [(d, p) for d, p in net.out if p.port != port]
        return msgs

    for i in range(calls):
        clock[0] += 0.001
        cid = f"{i}-bench@127.0.0.1"
        inv = (f"INVITE sip:bench@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-{i}-0\r\n"
               f"From: sipp <sip:sipp@127.0.0.1:5061>;tag={i}SIPpTag00\r\nTo: bench <sip:bench@127.0.0.1:5070>\r\n"
               f"Call-ID: {cid}\r\nCSeq: 1 INVITE\r\nContact: sip:sipp@127.0.0.1:5061\r\nMax-Forwards: 70\r\n"
               f"Subject: Performance Test\r\nContent-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n")
        feed(inv.encode() + SDP, UAC)
        take(5061)  # 100 Trying
        (b_inv,) = take(5062)
        base = _hdrs(b_inv, "Via", "From", "To", "Call-ID", "CSeq")
        to_tagged = base.replace(f"To: {b_inv.headers['to'][0]}", f"To: {b_inv.headers['to'][0]};tag=uas{i}")
        feed(f"SIP/2.0 100 Trying\r\n{base}Content-Length: 0\r\n\r\n".encode(), UAS)
        feed(f"SIP/2.0 180 Ringing\r\n{to_tagged}Contact: <sip:127.0.0.1:5062>\r\nContent-Length: 0\r\n\r\n".encode(),
             UAS)
        feed(f"SIP/2.0 200 OK\r\n{to_tagged}Contact: <sip:127.0.0.1:5062>\r\nContent-Type: application/sdp\r\n"
             f"Content-Length: {len(SDP)}\r\n\r\n".encode() + SDP, UAS)
        msgs = take(5061)
        ok = next(m for m in msgs if m.status == 200)
        to = ok.headers["to"][0]
        feed((f"ACK sip:bench@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-{i}-5\r\n"
              f"From: sipp <sip:sipp@127.0.0.1:5061>;tag={i}SIPpTag00\r\nTo: {to}\r\nCall-ID: {cid}\r\n"
              f"CSeq: 1 ACK\r\nContact: sip:sipp@127.0.0.1:5061\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
              ).encode(), UAC)
        take(5062)  # ACK to the callee
        feed((f"BYE sip:bench@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-{i}-7\r\n"
              f"From: sipp <sip:sipp@127.0.0.1:5061>;tag={i}SIPpTag00\r\nTo: {to}\r\nCall-ID: {cid}\r\n"
              f"CSeq: 2 BYE\r\nContact: sip:sipp@127.0.0.1:5061\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
              ).encode(), UAC)
        take(5061)  # 200 for the BYE
        (bye,) = take(5062)
        bye_ok = f"SIP/2.0 200 OK\r\n{_hdrs(bye, 'Via', 'From', 'To', 'Call-ID', 'CSeq')}Content-Length: 0\r\n\r\n"
        feed(bye_ok.encode(), UAS)
        if i % 1000 == 999:
            t = time.thread_time()
            timers.run_due(clock[0])
            spent += time.thread_time() - t
    assert not core.calls, f"{len(core.calls)} calls left over"
    if pr:
        stats = pstats.Stats(pr)
        stats.sort_stats("tottime").print_stats(25)
    return spent / calls


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    from trunkline.app import tune_gc

    tune_gc()  # as `trunkline run` does
    per_call = run(args.calls, args.profile)
    print(f"switch CPU per call (7 messages in, 7 out, no syscalls): {per_call * 1e6:.0f} us "
          f"-> {1 / per_call:.0f} calls/s on one core")


if __name__ == "__main__":
    main()
