"""Run the real `trunkline run` in a subprocess for end-to-end tests (loopback only)."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port(exclude: set[int] | None = None) -> int:
    """A port free for both UDP and TCP on loopback."""
    exclude = exclude or set()
    for _ in range(200):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in exclude and port_free(port):
            exclude.add(port)
            return port
    raise RuntimeError("no free port")


def sip_ports(preferred: tuple[int, ...] = (5060, 6060)) -> tuple[int, ...]:
    """The real SIP ports when they are free (the issue asks for 5060 and 6060), else free ones."""
    if all(port_free(p) for p in preferred):
        return preferred
    taken: set[int] = set()
    return tuple(free_port(taken) for _ in preferred)


class SwitchProcess:
    def __init__(self, workdir: Path, *, db_url: str | None = None, ports: tuple[int, ...] | None = None,
                 env: dict[str, str] | None = None, api_port: int | None = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_url = db_url
        self.ports = ports or sip_ports()
        self.api_port = api_port or free_port(set(self.ports))
        self.token = secrets.token_urlsafe(24)
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "switch.log"
        self._client: httpx.Client | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, timeout: float = 30.0) -> SwitchProcess:
        env = dict(os.environ)
        env.update({
            "TRUNKLINE_VAR_DIR": str(self.workdir / "var"),
            "TRUNKLINE_SIP_HOST": "127.0.0.1",
            "TRUNKLINE_SIP_PORTS": ",".join(str(p) for p in self.ports),
            "TRUNKLINE_API_PORT": str(self.api_port),
            "TRUNKLINE_ADMIN_TOKEN": self.token,
            "TRUNKLINE_LOG_LEVEL": "INFO",
        })
        if self.db_url:
            env["TRUNKLINE_DATABASE_URL"] = self.db_url
        env.update(self.extra_env)
        log = open(self.log_path, "ab")  # noqa: SIM115 -- kept open for the child's lifetime
        self.proc = subprocess.Popen([sys.executable, "-m", "trunkline", "run"], cwd=self.workdir, env=env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"switch exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"switch did not become healthy in {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 15.0) -> int | None:
        if self._client is not None:
            self._client.close()
            self._client = None
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(5)

    def provisioned(self) -> int:
        """The last provisioning change the running switch's directory reflects (its metric)."""
        text = httpx.get(f"{self.base_url}/metrics", timeout=2.0).text
        match = re.search(r"^trunkline_provisioning_change (\S+)$", text, re.MULTILINE)
        assert match, "no trunkline_provisioning_change metric"
        return int(float(match.group(1)))

    def wait_provisioned(self, timeout: float = 1.0) -> float:
        """Wait until the switch reflects every provisioning change written so far (the promise:
        within one second of the API call); the seconds it took."""
        url = self.db_url or f"sqlite:///{self.workdir / 'var' / 'trunkline.db'}"
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.connect() as conn:
                written = int(conn.execute(sqlalchemy.text("SELECT coalesce(max(id), 0) FROM changes")).scalar_one())
        finally:
            engine.dispose()
        took = wait_for(lambda: self.provisioned() >= written, timeout)
        assert took is not None, f"change {written} not reflected by the switch within {timeout} s"
        return took

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def children(self, command: str | None = None) -> list[int]:
        """Pids of the switch's child processes (the billing sidecar), optionally only those
        whose command line contains ``command`` (e.g. "billing")."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        pids: list[int] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state
            if ppid == self.proc.pid and (command is None or command in cmdline):
                pids.append(int(entry.name))
        return sorted(pids)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except OSError:
            return ""

    # -- admin API ----------------------------------------------------------------------------
    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.base_url, timeout=10.0,
                                        headers={"Authorization": f"Bearer {self.token}"})
        return self._client

    def api(self, method: str, path: str, json: Any = None, expect: int | None = None) -> Any:
        r = self.client.request(method, path, json=json)
        if expect is not None and r.status_code != expect:
            raise AssertionError(f"{method} {path} -> {r.status_code} {r.text}")
        return r.json() if r.content else None

    def customer(self, name: str, **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.api("POST", "/api/v1/customers", {"name": name, **fields}, expect=201)
        return result

    def device(self, customer_id: int, username: str, password: str, extension: str | None = None,
               **fields: Any) -> dict[str, Any]:
        body = {"username": username, "password": password, **fields}
        if extension is not None:
            body["extension"] = extension
        result: dict[str, Any] = self.api("POST", f"/api/v1/customers/{customer_id}/sip-devices", body, expect=201)
        return result

    def metrics(self) -> str:
        return httpx.get(f"{self.base_url}/metrics", timeout=5).text

    def __enter__(self) -> SwitchProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
