"""One pjsua2 SIP phone in its own process, driven by newline-delimited JSON.

Run as ``python -m tests.phones.agent --port 0 --transport udp``.  Commands arrive
on stdin, one JSON object per line (``{"cmd": "call", "uri": "sip:b@127.0.0.1:5062"}``);
events leave on stdout, one JSON object per line (``{"ev": "call_state", ...}``).
Every command is answered by exactly one ``ok`` or ``error`` event carrying the
command name and, if the command had one, its ``id``.  The full protocol is
documented in the ``tests.phones.harness`` module docstring.

Why a subprocess per phone: pjsua2 has one global library instance per process,
so two phones in one interpreter would share accounts, calls and media.

Design choices, each forced by pjsua2 behaviour:

* Threads: ``threadCnt = 0`` and ``mainThreadOnly = True`` so that pjsua2's
  call, account and DTMF callbacks run inside ``libHandleEvents`` on the main
  thread.  The one exception, the player's ``onEof2`` (called on the
  conference clock thread), only enqueues; the main loop does the work.
  stdin is read by a plain Python thread that only fills a queue.
* stdout: pjsip prints a banner from ``libCreate`` before any log config is
  applied, straight to the C ``stdout``.  We move the protocol onto a private
  duplicate of fd 1 and point fd 1 at stderr, so nothing native can corrupt
  the JSON stream.
* Deadlines: a soft deadline in the main loop (``--max-seconds``) and a hard one
  via ``faulthandler.dump_traceback_later(exit=True)``, whose watchdog is a C
  thread that fires even if the main thread is stuck inside pjsip holding the GIL.
* Shutdown: calls, players and recorders are released and accounts shut down
  before ``libDestroy``; then the process leaves with ``os._exit`` so Python's
  own teardown never destroys pjsua2 objects in an order that crashes.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import faulthandler
import gc
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pjsua2 as pj

_T0 = time.monotonic()

# Seconds the teardown (hangups, un-REGISTER, libDestroy) may take before the
# faulthandler watchdog kills the process.
TEARDOWN_GRACE_S = 8.0
# How long a destroyed recorder may take to close its WAV file.
RECORDER_CLOSE_TIMEOUT_S = 2.0
# Extra time past the soft deadline before the hard deadline fires.
HARD_DEADLINE_SLACK_S = 10.0
# How long ``libHandleEvents`` may block per loop turn; bounds command latency.
POLL_MS = 10

CALL_STATE_NAMES: dict[int, str] = {
    pj.PJSIP_INV_STATE_NULL: "NULL",
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    # pjsip's own stateText abbreviates this one to "DISCONNCTD".
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}
MEDIA_STATUS_NAMES: dict[int, str] = {
    pj.PJSUA_CALL_MEDIA_NONE: "NONE",
    pj.PJSUA_CALL_MEDIA_ACTIVE: "ACTIVE",
    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "LOCAL_HOLD",
    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "REMOTE_HOLD",
    pj.PJSUA_CALL_MEDIA_ERROR: "ERROR",
}
MEDIA_DIR_NAMES: dict[int, str] = {
    pj.PJMEDIA_DIR_NONE: "inactive",
    pj.PJMEDIA_DIR_ENCODING: "sendonly",
    pj.PJMEDIA_DIR_DECODING: "recvonly",
    pj.PJMEDIA_DIR_ENCODING_DECODING: "sendrecv",
}
DTMF_METHODS: dict[str, int] = {
    "rfc2833": pj.PJSUA_DTMF_METHOD_RFC2833,
    "rfc4733": pj.PJSUA_DTMF_METHOD_RFC2833,
    "sip_info": pj.PJSUA_DTMF_METHOD_SIP_INFO,
}
DTMF_METHOD_NAMES: dict[int, str] = {
    pj.PJSUA_DTMF_METHOD_RFC2833: "rfc2833",
    pj.PJSUA_DTMF_METHOD_SIP_INFO: "sip_info",
}
# pjmedia_stream_dtmf_event flags (not exported by the bindings): bit 0 is
# "update of a digit already reported", bit 1 "end of the digit".
DTMF_FLAG_IS_END = 1 << 1
VALID_DTMF = set("0123456789*#ABCDabcd")
ANSWER_MODES = ("auto", "ring", "busy", "decline", "none")
# SIP compact header forms (RFC 3261 section 7.3.3 and extensions) so that
# ``incoming_call.headers`` is keyed by the long lower-case name either way.
COMPACT_HEADERS = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "r": "refer-to",
    "b": "referred-by",
    "o": "event",
    "u": "allow-events",
    "x": "session-expires",
}


class CommandError(Exception):
    """A command was malformed or cannot be carried out in the current state."""


class Emitter:
    """Writes protocol events as JSON lines to the private protocol descriptor."""

    def __init__(self, fd: int) -> None:
        self._out = os.fdopen(fd, "w", encoding="utf-8", buffering=1)
        # Event times count from process start so slow startups are visible.
        self._t0 = _T0
        self.broken = False

    def emit(self, ev: str, **fields: Any) -> None:
        """Send one event; a vanished reader marks the pipe broken instead of raising."""
        if self.broken:
            return
        record = {"ev": ev, **fields, "t": round(time.monotonic() - self._t0, 3)}
        try:
            self._out.write(json.dumps(record, default=str) + "\n")
            self._out.flush()
        except (OSError, ValueError):
            # The harness went away: the main loop sees ``broken`` and shuts down.
            self.broken = True

    def close(self) -> None:
        """Flush and close the protocol stream, ignoring a dead reader."""
        with contextlib.suppress(OSError, ValueError):
            self._out.close()


def parse_sip_headers(message: str) -> tuple[str, dict[str, list[str]]]:
    """Split a raw SIP message into its start line and a lower-case header map.

    Folded lines are unfolded and compact names expanded, so callers can look
    up ``headers["from"]`` regardless of how the peer spelled it.
    """
    head = message.replace("\r\n", "\n").split("\n\n", 1)[0]
    lines = head.split("\n")
    start_line = lines[0].strip() if lines else ""
    unfolded: list[str] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] += " " + line.strip()
        elif line.strip():
            unfolded.append(line)
    headers: dict[str, list[str]] = {}
    for line in unfolded:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        key = COMPACT_HEADERS.get(key, key)
        headers.setdefault(key, []).append(value.strip())
    return start_line, headers


def _error_text(exc: BaseException) -> str:
    """Human-readable text for pjsua2 errors (which carry ``info()``) and others."""
    if isinstance(exc, pj.Error):
        try:
            return f"{exc.title}: {exc.reason} (status {exc.status})"
        except Exception:
            return str(exc.info()) if hasattr(exc, "info") else repr(exc)
    return f"{type(exc).__name__}: {exc}"


class PhoneAccount(pj.Account):
    """An account whose callbacks are forwarded to the agent."""

    def __init__(self, agent: Agent, label: str) -> None:
        super().__init__()
        self.agent = agent
        self.label = label

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        self.agent.guard("onRegState", self.agent.on_reg_state, self, prm)

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        self.agent.guard("onIncomingCall", self.agent.on_incoming_call, self, prm)


class PhoneCall(pj.Call):
    """A call whose callbacks are forwarded to the agent.

    The agent keeps every live ``PhoneCall`` in ``Agent.calls``: if Python
    dropped the wrapper, pjsua2 would call into a freed director object.
    """

    def __init__(self, agent: Agent, acc: pj.Account, call_id: int, role: str) -> None:
        super().__init__(acc, call_id)
        self.agent = agent
        self.role = role
        self.gone = False
        self.audio: pj.AudioMedia | None = None
        self.sip_call_id = ""

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        self.agent.guard("onCallState", self.agent.on_call_state, self)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        self.agent.guard("onCallMediaState", self.agent.on_call_media_state, self)

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        # Called once per digit at key-down (for RFC 4733 and SIP INFO alike).
        self.agent.guard("onDtmfDigit", self.agent.on_dtmf_digit, self, prm)

    def onDtmfEvent(self, prm: pj.OnDtmfEventParam) -> None:
        # Called for every RFC 4733 update packet too; only the end carries the duration.
        if prm.flags & DTMF_FLAG_IS_END:
            self.agent.guard("onDtmfEvent", self.agent.on_dtmf_end, self, prm)


class WavPlayer(pj.AudioMediaPlayer):
    """A WAV player that reports end of file as a ``play_done`` event."""

    def __init__(self, agent: Agent, path: str, loop: bool) -> None:
        super().__init__()
        self.agent = agent
        self.path = path
        self.loop = loop
        self.call_id: int | None = None

    def onEof2(self) -> None:
        # Unlike the call/account callbacks, pjsua2 does not post this one to
        # the main thread: it runs on the conference clock thread.  Only hand
        # the news over; the main loop emits the event.
        self.agent.player_eofs.put(self)


class Recording:
    """A recorder plus the call it listens to (``None`` = the next call with audio)."""

    def __init__(self, path: str, call_id: int | None) -> None:
        self.recorder = pj.AudioMediaRecorder()
        # Creating the recorder opens and truncates the file right away, so a
        # bad path fails the command rather than a later callback.
        self.recorder.createRecorder(path)
        self.path = path
        self.call_id = call_id
        self.connected = False


class Agent:
    """Owns the pjsua2 endpoint and turns commands into pjsua2 calls and callbacks into events."""

    def __init__(self, args: argparse.Namespace, emitter: Emitter) -> None:
        self.args = args
        self.out = emitter
        self.ep = pj.Endpoint()
        self.transport_name = args.transport
        self.transport_id = -1
        self.port = 0
        self.local_acc: PhoneAccount | None = None
        self.reg_acc: PhoneAccount | None = None
        self.reg_pending_since: float | None = None
        self.reg_unregistering = False
        self.reg_info: dict[str, Any] = {}
        self.retired_accounts: list[PhoneAccount] = []
        self.calls: dict[int, PhoneCall] = {}
        self.call_order: list[int] = []
        self.graveyard: list[PhoneCall] = []
        self.answer_mode = "auto"
        self.answer_code = 200
        self.answer_delay = 0.0
        self.player: WavPlayer | None = None
        self.recording: Recording | None = None
        self.tasks: list[tuple[float, int, str, Callable[[], None]]] = []
        self.task_seq = 0
        self.stopping: str | None = None
        self.player_eofs: queue.SimpleQueue[WavPlayer] = queue.SimpleQueue()
        self.created = False
        self.started = False

    # ------------------------------------------------------------------ setup

    def start(self) -> None:
        """Create the library, the null sound device, the transport and the local account."""
        args = self.args
        self.ep.libCreate()
        self.created = True
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = 8
        cfg.uaConfig.userAgent = f"Trunkline-TestPhone/{args.user}"
        # Console logging would go to C stdout; keep it off and log to a file.
        cfg.logConfig.consoleLevel = 0
        cfg.logConfig.level = args.log_level if args.log_file else 0
        if args.log_file:
            cfg.logConfig.filename = args.log_file
        cfg.logConfig.msgLogging = True
        # No VAD (silence suppression would drop frames the recorder expects)
        # and no echo canceller (there is no loudspeaker to echo).
        cfg.medConfig.noVad = True
        cfg.medConfig.ecTailLen = 0
        # pjsua closes an idle sound device after 1 s by default, and with it
        # goes the clock of the conference bridge: RTP, DTMF and players all
        # silently stop until something connects to slot 0.  Never close it.
        cfg.medConfig.sndAutoCloseTime = -1
        self.ep.libInit(cfg)
        # The null device still clocks the conference bridge, which players,
        # recorders and RTP streams all need.
        self.ep.audDevManager().setNullDev()
        self._apply_codecs(args.codecs)

        tcfg = pj.TransportConfig()
        tcfg.port = args.port
        tcfg.boundAddress = "127.0.0.1"
        kind = pj.PJSIP_TRANSPORT_TCP if self.transport_name == "tcp" else pj.PJSIP_TRANSPORT_UDP
        self.transport_id = self.ep.transportCreate(kind, tcfg)
        self.ep.libStart()
        local_name = self.ep.transportGetInfo(self.transport_id).localName
        self.port = int(local_name.rsplit(":", 1)[1])

        acfg = self._account_config(self.local_uri())
        self.local_acc = PhoneAccount(self, "local")
        self.local_acc.create(acfg, True)
        self.started = True

    def _apply_codecs(self, spec: str | None) -> None:
        """Restrict and order codecs by prefix (``PCMU,PCMA``); ``None`` keeps pjsip's defaults."""
        if not spec:
            return
        wanted = [w.strip().lower() for w in spec.split(",") if w.strip()]
        enabled = 0
        for info in self.ep.codecEnum2():
            prio = 0
            for rank, prefix in enumerate(wanted):
                if info.codecId.lower().startswith(prefix):
                    prio = 254 - rank
                    break
            self.ep.codecSetPriority(info.codecId, prio)
            enabled += prio > 0
        if not enabled:
            raise CommandError(f"no codec matches --codecs {spec!r}")

    def _account_config(self, id_uri: str) -> pj.AccountConfig:
        """Account settings shared by the local and the registered account."""
        acfg = pj.AccountConfig()
        acfg.idUri = id_uri
        acfg.sipConfig.transportId = self.transport_id
        # RTP on loopback too, and a port chosen by the OS so parallel phones
        # never race for pjsua's default 4000+ range.
        acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        acfg.mediaConfig.transportConfig.port = 0
        return acfg

    def local_uri(self) -> str:
        """The URI other phones dial to reach this one directly."""
        uri = f"sip:{self.args.user}@127.0.0.1:{self.port}"
        return uri + ";transport=tcp" if self.transport_name == "tcp" else uri

    # ------------------------------------------------------------- main loop

    def run(self) -> str:
        """Pump pjsip and commands until quit, stdin EOF, a broken pipe or the deadline."""
        commands: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=_read_stdin, args=(commands,), name="stdin", daemon=True).start()
        deadline = time.monotonic() + self.args.max_seconds
        self.out.emit(
            "ready",
            port=self.port,
            transport=self.transport_name,
            uri=self.local_uri(),
            user=self.args.user,
            pid=os.getpid(),
            pjsip=self.ep.libVersion().full,
        )
        while self.stopping is None:
            self.ep.libHandleEvents(POLL_MS)
            while self.stopping is None:
                try:
                    line = commands.get_nowait()
                except queue.Empty:
                    break
                if line is None:
                    self.stopping = "eof"
                else:
                    self.handle_line(line)
            while not self.player_eofs.empty():
                self.guard("onEof2", self.on_player_eof, self.player_eofs.get())
            self._run_due_tasks()
            # Released one loop turn after DISCONNECTED, outside any callback.
            self.graveyard.clear()
            if self.out.broken:
                self.stopping = "broken_pipe"
            elif time.monotonic() > deadline:
                self.stopping = "deadline"
        return self.stopping

    def guard(self, where: str, fn: Callable[..., None], *args: Any) -> None:
        """Run a callback body; an exception becomes an event instead of a SWIG director abort."""
        try:
            fn(*args)
        except Exception as exc:
            self.out.emit("internal_error", where=where, message=_error_text(exc))

    def schedule(self, delay: float, label: str, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the main loop after ``delay`` seconds (no pjsip timers: they need pj threads)."""
        self.task_seq += 1
        self.tasks.append((time.monotonic() + max(0.0, delay), self.task_seq, label, fn))

    def _run_due_tasks(self) -> None:
        now = time.monotonic()
        due = sorted(t for t in self.tasks if t[0] <= now)
        if not due:
            return
        self.tasks = [t for t in self.tasks if t[0] > now]
        for _, _, label, fn in due:
            self.guard(label, fn)

    def handle_line(self, raw: bytes) -> None:
        """Decode one command line and answer it with exactly one ok/error event."""
        try:
            msg = json.loads(raw)
        except ValueError as exc:
            self.out.emit("error", cmd=None, message=f"invalid JSON: {exc}")
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("cmd"), str):
            self.out.emit("error", cmd=None, message="a command must be an object with a string 'cmd'")
            return
        name = msg["cmd"]
        ident = {"id": msg["id"]} if "id" in msg else {}
        handler = getattr(self, f"cmd_{name}", None)
        if handler is None:
            self.out.emit("error", cmd=name, message=f"unknown command {name!r}", **ident)
            return
        try:
            extra = handler(msg) or {}
        except Exception as exc:
            self.out.emit("error", cmd=name, message=_error_text(exc), **ident)
            return
        self.out.emit("ok", cmd=name, **ident, **extra)

    # ---------------------------------------------------------- call helpers

    def pick_call(self, msg: dict[str, Any]) -> PhoneCall:
        """The call named by ``call_id``, else the most recent call that is still up."""
        if msg.get("call_id") is not None:
            call = self.calls.get(int(msg["call_id"]))
            if call is None or call.gone:
                raise CommandError(f"no live call with call_id {msg['call_id']}")
            return call
        for cid in reversed(self.call_order):
            call = self.calls.get(cid)
            if call is not None and not call.gone:
                return call
        raise CommandError("no active call")

    def call_fields(self, call: PhoneCall) -> dict[str, Any]:
        """Identification fields every call-related event carries."""
        return {"call_id": call.getId(), "sip_call_id": call.sip_call_id, "role": call.role}

    def _track(self, call: PhoneCall) -> None:
        cid = call.getId()
        if call.gone or cid < 0:
            return
        self.calls[cid] = call
        if cid in self.call_order:
            self.call_order.remove(cid)
        self.call_order.append(cid)

    def _forget(self, call: PhoneCall) -> None:
        cid = call.getId()
        if self.calls.get(cid) is call:
            del self.calls[cid]
        if cid in self.call_order and cid not in self.calls:
            self.call_order.remove(cid)
        self.graveyard.append(call)

    # ------------------------------------------------------------- callbacks

    def on_reg_state(self, acc: PhoneAccount, prm: pj.OnRegStateParam) -> None:
        info = acc.getInfo()
        self.reg_pending_since = None
        self.out.emit(
            "reg_state",
            account=acc.label,
            code=int(prm.code),
            reason=prm.reason,
            active=bool(info.regIsActive),
            expires=int(prm.expiration),
            status=int(prm.status),
            **self.reg_info,
        )
        if self.reg_unregistering and acc is self.reg_acc:
            # The un-REGISTER is done: retire the account so a later register starts clean.
            self.reg_unregistering = False
            self.schedule(0.0, "retire_account", self._retire_reg_account)

    def on_incoming_call(self, acc: PhoneAccount, prm: pj.OnIncomingCallParam) -> None:
        call = PhoneCall(self, acc, prm.callId, role="callee")
        info = call.getInfo()
        call.sip_call_id = info.callIdString
        self._track(call)
        start_line, headers = parse_sip_headers(prm.rdata.wholeMsg)
        parts = start_line.split()
        self.out.emit(
            "incoming_call",
            **self.call_fields(call),
            request_uri=parts[1] if len(parts) > 1 else "",
            account=acc.label,
            **{"from": info.remoteUri, "to": info.localUri},
            src=prm.rdata.srcAddress,
            headers=headers,
        )
        self._apply_answer_policy(call)

    def _apply_answer_policy(self, call: PhoneCall) -> None:
        mode, code, delay = self.answer_mode, self.answer_code, self.answer_delay
        if mode == "none":
            return
        if mode in ("auto", "ring"):
            self._respond(call, 180)
        if mode == "auto":
            self.schedule(delay, "auto_answer", lambda: self._respond(call, code or 200))
        elif mode == "busy":
            self.schedule(delay, "auto_busy", lambda: self._respond(call, code or 486))
        elif mode == "decline":
            self.schedule(delay, "auto_decline", lambda: self._respond(call, code or 603))

    def _respond(self, call: PhoneCall, code: int) -> None:
        """Send a provisional/2xx with ``answer`` and a final failure with ``hangup``."""
        if call.gone:
            return
        prm = pj.CallOpParam(True)
        prm.statusCode = code
        if code < 300:
            call.answer(prm)
        else:
            call.hangup(prm)

    def on_call_state(self, call: PhoneCall) -> None:
        info = call.getInfo()
        if info.callIdString:
            call.sip_call_id = info.callIdString
        state = CALL_STATE_NAMES.get(info.state, str(info.state))
        self.out.emit(
            "call_state",
            **self.call_fields(call),
            state=state,
            code=int(info.lastStatusCode),
            reason=info.lastReason,
            remote_uri=info.remoteUri,
        )
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            call.gone = True
            self._detach_media(call)
            self._forget(call)

    def on_call_media_state(self, call: PhoneCall) -> None:
        info = call.getInfo()
        for media in info.media:
            if media.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            status = MEDIA_STATUS_NAMES.get(media.status, str(media.status))
            codec = remote_rtp = None
            try:
                stream = call.getStreamInfo(media.index)
                codec = f"{stream.codecName}/{stream.codecClockRate}"
                remote_rtp = stream.remoteRtpAddress
            except pj.Error:
                pass  # no stream (media NONE/ERROR): nothing to report
            self.out.emit(
                "media_state",
                **self.call_fields(call),
                status=status,
                dir=MEDIA_DIR_NAMES.get(media.dir, str(media.dir)),
                codec=codec,
                remote_rtp=remote_rtp,
            )
            if media.status in (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD):
                # A re-INVITE may give the stream a new conference slot, so
                # players and recorders are (re)connected on every update.
                call.audio = call.getAudioMedia(media.index)
                self._attach_media(call)
            break

    def on_dtmf_digit(self, call: PhoneCall, prm: pj.OnDtmfDigitParam) -> None:
        # No duration here: at key-down pjsua reports it as unknown (0xFFFFFFFF).
        self.out.emit("dtmf", **self.call_fields(call), digit=prm.digit, method=DTMF_METHOD_NAMES.get(prm.method, "?"))

    def on_dtmf_end(self, call: PhoneCall, prm: pj.OnDtmfEventParam) -> None:
        self.out.emit(
            "dtmf_end",
            **self.call_fields(call),
            digit=prm.digit,
            method=DTMF_METHOD_NAMES.get(prm.method, "?"),
            duration_ms=int(prm.duration),
        )

    def on_player_eof(self, player: WavPlayer) -> None:
        # A player replaced or stopped since its EOF was queued is not news.
        if player is self.player and not player.loop:
            self.out.emit("play_done", wav=player.path, call_id=player.call_id)

    # ------------------------------------------------------------ media glue

    def _attach_media(self, call: PhoneCall) -> None:
        """Connect a pending player/recorder to ``call``'s audio if they target it."""
        aud = call.audio
        if aud is None:
            return
        cid = call.getId()
        if self.player is not None and self.player.call_id in (None, cid):
            self.player.call_id = cid
            self.player.startTransmit(aud)
        rec = self.recording
        if rec is not None and rec.call_id in (None, cid):
            rec.call_id = cid
            aud.startTransmit(rec.recorder)
            rec.connected = True

    def _detach_media(self, call: PhoneCall) -> None:
        """The call's audio is going away: finish its recording, drop its player."""
        cid = call.getId()
        if self.recording is not None and self.recording.call_id == cid:
            self._finish_recording("call_ended")
        if self.player is not None and self.player.call_id == cid:
            self.player = None
        call.audio = None

    def _finish_recording(self, reason: str) -> str | None:
        """Destroy the recorder and announce ``record_stopped`` once the file is really closed."""
        rec = self.recording
        if rec is None:
            return None
        self.recording = None
        # Dropping the last reference destroys the pjsua recorder, which is what
        # writes the final WAV header sizes.  The conference bridge removes the
        # port asynchronously (on its next clock tick), so the file is only
        # complete a little later: poll for that from the main loop.
        del rec.recorder
        started = time.monotonic()

        def check() -> None:
            waited = time.monotonic() - started
            done = wav_is_closed(rec.path)
            if done or waited > RECORDER_CLOSE_TIMEOUT_S:
                self.out.emit(
                    "record_stopped",
                    wav=rec.path,
                    call_id=rec.call_id,
                    reason=reason,
                    complete=done,
                    bytes=os.path.getsize(rec.path) if os.path.exists(rec.path) else 0,
                )
            else:
                self.schedule(0.01, "record_close_check", check)

        if self.stopping is not None:
            # Shutting down: libDestroy flushes everything; report synchronously.
            self.out.emit("record_stopped", wav=rec.path, call_id=rec.call_id, reason=reason, complete=None)
        else:
            self.schedule(0.01, "record_close_check", check)
        return rec.path

    # --------------------------------------------------------------- commands

    def cmd_ping(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Liveness check."""
        return {"port": self.port}

    def cmd_status(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Snapshot of calls, registration and media for debugging."""
        calls = []
        for cid in self.call_order:
            call = self.calls[cid]
            info = call.getInfo()
            calls.append(
                {
                    **self.call_fields(call),
                    "state": CALL_STATE_NAMES.get(info.state, str(info.state)),
                    "remote_uri": info.remoteUri,
                }
            )
        reg: dict[str, Any] | None = None
        if self.reg_acc is not None:
            ainfo = self.reg_acc.getInfo()
            reg = {"active": bool(ainfo.regIsActive), "code": int(ainfo.regStatus), **self.reg_info}
        return {
            "calls": calls,
            "registration": reg,
            "answer": {"mode": self.answer_mode, "code": self.answer_code, "delay": self.answer_delay},
            "playing": self.player.path if self.player else None,
            "recording": self.recording.path if self.recording else None,
        }

    def cmd_register(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Create (or replace) the registered account; ``reg_state`` events follow."""
        registrar = str(msg.get("registrar", ""))
        user = str(msg.get("user", ""))
        if not registrar.startswith(("sip:", "sips:")) or not user:
            raise CommandError("register needs 'registrar' (sip:host:port) and 'user'")
        transport = str(msg.get("transport", self.transport_name)).lower()
        if transport != self.transport_name:
            raise CommandError(
                f"this phone has a {self.transport_name} transport only; start it with --transport {transport}"
            )
        if transport == "tcp" and "transport=" not in registrar.lower():
            registrar += ";transport=tcp"
        if self.ep.utilVerifySipUri(registrar) != 0:
            raise CommandError(f"invalid registrar URI {registrar!r}")
        domain = str(msg.get("domain") or registrar.split(":", 1)[1].split(";", 1)[0])
        expires = int(msg.get("expires", 300))
        timeout = msg.get("timeout")
        if self.reg_acc is not None:
            self._retire_reg_account()

        acfg = self._account_config(f"sip:{user}@{domain}")
        acfg.regConfig.registrarUri = registrar
        acfg.regConfig.timeoutSec = expires
        # No automatic re-REGISTER after a failure: each attempt is reported
        # exactly once and the phone stays quiet unless told to try again.
        acfg.regConfig.retryIntervalSec = 0
        acfg.regConfig.firstRetryIntervalSec = 0
        acfg.regConfig.dropCallsOnFail = False
        acfg.regConfig.unregWaitMsec = 1000
        cred = pj.AuthCredInfo(
            "digest",
            str(msg.get("realm", "*")),
            str(msg.get("auth_user") or user),
            0,
            str(msg.get("password", "")),
        )
        acfg.sipConfig.authCreds.append(cred)
        self.reg_info = {"registrar": registrar, "user": user}
        acc = PhoneAccount(self, "registered")
        # Set before create(): a refused TCP connect reports inside create().
        self.reg_acc = acc
        self.reg_unregistering = False
        self.reg_pending_since = time.monotonic()
        try:
            acc.create(acfg)
        except Exception:
            self.reg_acc = None
            self.reg_pending_since = None
            self.retired_accounts.append(acc)  # never freed: see shutdown()
            raise
        if timeout is not None:
            started = self.reg_pending_since
            self.schedule(float(timeout), "register_timeout", lambda: self._register_timeout(acc, started, timeout))
        return {"aor": acfg.idUri, "registrar": registrar}

    def _register_timeout(self, acc: PhoneAccount, started: float | None, timeout: float) -> None:
        """Agent-side bound on a REGISTER: report 408 and drop the account if pjsip is still waiting.

        pjsip's own transaction timeout (64*T1 = 32 s) is not adjustable from
        pjsua2, which is too slow for tests that want a prompt verdict.
        """
        if acc is not self.reg_acc or self.reg_pending_since != started:
            return
        self.reg_pending_since = None
        self.out.emit(
            "reg_state",
            account=acc.label,
            code=408,
            reason=f"Request Timeout (no response within {timeout}s, reported by the test agent)",
            active=False,
            expires=0,
            status=0,
            local=True,
            **self.reg_info,
        )
        self._retire_reg_account()

    def _retire_reg_account(self) -> None:
        acc = self.reg_acc
        if acc is None:
            return
        self.reg_acc = None
        self.reg_pending_since = None
        self.reg_unregistering = False
        # shutdown() un-REGISTERs if needed; the wrapper is kept alive because
        # pjsua2 may still deliver a callback for it during this loop turn.
        acc.shutdown()
        self.retired_accounts.append(acc)

    def cmd_unregister(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Send REGISTER with Expires: 0; the resulting ``reg_state`` has ``active: false``."""
        acc = self.reg_acc
        if acc is None:
            raise CommandError("not registered")
        if not acc.getInfo().regIsActive:
            self._retire_reg_account()
            return {"was_active": False}
        self.reg_unregistering = True
        acc.setRegistration(False)
        return {"was_active": True}

    def cmd_call(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Place a call; progress arrives as ``call_state`` events."""
        uri = str(msg.get("uri", ""))
        if not uri or self.ep.utilVerifySipUri(uri) != 0:
            raise CommandError(f"invalid SIP URI {uri!r}")
        which = msg.get("account")
        acc: PhoneAccount | None
        if which == "local":
            acc = self.local_acc
        elif which == "registered":
            acc = self.reg_acc
            if acc is None:
                raise CommandError("no registered account")
        else:
            acc = self.reg_acc if self.reg_acc is not None else self.local_acc
        assert acc is not None
        call = PhoneCall(self, acc, pj.PJSUA_INVALID_ID, role="caller")
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        for name, value in (msg.get("headers") or {}).items():
            hdr = pj.SipHeader()
            hdr.hName = str(name)
            hdr.hValue = str(value)
            prm.txOption.headers.append(hdr)
        # Keep a reference before makeCall: callbacks may already fire inside it.
        self.graveyard.append(call)
        call.makeCall(uri, prm)
        if not call.gone:
            call.sip_call_id = call.getInfo().callIdString
            self._track(call)
        return {"call_id": call.getId(), "sip_call_id": call.sip_call_id, "account": acc.label}

    def cmd_set_answer(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Choose what happens to the next incoming calls."""
        mode = str(msg.get("mode", "auto"))
        if mode not in ANSWER_MODES:
            raise CommandError(f"mode must be one of {', '.join(ANSWER_MODES)}")
        code = int(msg.get("code") or {"auto": 200, "busy": 486, "decline": 603}.get(mode, 0))
        if code and not 100 <= code <= 699:
            raise CommandError(f"bad SIP status code {code}")
        if mode == "auto" and code >= 300:
            raise CommandError("auto answer needs a 2xx code; use busy/decline to reject")
        if mode in ("busy", "decline") and code < 300:
            raise CommandError(f"{mode} needs a final failure code (>= 300)")
        self.answer_mode = mode
        self.answer_code = code
        self.answer_delay = float(msg.get("delay", 0.0))
        return {"mode": mode, "code": code, "delay": self.answer_delay}

    def cmd_answer(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Answer (or reject, with a code >= 300) a ringing incoming call."""
        call = self.pick_call(msg)
        if call.role != "callee":
            raise CommandError("answer applies to incoming calls only")
        state = call.getInfo().state
        if state not in (pj.PJSIP_INV_STATE_INCOMING, pj.PJSIP_INV_STATE_EARLY):
            raise CommandError(f"call is {CALL_STATE_NAMES.get(state, state)}, not ringing")
        code = int(msg.get("code", 200))
        self._respond(call, code)
        return {"call_id": call.getId(), "code": code}

    def cmd_hangup(self, msg: dict[str, Any]) -> dict[str, Any]:
        """End a call: BYE when confirmed, CANCEL when ringing out, a final response when ringing in."""
        call = self.pick_call(msg)
        prm = pj.CallOpParam(True)
        if msg.get("code"):
            prm.statusCode = int(msg["code"])
        cid = call.getId()
        call.hangup(prm)
        return {"call_id": cid}

    def cmd_hold(self, msg: dict[str, Any]) -> dict[str, Any]:
        """re-INVITE with a=sendonly."""
        call = self.pick_call(msg)
        call.setHold(pj.CallOpParam(True))
        return {"call_id": call.getId()}

    def cmd_unhold(self, msg: dict[str, Any]) -> dict[str, Any]:
        """re-INVITE with a=sendrecv."""
        call = self.pick_call(msg)
        prm = pj.CallOpParam(True)
        prm.opt.flag = pj.PJSUA_CALL_UNHOLD
        call.reinvite(prm)
        return {"call_id": call.getId()}

    def cmd_dtmf(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Send digits as RFC 4733 telephone-events (default) or SIP INFO."""
        digits = str(msg.get("digits", ""))
        if not digits or not set(digits) <= VALID_DTMF:
            raise CommandError(f"digits must be non-empty and from 0-9*#A-D, got {digits!r}")
        method = str(msg.get("method", "rfc2833")).lower()
        if method not in DTMF_METHODS:
            raise CommandError(f"method must be one of {', '.join(DTMF_METHODS)}")
        call = self.pick_call(msg)
        prm = pj.CallSendDtmfParam()
        prm.digits = digits
        prm.method = DTMF_METHODS[method]
        if msg.get("duration_ms"):
            prm.duration = int(msg["duration_ms"])
        call.sendDtmf(prm)
        return {"call_id": call.getId(), "digits": digits, "method": method}

    def cmd_play(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Play a 16-bit PCM WAV into the call (now, or as soon as a call has audio)."""
        path = os.path.abspath(str(msg.get("wav", "")))
        if not os.path.isfile(path):
            raise CommandError(f"no such WAV file: {path}")
        loop = bool(msg.get("loop", False))
        target = self.pick_call(msg) if msg.get("call_id") is not None else self._current_or_none()
        self._stop_player()
        player = WavPlayer(self, path, loop)
        player.createPlayer(path, 0 if loop else pj.PJMEDIA_FILE_NO_LOOP)
        player.call_id = target.getId() if target is not None else None
        self.player = player
        if target is not None:
            self._attach_media(target)
        armed = target is None or target.audio is None
        return {"wav": path, "loop": loop, "call_id": player.call_id, "armed": armed}

    def _stop_player(self) -> bool:
        player = self.player
        if player is None:
            return False
        self.player = None
        call = self.calls.get(player.call_id) if player.call_id is not None else None
        if call is not None and call.audio is not None:
            # The stream may have gone first; destroying the player is enough then.
            with contextlib.suppress(pj.Error):
                player.stopTransmit(call.audio)
        return True

    def cmd_stop_play(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Stop the current player, if any."""
        return {"stopped": self._stop_player()}

    def _current_or_none(self) -> PhoneCall | None:
        try:
            return self.pick_call({})
        except CommandError:
            return None

    def cmd_record(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Record what the phone receives into a WAV file (now, or from the next call with audio)."""
        path = os.path.abspath(str(msg.get("wav", "")))
        if not path.lower().endswith(".wav"):
            raise CommandError("record needs a 'wav' path ending in .wav")
        if self.recording is not None:
            raise CommandError(f"already recording to {self.recording.path}; stop_record first")
        target = self.pick_call(msg) if msg.get("call_id") is not None else self._current_or_none()
        self.recording = Recording(path, target.getId() if target is not None else None)
        if target is not None:
            self._attach_media(target)
        return {"wav": path, "call_id": self.recording.call_id, "armed": not self.recording.connected}

    def cmd_stop_record(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Close the recording so its WAV header is complete; emits ``record_stopped``."""
        path = self._finish_recording("stopped")
        if path is None:
            raise CommandError("not recording")
        return {"wav": path}

    def cmd_quit(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Hang up everything and exit."""
        self.stopping = "quit"
        return {}

    # -------------------------------------------------------------- teardown

    def shutdown(self) -> None:
        """Release pjsua2 objects in a crash-free order, then destroy the library.

        Rule: every Python wrapper of a pjsua2 object must be freed *before*
        ``libDestroy``.  A ``Call`` freed afterwards runs its C++ destructor
        against the reset library (pjsua reports state NULL, not CLOSING, so the
        destructor proceeds) and trips a pjsip assertion, aborting the process.
        Accounts are shut down explicitly and their wrappers stay referenced
        until ``os._exit``, so their destructors never run.
        """
        if not self.created:
            return
        if not self.started:
            # Half-initialised: most pjsua calls would trip pjsip assertions (abort).
            self.ep.libDestroy(pj.PJSUA_DESTROY_NO_RX_MSG)
            return
        if any(not c.gone for c in self.calls.values()):
            self.ep.hangupAllCalls()
            end = time.monotonic() + 2.0
            while any(not c.gone for c in self.calls.values()) and time.monotonic() < end:
                self.ep.libHandleEvents(POLL_MS)
        self._stop_player()
        self._finish_recording("shutdown")
        while not self.player_eofs.empty():
            self.player_eofs.get()
        self.tasks.clear()  # closures may hold calls
        self.calls.clear()
        self.call_order.clear()
        self.graveyard.clear()
        registered = self.reg_acc is not None and bool(self.reg_acc.getInfo().regIsActive)
        # Account.shutdown() sends the un-REGISTER; libDestroy waits (bounded) for its answer.
        self._retire_reg_account()
        if self.local_acc is not None:
            self.local_acc.shutdown()
        gc.collect()  # free any wrapper caught in a reference cycle while pjsua still exists
        # Without a registration there is nothing to wait for, and skipping
        # incoming messages also skips libDestroy's fixed one-second linger.
        self.ep.libDestroy(0 if registered else pj.PJSUA_DESTROY_NO_RX_MSG)


def wav_is_closed(path: str) -> bool:
    """True once pjmedia's WAV writer has closed ``path`` (and so written its final header).

    On Linux the definitive signal is that no descriptor of this process
    points at the file any more; elsewhere fall back to a consistent RIFF size.
    """
    target = os.path.realpath(path)
    fd_dir = "/proc/self/fd"
    if os.path.isdir(fd_dir):
        for fd in os.listdir(fd_dir):
            try:
                if os.readlink(os.path.join(fd_dir, fd)) == target:
                    return False
            except OSError:
                continue  # the descriptor closed while we looked
    try:
        with open(target, "rb") as f:
            head = f.read(12)
        size = os.path.getsize(target)
    except OSError:
        return False
    return head[:4] == b"RIFF" and head[8:12] == b"WAVE" and int.from_bytes(head[4:8], "little") + 8 == size


def _read_stdin(commands: queue.Queue[bytes | None]) -> None:
    """Feed stdin lines to the main loop; ``None`` marks EOF (the harness closed the pipe)."""
    try:
        for line in sys.stdin.buffer:
            if line.strip():
                commands.put(line)
    except (OSError, ValueError):
        pass
    commands.put(None)


def _flush_c_stdio() -> None:
    """Flush C stdio buffers (pjsip's console writer uses printf) before ``os._exit``."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).fflush(None)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of the agent process."""
    parser = argparse.ArgumentParser(prog="python -m tests.phones.agent", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="SIP port on 127.0.0.1 (0 = ephemeral)")
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    parser.add_argument("--user", default="phone", help="user part of this phone's local URI")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="exit after this long, whatever happens")
    parser.add_argument("--log-file", default=None, help="pjsip log file (nothing is logged without one)")
    parser.add_argument("--log-level", type=int, default=3, help="pjsip log level for --log-file (0-6)")
    parser.add_argument("--codecs", default=None, help="comma-separated codec prefixes in priority order")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Entry point: never returns, always leaves through ``os._exit``."""
    args = parse_args(argv)
    # Reserve the real stdout for JSON and send everything else written to fd 1
    # (pjsip's banner, stray prints) to stderr.
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    out = Emitter(proto_fd)
    # A pjsip assertion or a crash inside pjsua2 aborts the process: at least
    # leave the Python stack of every thread in the stderr file.
    faulthandler.enable(all_threads=True)
    faulthandler.dump_traceback_later(args.max_seconds + HARD_DEADLINE_SLACK_S, exit=True)

    agent = Agent(args, out)
    code = 0
    try:
        agent.start()
    except Exception as exc:
        out.emit("fatal", message=_error_text(exc))
        code = 2
        reason = "startup_failed"
    else:
        try:
            reason = agent.run()
        except Exception as exc:
            out.emit("fatal", message=_error_text(exc))
            code = 3
            reason = "crashed"

    faulthandler.cancel_dump_traceback_later()
    faulthandler.dump_traceback_later(TEARDOWN_GRACE_S, exit=True)
    try:
        agent.shutdown()
    except Exception as exc:
        out.emit("internal_error", where="shutdown", message=_error_text(exc))
    out.emit("exit", reason=reason, code=code)
    out.close()
    sys.stderr.flush()
    _flush_c_stdio()
    # Skip interpreter teardown: its arbitrary destructor order crashes pjsua2.
    os._exit(code)


if __name__ == "__main__":
    main()
