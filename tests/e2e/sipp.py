"""Drive SIPp (Debian's sip-tester) from tests: bounded in count and time, loopback only."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "sipp-scenarios"
SIPP = shutil.which("sipp") or "/usr/bin/sipp"


@dataclass
class SippResult:
    rc: int
    out: str
    err: str
    workdir: Path

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def explain(self) -> str:
        logs = "\n".join(p.read_text(errors="replace")[-4000:] for p in self.workdir.glob("*_errors.log"))
        return f"sipp rc={self.rc}\n--- stdout\n{self.out[-4000:]}\n--- stderr\n{self.err[-2000:]}\n--- errors\n{logs}"


def _args(scenario: str | Path, *, target: str | None, local_port: int, transport: str, calls: int,
          users: list[tuple[str, str]] | None, service: str | None, workdir: Path, timeout: float,
          rate: float | None, extra: list[str] | None) -> list[str]:
    path = Path(scenario)
    if not path.is_absolute():
        path = SCENARIOS / path
    args = [SIPP, "-sf", str(path), "-i", "127.0.0.1", "-p", str(local_port), "-t", transport,
            "-m", str(calls), "-timeout", f"{int(timeout)}s", "-nostdin", "-trace_err", "-trace_screen",
            "-timeout_error", "-max_recv_loops", "1000"]
    if target:
        if not target.startswith("127."):
            raise ValueError("SIPp targets must be on loopback")
        args.append(target)
    if users:
        inf = workdir / "users.csv"
        inf.write_text("SEQUENTIAL\n" + "".join(f"{u};{p};\n" for u, p in users))
        args += ["-inf", str(inf)]
    if service:
        args += ["-s", service]
    if rate is not None:
        args += ["-r", str(rate), "-rp", "1000"]
    if extra:
        args += extra
    return args


def run_sipp(scenario: str | Path, *, target: str | None, local_port: int, workdir: Path, transport: str = "u1",
             calls: int = 1, users: list[tuple[str, str]] | None = None, service: str | None = None,
             timeout: float = 30.0, rate: float | None = None, extra: list[str] | None = None) -> SippResult:
    workdir.mkdir(parents=True, exist_ok=True)
    args = _args(scenario, target=target, local_port=local_port, transport=transport, calls=calls, users=users,
                 service=service, workdir=workdir, timeout=timeout, rate=rate, extra=extra)
    proc = subprocess.run(args, cwd=workdir, capture_output=True, timeout=timeout + 15, text=True)
    return SippResult(proc.returncode, proc.stdout, proc.stderr, workdir)


class SippBackground:
    """A SIPp running while the test does other things (a UAS waiting for calls)."""

    def __init__(self, scenario: str | Path, *, local_port: int, workdir: Path, transport: str = "u1",
                 calls: int = 1, timeout: float = 30.0, target: str | None = None,
                 users: list[tuple[str, str]] | None = None, extra: list[str] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.timeout = timeout
        args = _args(scenario, target=target, local_port=local_port, transport=transport, calls=calls,
                     users=users, service=None, workdir=workdir, timeout=timeout, rate=None, extra=extra)
        self.proc = subprocess.Popen(args, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait(self, timeout: float | None = None) -> SippResult:
        try:
            out, err = self.proc.communicate(timeout=timeout if timeout is not None else self.timeout + 15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return SippResult(self.proc.returncode, out, err, self.workdir)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
