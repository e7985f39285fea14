"""Composition root: builds the broker, the listeners and the admin server, and runs them.

Nothing imports this module; it imports everything it wires.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from aiohttp import web

from mqhook.admin.server import make_app
from mqhook.broker.broker import Broker
from mqhook.config import Config, parse_bind
from mqhook.server.tcp import start_listener
from mqhook.stats import Stats

log = logging.getLogger("mqhook")


def _bound(server: asyncio.AbstractServer | None, sites: list[web.BaseSite] | None = None) -> str:
    if server is not None:
        sockets = getattr(server, "sockets", ())
    else:
        sockets = []
        for site in sites or ():
            site_server = getattr(site, "_server", None)
            sockets.extend(getattr(site_server, "sockets", ()))
    host, port = sockets[0].getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.stats = Stats()
        self.broker: Broker | None = None
        self.mqtt_server: asyncio.AbstractServer | None = None
        self.admin_runner: web.AppRunner | None = None
        self.admin_site: web.TCPSite | None = None
        self.mqtt_address = ""
        self.admin_address = ""

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.broker = Broker(self.config.mqtt, self.stats, loop)
        host, port = parse_bind(self.config.mqtt.bind, "$.mqtt.bind")
        self.mqtt_server = await start_listener(self.broker, host, port)
        self.mqtt_address = _bound(self.mqtt_server)
        self.admin_runner = web.AppRunner(make_app(self.broker), access_log=None)
        await self.admin_runner.setup()
        ahost, aport = parse_bind(self.config.admin.bind, "$.admin.bind")
        self.admin_site = web.TCPSite(self.admin_runner, ahost, aport, reuse_address=True)
        await self.admin_site.start()
        self.admin_address = _bound(None, [self.admin_site])

    async def stop(self) -> None:
        if self.mqtt_server is not None:
            self.mqtt_server.close()
        if self.broker is not None:
            self.broker.shutdown()
        if self.admin_runner is not None:
            await self.admin_runner.cleanup()
        await asyncio.sleep(0)  # let the DISCONNECTs leave before the loop stops


async def serve(config: Config) -> None:
    app = App(config)
    await app.start()
    print(f"mqhook: listening mqtt={app.mqtt_address} admin={app.admin_address}", file=sys.stderr, flush=True)
    log.info("node %s ready (MQTT %s, admin %s)", config.node, app.mqtt_address, app.admin_address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await app.stop()


def run(config: Config) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a hard dependency; keep running without it
        log.warning("uvloop is not installed; using the default asyncio loop")
        asyncio.run(serve(config))
    else:
        uvloop.run(serve(config))
    return 0
