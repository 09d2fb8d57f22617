"""The composition root: wires provisioning, the CDR spool and the admin API into the switch.

This is the one place that knows every package (ARCHITECTURE.md, "Which way imports go").
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cdr.spool import SpoolWriter
from provisioning.bindings import DbBindingStore
from provisioning.db import session_factory_from_url
from provisioning.migrate import upgrade
from provisioning.snapshot import SnapshotWatcher
from provisioning.tokens import ensure_admin_token
from switch.call.core import CoreConfig, SwitchCore
from switch.io.transport import ListenConfig, SipTransports
from switch.registrar.auth import DeviceAuth
from switch.registrar.guard import AuthGuard
from switch.registrar.registrar import Registrar, RegistrarConfig
from switch.sip import ids
from switch.sip.digest import DigestAuthenticator
from switch.transaction.layer import TimerConfig
from switch.transaction.timers import TimerQueue
from trunkline.billing import SidecarSupervisor
from trunkline.config import Settings

log = logging.getLogger("trunkline")


class SwitchCollector(Collector):
    """Prometheus view of the switch's live counters, read at scrape time (off the hot path)."""

    def __init__(self, switch: Switch) -> None:
        self.switch = switch

    def collect(self) -> Iterator[Any]:
        sw = self.switch
        core = sw.core
        yield GaugeMetricFamily("trunkline_registrations", "Current registered contacts (bindings)",
                                value=sw.registrar.count)
        # How far behind the database the switch's directory is: compare with max(changes.id).
        yield GaugeMetricFamily("trunkline_provisioning_change", "The last provisioning change (changes.id) "
                                "the switch's directory reflects", value=sw.watcher.snapshot.change_id)
        yield GaugeMetricFamily("trunkline_active_calls", "Calls answered and not yet ended",
                                value=core.active_calls)
        yield GaugeMetricFamily("trunkline_calls_in_progress", "Call attempts being set up or up",
                                value=len(core.calls))
        yield GaugeMetricFamily("trunkline_transactions", "Live SIP transactions", value=len(core.layer))
        # The exporter runs on an API worker thread: every dict is copied in one C call first.
        responses = CounterMetricFamily("trunkline_sip_responses", "SIP responses sent by the switch", labels=["code"])
        for code, n in sorted(dict(core.stats.responses).items()):
            responses.add_metric([str(code)], n)
        yield responses
        requests = CounterMetricFamily("trunkline_sip_requests", "SIP requests received", labels=["method"])
        for method, n in sorted(dict(core.stats.requests).items()):
            requests.add_metric([method[:32]], n)
        yield requests
        yield CounterMetricFamily("trunkline_sip_parse_errors", "Malformed SIP messages received",
                                  value=core.stats.parse_errors)
        yield CounterMetricFamily("trunkline_calls", "Call attempts routed to a callee", value=core.stats.calls_started)
        yield CounterMetricFamily("trunkline_cdrs", "CDRs emitted", value=core.stats.cdrs)
        yield CounterMetricFamily("trunkline_auth_failures", "Failed digest authentications",
                                  value=sw.auth.failures)
        yield CounterMetricFamily("trunkline_auth_blocks", "Sources blocked after repeated authentication failures",
                                  value=sw.auth.blocks)
        yield GaugeMetricFamily("trunkline_auth_blocked_sources", "Sources currently blocked",
                                value=sw.auth.guard.blocked_count(time.time()))


@dataclass
class Switch:
    """Everything ``trunkline run`` starts, for the CLI and for tests that run it in-process."""

    settings: Settings
    transports: SipTransports
    core: SwitchCore
    registrar: Registrar
    auth: DeviceAuth
    watcher: SnapshotWatcher
    bindings: DbBindingStore
    cdrs: SpoolWriter
    session_factory: Any
    admin_token: str | None = None
    api_server: Any = None
    api_task: asyncio.Task[None] | None = None
    collectors: list[tuple[CollectorRegistry, Collector]] = field(default_factory=list)

    async def stop(self) -> None:
        if self.api_server is not None:
            self.api_server.should_exit = True
        if self.api_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.api_task, timeout=5)
        await self.transports.stop()
        self.watcher.stop()
        # Flush what the switch handed over: bindings to the database (with the refreshes held
        # back, see RegistrarConfig.refresh_lag_ratio), CDRs to disk (the billing sidecar takes
        # them from the spool).
        self.registrar.persist_all()
        self.bindings.close()
        self.cdrs.close()
        for registry, collector in self.collectors:
            with contextlib.suppress(KeyError):
                registry.unregister(collector)


def _nonce_secret(settings: Settings) -> bytes:
    """The key that signs digest nonces, kept in var/ (mode 600) so a restart does not turn every
    phone's current nonce into an authentication failure; nodes of a cluster share it through
    ``auth.nonce_secret``."""
    if settings.auth.nonce_secret:
        return settings.auth.nonce_secret.encode()
    path = settings.var_dir / "nonce-secret"
    try:
        data = bytes.fromhex(path.read_text().strip())
        if len(data) >= 16:
            return data
    except (OSError, ValueError):
        pass
    data = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(data.hex() + "\n")
    return data


async def start_switch(settings: Settings, *, registry: CollectorRegistry | None = None) -> Switch:
    """Open the CDR spool, migrate the database, load provisioning and bindings, open the SIP
    ports and the API."""
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    # First: a second switch on the same spool fails here (SpoolLocked), before it opens anything.
    b = settings.billing
    cdrs = SpoolWriter(settings.spool_dir, fsync_interval=b.fsync_interval, segment_bytes=b.segment_bytes)
    try:
        return await _start_switch(settings, cdrs, registry)
    except BaseException:
        cdrs.close()  # releases the spool for the next attempt
        raise


async def _start_switch(settings: Settings, cdrs: SpoolWriter, registry: CollectorRegistry | None) -> Switch:
    loop = asyncio.get_running_loop()
    url = settings.database_url
    await loop.run_in_executor(None, upgrade, url)
    session_factory = session_factory_from_url(url)
    admin_token = await loop.run_in_executor(
        None, lambda: ensure_admin_token(session_factory, env_token=settings.admin_token,
                                         token_file=settings.var_dir / "admin-token"))
    watcher = await loop.run_in_executor(None, lambda: SnapshotWatcher(session_factory).start())
    bindings = DbBindingStore(session_factory).start()

    sip = settings.sip
    a = settings.auth
    timers = TimerQueue()
    transports = SipTransports(
        ListenConfig(host=sip.host, ports=tuple(sip.ports), udp=sip.udp, tcp=sip.tcp,
                     max_message_size=sip.max_message_size, max_tcp_connections=sip.max_tcp_connections,
                     max_tcp_per_ip=sip.max_tcp_per_ip, tcp_idle_timeout=sip.tcp_idle_timeout,
                     advertised_host=sip.advertised_host),
        timers, loop)
    digest = DigestAuthenticator(secret=_nonce_secret(settings), algorithms=a.algorithms, nonce_ttl=a.nonce_ttl)
    guard = AuthGuard(window=a.guard_window, slow_after=a.guard_slow_after, block_after=a.guard_block_after,
                      block_for=a.guard_block_for, max_delay=a.guard_max_delay)
    auth = DeviceAuth(watcher, digest, guard, default_realm=sip.realm, check_uri=a.check_uri)
    r = settings.registrar
    registrar = Registrar(watcher, auth, bindings,
                          RegistrarConfig(min_expires=r.min_expires, max_expires=r.max_expires,
                                          default_expires=r.default_expires, max_contacts=r.max_contacts),
                          to_tag=ids.new_tag)
    registrar.load(await loop.run_in_executor(None, bindings.load_bindings))
    core = SwitchCore(
        sender=transports, timers=timers, directory=watcher, registrar=registrar, auth=auth, cdr_sink=cdrs,
        local_address=transports.local_address, mono=loop.time,
        config=CoreConfig(no_answer_timeout=sip.no_answer_timeout,
                          timers=TimerConfig(t1=sip.t1, t2=sip.t2, t4=sip.t4)),
    )
    transports.sink = core
    transports.on_connection_lost = registrar.connection_lost

    def changed(changes: list[tuple[str, int]]) -> None:
        # Runs on the watcher's thread: hop onto the event loop, where all switch state lives.
        loop.call_soon_threadsafe(core.provisioning_changed, list(changes))

    watcher.add_listener(changed)
    await transports.start()
    transports.arm_timer()

    switch = Switch(settings=settings, transports=transports, core=core, registrar=registrar, auth=auth,
                    watcher=watcher, bindings=bindings, cdrs=cdrs, session_factory=session_factory,
                    admin_token=admin_token)
    reg = registry if registry is not None else REGISTRY
    collector = SwitchCollector(switch)
    reg.register(collector)
    switch.collectors.append((reg, collector))
    if settings.api.enabled:
        await _start_api(switch, reg)
    log.info("Trunkline started: %d binding(s) restored, SIP %s, admin API %s", registrar.count,
             ", ".join(f"{t}/{p}" for t, _h, p in transports.bound),
             f"http://{settings.api.host}:{settings.api.port}" if settings.api.enabled else "off")
    return switch


async def _start_api(switch: Switch, registry: CollectorRegistry) -> None:
    import uvicorn

    from admin_api.app import create_app

    app = create_app(session_factory=switch.session_factory, realm_default=switch.settings.sip.realm,
                     metrics_registry=registry)

    class _Server(uvicorn.Server):
        # The switch owns the process's signals (it must flush CDRs and bindings on exit).
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    api = switch.settings.api
    server = _Server(uvicorn.Config(app, host=api.host, port=api.port, log_level="warning", access_log=False,
                                    lifespan="off"))
    switch.api_server = server
    switch.api_task = asyncio.get_running_loop().create_task(server.serve())
    for _ in range(200):  # wait until it listens (or failed) so callers can use it at once
        if server.started or switch.api_task.done():
            break
        await asyncio.sleep(0.01)
    if switch.api_task.done():
        exc = switch.api_task.exception()
        raise RuntimeError(f"admin API failed to start on {api.host}:{api.port}: {exc}")


def tune_gc() -> None:
    """Collect less often: a call allocates a few hundred short-lived objects, and with the
    default gen-0 threshold (700) the collector ran every few calls and walked every live
    transaction (bench_core: 338 -> 237 us of CPU per call).  Objects alive after start-up
    (modules, provisioning snapshot) are moved out of the collector's sight with gc.freeze()."""
    gc.set_threshold(10_000, 50, 100)
    gc.freeze()


def billing_argv(config_path: str | None) -> list[str]:
    """The sidecar's command line: the same interpreter and configuration (the environment, and
    with it every TRUNKLINE_* setting, is inherited)."""
    import sys

    argv = [sys.executable, "-m", "trunkline", "billing", "--parent-pid", str(os.getpid())]
    if config_path:
        argv += ["--config", str(config_path)]
    return argv


async def run_forever(settings: Settings, *, config_path: str | None = None) -> None:
    switch = await start_switch(settings)
    sidecar: SidecarSupervisor | None = None
    if settings.billing.enabled:
        # Started once the switch has migrated the database the sidecar writes to.
        sidecar = SidecarSupervisor(billing_argv(config_path))
        sidecar.start()
    tune_gc()
    if switch.admin_token:
        # Printed once, on the first start; only its hash is stored (also in var/admin-token, mode 600).
        import sys

        sys.stdout.write(f"Admin API token (shown once, also saved to {settings.var_dir / 'admin-token'}):\n"
                         f"  {switch.admin_token}\n")
        sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    await switch.stop()
    if sidecar is not None:
        # After the spool is closed: the sidecar drains it to the database before it exits.
        await sidecar.stop()
