"""Drive real SIP phones (pjsua2 user agents) from tests, one subprocess per phone.

Usage::

    with Phone("alice") as a, Phone("bob") as b:
        b.set_answer("auto")
        a.call(b.uri)
        a.wait_call_state("CONFIRMED")
        a.dtmf("1234#")
        assert b.collect_dtmf(5) == "1234#"

Each ``Phone`` runs ``python -m tests.phones.agent`` and talks to it with
newline-delimited JSON.  Every wait is bounded; on a timeout the error lists
the events seen and the tail of the agent's stderr and pjsip log.

Protocol (commands on the agent's stdin, events on its stdout)
--------------------------------------------------------------
Every command may carry an ``id``; it is echoed in the single answer, either
``{"ev":"ok","cmd":...,"id":...,<extra>}`` or ``{"ev":"error","cmd":...,"id":...,"message":...}``.
Events a command causes synchronously (``hangup`` -> ``call_state`` DISCONNECTED)
may be written before its ``ok``.  Every event carries ``t`` (seconds since the
agent started).  Commands act on the most recent live call unless given ``call_id``;
``call`` uses the registered account if there is one (else the local, registrar-less
one) unless given ``account``.

Commands (optional fields in brackets):

* ``ping`` -> ok ``port``;  ``status`` -> ok ``calls, registration, answer, playing, recording``
* ``register registrar user [password realm="*" auth_user domain transport expires=300 timeout]``
  -> ok ``aor, registrar``; then ``reg_state``.  ``timeout`` (s) makes the agent report
  ``reg_state`` 408 with ``local: true`` if pjsip has no verdict by then (pjsip's own
  UDP timeout is 32 s and not adjustable from pjsua2).
* ``unregister`` -> ok ``was_active``; then ``reg_state`` with ``active: false``.
* ``call uri [headers={name: value} account="local"|"registered"]`` -> ok ``call_id, sip_call_id, account``
* ``set_answer [mode="auto"|"ring"|"busy"|"decline"|"none" code delay=0.0]`` -> ok ``mode, code, delay``.
  auto = 180 then ``code`` (200) after ``delay``; ring = 180 and wait for ``answer``;
  busy = ``code`` (486) after ``delay``; decline = ``code`` (603); none = no response at all.
* ``answer [code=200 call_id]``, ``hangup [code call_id]``, ``hold [call_id]``, ``unhold [call_id]``
* ``dtmf digits [method="rfc2833"|"sip_info" duration_ms call_id]``
* ``play wav [loop=false call_id]`` -> ok ``wav, loop, call_id, armed``; ``stop_play`` -> ok ``stopped``
* ``record wav [call_id]`` -> ok ``wav, call_id, armed``; ``stop_record`` -> ok ``wav``
  (``armed: true`` = no call has audio yet; it starts with the next call that does)
* ``quit`` (also: stdin EOF, ``--max-seconds`` elapsed)

Events:

* ``ready port transport uri user pid pjsip`` (first line), ``exit reason code`` (last line)
* ``reg_state account code reason active expires status registrar user [local]``
* ``incoming_call call_id sip_call_id role request_uri account from to src headers``
  (``headers``: lower-case long names -> list of values)
* ``call_state call_id sip_call_id role state code reason remote_uri``, ``state`` one of
  NULL CALLING INCOMING EARLY CONNECTING CONFIRMED DISCONNECTED
* ``media_state call_id sip_call_id role status dir codec remote_rtp``: status ACTIVE LOCAL_HOLD
  REMOTE_HOLD NONE ERROR; dir sendrecv sendonly recvonly inactive; codec e.g. ``PCMU/8000``
* ``dtmf call_id sip_call_id role digit method`` (key-down, once per digit),
  ``dtmf_end call_id sip_call_id role digit method duration_ms`` (key-up)
* ``play_done wav call_id``, ``record_stopped wav call_id reason`` (stopped, call_ended, shutdown)
* ``internal_error where message`` (an exception inside a pjsua2 callback), ``fatal message``
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUT = 10.0

Event = dict[str, Any]
Predicate = Callable[[Event], bool]


class AgentError(RuntimeError):
    """The agent answered a command with an error, died, or misbehaved."""


class PhoneTimeoutError(TimeoutError):
    """An expected event did not arrive in time (a ``TimeoutError``, with diagnostics)."""


def _tail(path: Path | None, lines: int) -> str:
    if path is None or not path.exists():
        return "(none)"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(unreadable: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def _describe(ev: str | Predicate | None, fields: dict[str, Any]) -> str:
    parts = []
    if isinstance(ev, str):
        parts.append(repr(ev))
    elif ev is not None:
        parts.append(getattr(ev, "__name__", "predicate"))
    parts.extend(f"{k}={v!r}" for k, v in fields.items())
    return " ".join(parts) or "any event"


class Phone:
    """A SIP phone in a subprocess; use as a context manager.

    ``name`` becomes the user part of the phone's direct URI (``uri``).  Files
    (agent stderr, pjsip log) go to ``workdir`` (a fresh temp dir by default) and
    are kept after the phone closes, for post-mortems.

    Waiting model: events are kept in ``events``; ``wait_for`` scans forward
    from a cursor and moves it past the match, so successive waits see events
    in order.  Pass ``since=0`` to search the whole history.
    """

    def __init__(
        self,
        name: str = "phone",
        *,
        transport: str = "udp",
        port: int = 0,
        codecs: str | Iterable[str] | None = None,
        log_level: int = 4,
        max_seconds: float = 120.0,
        workdir: str | os.PathLike[str] | None = None,
        start_timeout: float = 15.0,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if transport not in ("udp", "tcp"):
            raise ValueError("transport must be 'udp' or 'tcp'")
        self.name = name
        self.transport = transport
        self.requested_port = port
        self.codecs = codecs if codecs is None or isinstance(codecs, str) else ",".join(codecs)
        self.log_level = log_level
        self.max_seconds = max_seconds
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix=f"phone-{name}-"))
        self.start_timeout = start_timeout
        self.timeout = timeout
        self.stderr_path = self.workdir / f"{name}.stderr.log"
        self.log_path = self.workdir / f"{name}.pjsip.log"
        self.events: list[Event] = []
        self.cursor = 0
        self.ready: Event = {}
        self._proc: subprocess.Popen[str] | None = None
        self._stderr_file: Any = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._eof = False
        self._next_id = 0
        self._send_lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------- lifecycle

    def start(self) -> Phone:
        """Spawn the agent and wait for its ``ready`` event."""
        if self._proc is not None:
            raise AgentError(f"{self.name}: already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "tests.phones.agent",
            "--port",
            str(self.requested_port),
            "--transport",
            self.transport,
            "--user",
            self.name,
            "--max-seconds",
            str(self.max_seconds),
            "--log-file",
            str(self.log_path),
            "--log-level",
            str(self.log_level),
        ]
        if self.codecs:
            cmd += ["--codecs", self.codecs]
        env = dict(os.environ)
        # The agent is imported as ``tests.phones.agent`` whatever the caller's cwd.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self._stderr_file = open(self.stderr_path, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the phone
        self._proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read_events, name=f"phone-{self.name}", daemon=True)
        self._reader.start()
        try:
            self.ready = self.wait_for("ready", timeout=self.start_timeout)
        except BaseException:
            self.close(check=False)
            raise
        return self

    def __enter__(self) -> Phone:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Only complain about a bad exit if the test body itself succeeded.
        self.close(check=exc_type is None)

    def close(self, timeout: float = 10.0, check: bool = True) -> int | None:
        """Quit the agent (bounded: quit, then SIGTERM, then SIGKILL) and return its exit code.

        With ``check``, a non-zero exit or an ``internal_error``/``fatal`` event
        raises ``AgentError`` carrying the diagnostics.  Calling it again is a no-op.
        """
        proc = self._proc
        if proc is None or self._closed:
            return proc.returncode if proc is not None else None
        self._closed = True
        if proc.poll() is None:
            with contextlib.suppress(OSError, ValueError, AgentError):
                self._write({"cmd": "quit"})
        with contextlib.suppress(OSError, ValueError):
            proc.stdin.close()  # type: ignore[union-attr]  # EOF doubles as "quit"
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(2.0)
        if self._reader is not None:
            self._reader.join(2.0)
        with contextlib.suppress(OSError, ValueError):
            proc.stdout.close()  # type: ignore[union-attr]
        if self._stderr_file is not None:
            self._stderr_file.close()
            self._stderr_file = None
        rc = proc.returncode
        if check:
            problems = [e for e in self.events if e.get("ev") in ("internal_error", "fatal")]
            if rc != 0 or problems:
                raise AgentError(self._diagnose(f"{self.name}: agent exited with code {rc}", problems))
        return rc

    @property
    def pid(self) -> int | None:
        """Process id of the agent."""
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """Exit code once the agent has exited, else ``None``."""
        return self._proc.poll() if self._proc is not None else None

    @property
    def port(self) -> int:
        """The SIP port the phone is bound to on 127.0.0.1."""
        return int(self.ready["port"])

    @property
    def uri(self) -> str:
        """URI that reaches this phone directly (no registrar), e.g. ``sip:bob@127.0.0.1:40000``."""
        return str(self.ready["uri"])

    # ------------------------------------------------------------- plumbing

    def _read_events(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                # Should never happen (the agent guards stdout); keep it visible.
                event = {"ev": "garbage", "line": line}
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _write(self, msg: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise AgentError(f"{self.name}: not started")
        with self._send_lock:
            try:
                proc.stdin.write(json.dumps(msg) + "\n")
                proc.stdin.flush()
            except (BrokenPipeError, ValueError) as exc:
                raise AgentError(self._diagnose(f"{self.name}: agent is gone ({exc})")) from exc

    def _diagnose(self, headline: str, extra: Iterable[Event] = ()) -> str:
        extra = list(extra)
        shown = self.events[-40:]
        lines = [headline]
        if extra:
            lines.append("problem events:")
            lines += [f"  {json.dumps(e)}" for e in extra]
        lines.append(f"events seen ({len(self.events)} total, cursor at {self.cursor}, last {len(shown)}):")
        lines += [f"  {json.dumps(e)}" for e in shown]
        lines.append(f"agent stderr ({self.stderr_path}), tail:")
        lines.append(_tail(self.stderr_path, 25))
        lines.append(f"pjsip log ({self.log_path}), tail:")
        lines.append(_tail(self.log_path, 40))
        return "\n".join(lines)

    @staticmethod
    def _matches(event: Event, ev: str | Predicate | None, fields: dict[str, Any]) -> bool:
        if isinstance(ev, str):
            if event.get("ev") != ev:
                return False
        elif ev is not None and not ev(event):
            return False
        return all(event.get(k) == v for k, v in fields.items())

    def wait_for(
        self,
        ev: str | Predicate | None = None,
        *,
        timeout: float | None = None,
        since: int | None = None,
        consume: bool = True,
        **fields: Any,
    ) -> Event:
        """Wait for the first event after the cursor (or index ``since``) that matches.

        ``ev`` is an event name or a predicate over the event dict; ``fields``
        must all be equal (``wait_for("call_state", state="CONFIRMED")``).  On
        success the cursor moves past the match (unless ``consume=False``).
        Raises ``PhoneTimeoutError`` (a ``TimeoutError``) listing the events
        seen so far, or ``AgentError`` if the agent exits first.
        """
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        start = self.cursor if since is None else since
        with self._cond:
            while True:
                for idx in range(start, len(self.events)):
                    if self._matches(self.events[idx], ev, fields):
                        if consume:
                            self.cursor = max(self.cursor, idx + 1)
                        return self.events[idx]
                start = len(self.events)
                if self._eof:
                    raise AgentError(
                        self._diagnose(f"{self.name}: agent exited while waiting for {_describe(ev, fields)}")
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
        raise PhoneTimeoutError(self._diagnose(f"{self.name}: no event {_describe(ev, fields)} within {limit:.1f}s"))

    def find(self, ev: str | Predicate | None = None, **fields: Any) -> list[Event]:
        """All events so far (whole history, cursor untouched) that match."""
        with self._cond:
            return [e for e in self.events if self._matches(e, ev, fields)]

    def send(
        self, cmd: str, args: dict[str, Any] | None = None, *, timeout: float | None = None, **fields: Any
    ) -> Event:
        """Send a command and return its ``ok`` event; an ``error`` answer raises ``AgentError``.

        Command fields come from ``args`` and keyword arguments (use ``args``
        for a field named ``timeout``, which as a keyword bounds the wait for
        the answer).  ``None`` fields are left out so the agent applies its defaults.
        """
        with self._send_lock:
            self._next_id += 1
            ident = f"{self.name}-{self._next_id}"
        merged = {**(args or {}), **fields}
        msg = {"cmd": cmd, "id": ident, **{k: v for k, v in merged.items() if v is not None}}

        def is_answer(e: Event) -> bool:
            return e.get("id") == ident and e.get("ev") in ("ok", "error")

        is_answer.__name__ = f"answer to {cmd!r} (id {ident})"
        mark = len(self.events)
        self._write(msg)
        reply = self.wait_for(is_answer, timeout=timeout, since=mark, consume=False)
        if reply["ev"] == "error":
            raise AgentError(f"{self.name}: {cmd} failed: {reply.get('message')}")
        return reply

    # -------------------------------------------------------------- commands

    def ping(self) -> Event:
        """Round-trip a no-op command."""
        return self.send("ping")

    def status(self) -> Event:
        """The agent's view of calls, registration and media."""
        return self.send("status")

    def register(
        self,
        registrar: str,
        user: str,
        password: str = "",
        *,
        realm: str = "*",
        auth_user: str | None = None,
        domain: str | None = None,
        transport: str | None = None,
        expires: int = 300,
        timeout: float | None = None,
        wait: bool = True,
        wait_timeout: float = 40.0,
    ) -> Event:
        """REGISTER with ``registrar``; returns the first ``reg_state`` (or the ack if ``wait=False``).

        ``timeout`` asks the agent to give up (reporting 408, ``local: true``)
        if pjsip has no answer after that many seconds.
        """
        mark = len(self.events)
        ack = self.send(
            "register",
            {
                "registrar": registrar,
                "user": user,
                "password": password,
                "realm": realm,
                "auth_user": auth_user,
                "domain": domain,
                "transport": transport or self.transport,
                "expires": expires,
                "timeout": timeout,
            },
        )
        if not wait:
            return ack
        return self.wait_for("reg_state", since=mark, timeout=wait_timeout)

    def unregister(self, *, wait: bool = True, wait_timeout: float = 40.0) -> Event:
        """REGISTER with Expires: 0; returns the resulting ``reg_state`` (if it was active and ``wait``)."""
        mark = len(self.events)
        ack = self.send("unregister")
        if not wait or not ack.get("was_active"):
            return ack
        return self.wait_for("reg_state", since=mark, timeout=wait_timeout)

    def call(self, uri: str, *, headers: dict[str, str] | None = None, account: str | None = None) -> int:
        """Dial ``uri``; returns the agent's call id (follow progress with ``wait_call_state``)."""
        return int(self.send("call", uri=uri, headers=headers, account=account)["call_id"])

    def set_answer(self, mode: str = "auto", code: int | None = None, delay: float = 0.0) -> Event:
        """Policy for incoming calls: auto, ring, busy, decline or none."""
        return self.send("set_answer", mode=mode, code=code, delay=delay)

    def answer(self, code: int = 200, call_id: int | None = None) -> Event:
        """Answer a ringing incoming call (a code >= 300 rejects it)."""
        return self.send("answer", code=code, call_id=call_id)

    def hangup(self, code: int | None = None, call_id: int | None = None) -> Event:
        """Hang up (BYE, CANCEL or a final response, as the call state requires)."""
        return self.send("hangup", code=code, call_id=call_id)

    def hold(self, call_id: int | None = None) -> Event:
        """Put the call on hold (re-INVITE, sendonly)."""
        return self.send("hold", call_id=call_id)

    def unhold(self, call_id: int | None = None) -> Event:
        """Resume the call (re-INVITE, sendrecv)."""
        return self.send("unhold", call_id=call_id)

    def dtmf(self, digits: str, method: str = "rfc2833", call_id: int | None = None) -> Event:
        """Send DTMF digits (RFC 4733 telephone-events by default)."""
        return self.send("dtmf", digits=digits, method=method, call_id=call_id)

    def play(self, wav: str | os.PathLike[str], loop: bool = False, call_id: int | None = None) -> Event:
        """Play a 16-bit mono WAV into the call; ``play_done`` follows at its end unless looping."""
        return self.send("play", wav=os.fspath(wav), loop=loop, call_id=call_id)

    def stop_play(self) -> Event:
        """Stop playing."""
        return self.send("stop_play")

    def record(self, wav: str | os.PathLike[str], call_id: int | None = None) -> Event:
        """Record received audio to ``wav`` (armed until a call has audio)."""
        return self.send("record", wav=os.fspath(wav), call_id=call_id)

    def stop_record(self, timeout: float | None = None) -> Path:
        """Finish the recording and wait until the agent reports the WAV file closed and complete."""
        mark = len(self.events)
        wav = self.send("stop_record")["wav"]
        done = self.wait_for("record_stopped", since=mark, timeout=timeout, consume=False, wav=wav)
        if not done.get("complete"):
            raise AgentError(self._diagnose(f"{self.name}: recording {wav} was not closed cleanly"))
        return Path(wav)

    # --------------------------------------------------------- conveniences

    def wait_call_state(self, state: str, timeout: float | None = None, **fields: Any) -> Event:
        """Wait for ``call_state`` with this ``state`` (CALLING, EARLY, CONFIRMED, DISCONNECTED...)."""
        return self.wait_for("call_state", timeout=timeout, state=state, **fields)

    def collect_dtmf(self, count: int, timeout: float | None = None) -> str:
        """Wait for ``count`` received digits (after the cursor) and return them in order."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        digits = []
        for _ in range(count):
            remaining = max(0.0, deadline - time.monotonic())
            digits.append(str(self.wait_for("dtmf", timeout=remaining)["digit"]))
        return "".join(digits)


def make_tone_wav(
    path: str | os.PathLike[str],
    freq_hz: float = 1000.0,
    seconds: float = 2.0,
    rate: int = 8000,
    amplitude: float = 0.5,
) -> Path:
    """Write a 16-bit mono PCM sine tone (the format pjsua2's WAV player accepts)."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    samples = np.round(amplitude * 32767 * np.sin(2 * np.pi * freq_hz * t)).astype("<i2")
    out = Path(path)
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return out


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Samples (float, -1..1, first channel) and sample rate of a 16-bit PCM WAV."""
    with wave.open(os.fspath(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM, got {8 * w.getsampwidth()}-bit")
        rate = w.getframerate()
        channels = w.getnchannels()
        raw = w.readframes(w.getnframes())
    data = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    return data[::channels], rate


def dominant_frequency(path: str | os.PathLike[str], threshold: float = 0.01) -> float:
    """Strongest frequency (Hz) in a WAV, ignoring leading and trailing silence.

    Silence is anything below ``threshold`` of full scale; codecs and jitter
    buffers leave some before the tone starts.  Raises ``ValueError`` if the
    whole file is silent (the phone heard nothing).
    """
    data, rate = read_wav(path)
    loud = np.flatnonzero(np.abs(data) > threshold)
    if loud.size < rate // 50:  # under 20 ms of sound is no tone
        raise ValueError(f"{path}: silent ({data.size} samples, peak {np.abs(data).max(initial=0):.4f})")
    segment = data[loud[0] : loud[-1] + 1]
    segment = segment - segment.mean()
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(segment.size)))
    spectrum[0] = 0.0
    peak = int(np.argmax(spectrum))
    # Parabolic interpolation between neighbouring bins refines the estimate
    # beyond the bin width (rate / len), which matters for short recordings.
    offset = 0.0
    if 0 < peak < spectrum.size - 1:
        left, mid, right = spectrum[peak - 1 : peak + 2]
        denom = left - 2 * mid + right
        if denom != 0:
            offset = 0.5 * (left - right) / denom
    return float((peak + offset) * rate / segment.size)


PhoneFactory = Callable[..., Phone]
"""Type of the ``make_phone`` fixture: ``make_phone(name, **Phone kwargs) -> started Phone``."""
