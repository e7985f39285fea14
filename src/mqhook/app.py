"""Composition root: builds the broker, the listeners and the admin server, and runs them.

Nothing imports this module; it imports everything it wires.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from mqhook.access.acl import DefaultAuthorizer, FileAuthorizer, authorizer_for
from mqhook.access.authn import FileAuthenticator
from mqhook.admin.auth import ensure_admin
from mqhook.admin.context import AdminContext
from mqhook.admin.server import make_app
from mqhook.admin.store import Store, StoreError
from mqhook.broker.broker import Broker
from mqhook.config import Config, allows_anonymous, parse_bind
from mqhook.errors import ConfigError, MqhookError
from mqhook.events.router import EventRouter
from mqhook.metrics import LoopLag, build_registry, cluster_snapshot
from mqhook.persist.service import DurableSessions
from mqhook.persist.store import SessionStoreError
from mqhook.server.limits import auto_max_connections, raise_open_file_limit
from mqhook.server.listeners import EdgeStats, Listener, listeners_of
from mqhook.webhook.manager import WebhookManager

log = logging.getLogger("mqhook")

WEBHOOK_DRAIN_SECONDS = 5.0


def _address(sockname: Any) -> str:
    host, port = sockname[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _max_connections(configured: int) -> int:
    """``mqtt.max_connections``, or (0) what the open file limit allows, once that is raised."""
    open_files = raise_open_file_limit()
    allowed = auto_max_connections(open_files)
    if not configured:
        log.info(
            "open file limit %d: at most %d MQTT connections ($.mqtt.max_connections = 0: auto)", open_files, allowed
        )
        return allowed
    if configured > allowed:
        log.warning(
            "$.mqtt.max_connections is %d but the open file limit %d allows about %d: beyond that, connections "
            "are closed by the system without a CONNACK; raise the limit (ulimit -n, LimitNOFILE) or lower the setting",
            configured,
            open_files,
            allowed,
        )
    return configured


class ListenError(MqhookError):
    """A listener could not bind its address."""


class App:
    def __init__(self, config: Config, reuse_port: bool = False) -> None:
        self.config = config
        self.reuse_port = reuse_port  # a --workers worker: the MQTT ports are shared (SO_REUSEPORT)
        self.stats = EdgeStats()  # the broker's counters and each listener's
        self.broker: Broker | None = None
        self.events: EventRouter | None = None
        self.webhooks = WebhookManager(
            config.webhooks, config.node, drain_timeout=WEBHOOK_DRAIN_SECONDS, data_dir=config.data_dir
        )
        self.admin: AdminContext | None = None
        self.durable: DurableSessions | None = None  # mqtt.durable_sessions: the session store
        self.cluster: Any = None  # [cluster] nats_url: mqhook.cluster.bridge.ClusterBridge
        self.authenticator: FileAuthenticator | None = None
        self.authorizer: FileAuthorizer | DefaultAuthorizer | None = None
        self._auth_pool: ThreadPoolExecutor | None = None
        self.loop_lag = LoopLag()
        self.mqtt_server: asyncio.AbstractServer | None = None  # the first listener's
        self.listeners: list[Listener] = []
        self.admin_runner: web.AppRunner | None = None
        self.admin_site: web.TCPSite | None = None
        self.mqtt_address = ""
        self.admin_address = ""

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.broker = Broker(self.config.mqtt, self.stats, loop)
        self.broker.max_connections = _max_connections(self.config.mqtt.max_connections)
        self._setup_access(loop)
        # A --workers worker's data_dir is DATA_DIR/wK (mqhook.cluster.workers): its admin store is
        # DATA_DIR's, shared by all the workers (mqhook.admin.context: the shared admin state).
        store = Store(Path(self.config.data_dir).parent if self.reuse_port else self.config.data_dir)
        ensure_admin(store, self.config.admin.default_password)
        self.admin = AdminContext(
            self.broker,
            self.webhooks,
            store,
            self.config.admin.token_expiry.seconds,
            self.config.node,
            metrics_auth=self.config.admin.metrics_auth,
        )
        self.admin.load_webhooks()
        self.webhooks.barrier = self.broker.barrier  # fsync = "always" spools hold the broker's output
        self.webhooks.start(loop)
        events = self.events = EventRouter(
            self.config.node, self.broker.hooks, self.broker.backpressure, self.webhooks.consumers
        )
        self.webhooks.on_change = lambda: events.set_consumers(self.webhooks.consumers)
        if self.config.cluster.nats_url:  # before restored sessions subscribe: their interest goes to NATS
            await self._start_cluster(self.config.cluster.nats_url)
            await self._share_admin()
        if self.config.mqtt.durable_sessions:  # sessions and retained messages back before anyone connects
            self.durable = DurableSessions(self.broker, self.config.data_dir)
            await self.durable.restore()
        await self._start_listeners()
        self.loop_lag.start(loop)
        self.admin.start(loop)
        registry = build_registry(
            self.broker,
            self.webhooks,
            self.loop_lag,
            listeners=self.stats.listeners.values(),
            node=self.config.node,
            cluster=lambda: self.cluster,
        )
        app = make_app(self.admin, registry, dashboard=self.config.admin.dashboard)
        self.admin_runner = web.AppRunner(app, access_log=None)
        await self.admin_runner.setup()
        ahost, aport = parse_bind(self.config.admin.bind, "$.admin.bind")
        self.admin_site = web.TCPSite(self.admin_runner, ahost, aport, reuse_address=True)
        try:
            await self.admin_site.start()
        except OSError as exc:
            await self.stop()
            raise ListenError(
                f"cannot listen for admin HTTP on {self.config.admin.bind} ($.admin.bind): {exc.strerror}"
            ) from exc
        self.admin_address = _address(self.admin_runner.addresses[0])

    async def _start_cluster(self, nats_url: str) -> None:
        assert self.broker is not None
        try:
            from mqhook.cluster.bridge import ClusterBridge
        except ImportError as exc:
            raise ConfigError(
                f"$.cluster.nats_url: {nats_url!r} needs the NATS client; install the extra mqhook[cluster] ({exc})"
            ) from exc
        bridge = ClusterBridge(
            self.broker, nats_url, self.config.cluster.node or self.config.node, self.config.cluster.replicas
        )
        bridge.sessions.node_timeout = self.config.cluster.node_timeout.seconds
        try:
            await bridge.start()
        except Exception as exc:
            await bridge.close()
            raise ListenError(f"cannot connect to NATS at {nats_url} ($.cluster.nats_url): {exc}") from exc
        self.cluster = bridge
        self.broker.cluster = bridge

    async def _share_admin(self) -> None:
        """Clustered: the admin context announces its store's changes to the other nodes and syncs
        on theirs (the nodes sharing its store: --workers), and /api/v1/stats gets a cluster section."""
        assert self.admin is not None and self.cluster is not None
        bridge = self.cluster
        self.admin.cluster_stats = lambda: cluster_snapshot(bridge)
        await bridge.subscribe_control("admin", self.admin.remote_change)
        self.admin.announce = lambda data: bridge.publish_control("admin", data)

    def _setup_access(self, loop: asyncio.AbstractEventLoop) -> None:
        """The password file and the ACL: slow hashes run on a small thread pool, never on the loop."""
        assert self.broker is not None
        pool = self._auth_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mqhook-authn")

        def offload(fn: Callable[..., Any], args: tuple[Any, ...], on_done: Callable[[Any], None]) -> None:
            future = loop.run_in_executor(pool, fn, *args)
            future.add_done_callback(lambda f: on_done(False if f.exception() else f.result()))

        self.authenticator = FileAuthenticator(
            self.config.authn, allows_anonymous(self.config), offload, self.broker.clock
        )
        self.authorizer = authorizer_for(self.config.authz)
        self.broker.authenticator = self.authenticator
        self.broker.authorizer = self.authorizer

    def reload_access(self) -> None:
        """SIGHUP: read the password file and the ACL again; a bad one is reported and the old kept."""
        for name, part in (("password file", self.authenticator), ("ACL file", self.authorizer)):
            if part is None:
                continue
            try:
                part.reload()
            except MqhookError as exc:
                log.error("SIGHUP: %s not reloaded, the previous one stays in force: %s", name, exc)
            else:
                log.info("SIGHUP: %s reloaded", name)

    async def _start_listeners(self) -> None:
        """mqtt.bind and every [[listeners]] entry; a TLS file that does not load is a ConfigError,
        an address that cannot be bound a ListenError (the listeners started before it are closed)."""
        assert self.broker is not None
        # Made first (TLS contexts built), bound after: a bad certificate binds nothing.
        listeners = [
            Listener(self.broker, settings, path, self.reuse_port) for path, settings in listeners_of(self.config)
        ]
        for listener in listeners:
            self.stats.listeners[listener.name] = listener.stats
        for listener in listeners:
            try:
                await listener.start()
            except OSError as exc:
                for started in self.listeners:
                    started.close()
                field = listener.path if listener.path == "$.mqtt.bind" else listener.path + ".bind"
                raise ListenError(
                    f"cannot listen for MQTT ({listener.settings.type}) on {listener.settings.bind} ({field}): "
                    f"{exc.strerror or exc}"
                ) from exc
            self.listeners.append(listener)
        first = self.listeners[0]
        self.mqtt_server = first.server
        self.mqtt_address = first.address

    async def stop(self) -> None:
        self.loop_lag.stop()
        for listener in self.listeners:
            listener.close()
        if self.broker is not None:
            self.broker.shutdown()
        if self.cluster is not None:
            await self.cluster.close()
        if self.durable is not None:  # the sessions as the connections left them, before the webhooks drain
            await self.durable.flush()
        # Events already queued get a bounded chance to leave before the process ends; what a memory
        # webhook still holds then is dropped (logged, counted stopped), a durable one's stays spooled.
        queued = sum(w.queuing + w.inflight_events for w in self.webhooks)
        if queued:
            log.info("delivering %d queued webhook event(s) for up to %gs", queued, WEBHOOK_DRAIN_SECONDS)
        await self.webhooks.close(drain_timeout=WEBHOOK_DRAIN_SECONDS)
        if self.durable is not None:  # and what timers changed meanwhile (expiries, delayed wills)
            await self.durable.close()
        if self.admin_runner is not None:
            await self.admin_runner.cleanup()
        if self.admin is not None:
            self.admin.stop()
        if self._auth_pool is not None:
            self._auth_pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.sleep(0)  # let the DISCONNECTs leave before the loop stops


async def serve(config: Config, reuse_port: bool = False) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app = App(config, reuse_port)
    loop.add_signal_handler(signal.SIGHUP, app.reload_access)
    await app.start()
    # Everything built so far (modules, config, listeners) lives as long as the process: move it
    # out of the collector's sight, so full collections only walk objects made while serving.
    # Measured on the webhook path (bench/e2e_webhook.py, batch_size 100): ~20% less CPU per message.
    gc.freeze()
    # Printed only once signals are handled, so whoever waits for this line may signal right away.
    # mqtt= is the first listener (mqtt.bind's unless it is ""); every other follows as NAME=URL.
    others = "".join(f" {lst.name}={lst.url}" for lst in app.listeners[1:])
    print(f"mqhook: listening mqtt={app.mqtt_address} admin={app.admin_address}{others}", file=sys.stderr, flush=True)
    log.info("node %s ready (MQTT %s, admin %s)", config.node, app.mqtt_address, app.admin_address)
    await stop.wait()
    log.info("shutting down")
    await app.stop()


def run(config: Config, reuse_port: bool = False) -> int:
    """Run until SIGINT/SIGTERM; 0 on a clean stop, 1 when a listener cannot start."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a hard dependency; keep running without it
        log.warning("uvloop is not installed; using the default asyncio loop")
        runner: Any = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(serve(config, reuse_port))
    except (ListenError, StoreError, SessionStoreError) as exc:
        print(f"mqhook: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:  # a file the config names (password file, ACL) is missing or invalid
        print(f"mqhook: config error: {exc}", file=sys.stderr)
        return 2
    return 0
