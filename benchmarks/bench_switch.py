"""Calls per second through Trunkline, sippy's B2BUA and Kamailio, side by side in one run.

Every system is driven by the same SIPp step harness (benchmarks/peers/run-sipp-step.sh, a copy
of shared/bench/peers with a `custom` scenario mode added): SIPp UAC -> system -> SIPp UAS, the
offered rate stepped up, a step passing with < 0.1 % failed calls among calls whose BYE
completed, every call finished, and >= 95 % of the offered rate achieved.  The systems run one
after another, never together (the machine has 2 cores).

    .venv/bin/python -m benchmarks.bench_switch                     # everything, ~25 min
    .venv/bin/python -m benchmarks.bench_switch --only trunkline --rates "500 1000" --duration 10

Trunkline runs as `trunkline run` (SQLite, uvloop): the caller side is an IP device (the SIPp
UAC's address and port), the callee the device "bench" registered from the UAS's port.
REGISTER with digest: SIPp's register_auth.xml (REGISTER, 401, REGISTER with MD5 credentials,
200) over `--reg-users` devices, stepped the same way; Kamailio's registrar without
authentication is run for reference.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.switch_setup import provision_call_bench, provision_register_bench, start_bench_switch

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
ROOT = HERE.parent
PORT_BASE = 25000
UAC, UAS, SRV = PORT_BASE + 61, PORT_BASE + 62, PORT_BASE + 70


def step(label: str, target_pid: int, rates: str, duration: int, out: Path, *, mode: str = "invite",
         env: dict[str, str] | None = None) -> str:
    cmd = ["bash", str(PEERS / "run-sipp-step.sh"), "-t", f"127.0.0.1:{SRV}", "-P", str(target_pid), "-r", rates,
           "-d", str(duration), "-u", str(UAS if mode == "invite" else 0), "-c", str(UAC), "-m", mode, "-l", label,
           "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})},
                         timeout=len(rates.split()) * (duration * 3 + 60) + 120)
    sys.stdout.write(res.stdout)
    sys.stdout.flush()
    if res.returncode != 0:
        sys.stderr.write(res.stderr[-3000:])
    return res.stdout


def run_trunkline(args: argparse.Namespace, out: Path) -> None:
    work = out / "trunkline-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sw = start_bench_switch(work, SRV)
    try:
        assert sw.proc is not None
        provision_call_bench(sw, uac_port=UAC, uas_port=UAS, workdir=work)
        print(f"\n## Trunkline B2BUA (pid {sw.proc.pid})", flush=True)
        step("trunkline-b2bua", sw.proc.pid, args.rates, args.duration, out / "trunkline-b2bua")
    finally:
        sw.stop()
    if not args.reg_rates:
        return
    # REGISTER runs on a fresh switch and database, as each peer gets a fresh process: the call
    # steps leave their CDRs for the billing sidecar to rate, which must not be measured here.
    work = out / "trunkline-register-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sw = start_bench_switch(work, SRV)
    try:
        assert sw.proc is not None
        inf = provision_register_bench(sw, args.reg_users, work)
        print(f"\n## Trunkline REGISTER with digest ({args.reg_users} devices)", flush=True)
        step("trunkline-register-digest", sw.proc.pid, args.reg_rates, args.duration, out / "trunkline-register",
             mode="custom", env={"CUSTOM_SF": str(ROOT / "sipp-scenarios" / "register_auth.xml"),
                                 "CUSTOM_INF": str(inf)})
    finally:
        sw.stop()


def run_peer(script: str, args_list: list[str], out: Path, label: str) -> None:
    print(f"\n## {label}", flush=True)
    env = {**os.environ, "UAC_PORT": str(UAC), "UAS_PORT": str(UAS), "KAM_PORT": str(SRV), "B2B_PORT": str(SRV),
           "OUT": str(out)}
    res = subprocess.run(["bash", str(PEERS / script), *args_list], capture_output=True, text=True, env=env,
                         timeout=3600)
    sys.stdout.write(res.stdout)
    if res.returncode != 0:
        sys.stderr.write(res.stderr[-3000:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="250 500 750 1000 1250 1500 1750")
    ap.add_argument("--reg-rates", default="1000 2500 5000 6000 7000")
    ap.add_argument("--reg-users", type=int, default=2000)
    ap.add_argument("--sippy-rates", default="150 200 250")
    ap.add_argument("--kamailio-rates", default="2000 2500 3000 3500")
    ap.add_argument("--kamailio-reg-rates", default="8000 16000")
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--only", default="trunkline sippy kamailio")
    ap.add_argument("--out", default=f"/tmp/trunkline-bench-{dt.datetime.now():%Y%m%d-%H%M%S}")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
               platform.processor())
    print(f"# bench_switch {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC  host={platform.node()} cores={os.cpu_count()} "
          f"cpu={cpu}  python={platform.python_version()}  out={out}", flush=True)
    only = args.only.split()
    if "trunkline" in only:
        run_trunkline(args, out)
    if "sippy" in only:
        run_peer("bench-sippy.sh", ["-r", args.sippy_rates, "-d", str(args.duration)], out / "sippy",
                 "sippy 2.x b2bua_simple (Python B2BUA)")
    if "kamailio" in only:
        run_peer("bench-kamailio.sh", ["tm", "-r", args.kamailio_rates, "-d", str(args.duration)],
                 out / "kamailio-tm", "Kamailio tm+rr stateful proxy")
        if args.kamailio_reg_rates:
            run_peer("bench-kamailio.sh", ["registrar", "-r", args.kamailio_reg_rates, "-d", str(args.duration)],
                     out / "kamailio-registrar", "Kamailio registrar (no authentication)")


if __name__ == "__main__":
    main()
