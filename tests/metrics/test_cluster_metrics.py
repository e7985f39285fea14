"""The cluster's metrics and the ``cluster`` section of ``/api/v1/stats`` on a node clustered
through a real nats-server (in-process App, real sockets): their names, types and labels, the
password of the NATS URL kept out, and ``mqhook_cluster_connected`` falling to 0 when NATS dies."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from integration.natsserver import NATS_SERVER, SKIP_REASON, NatsServer
from mqhook.app import App
from mqhook.config import load

pytestmark = pytest.mark.skipif(NATS_SERVER is None, reason=SKIP_REASON)
NODE = "mqhook@cluster-metrics"
SECRET = "s3cret-pw"


async def _until(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    value = await predicate()
    while not value and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        value = await predicate()
    return value


async def _run(tmp: Path, nats: NatsServer) -> tuple[Any, ...]:
    admin = {"bind": "127.0.0.1:0", "default_password": "cluster-metrics"}
    overrides = {
        "node": NODE,
        "mqtt": {"bind": "127.0.0.1:0"},
        "admin": admin,
        "data_dir": str(tmp / "data"),
        "cluster": {"nats_url": f"nats://user:{SECRET}@127.0.0.1:{nats.port}"},
    }
    app = App(load(environ={}, overrides=overrides))
    await app.start()
    try:
        base = f"http://{app.admin_address}"
        async with aiohttp.ClientSession() as http:

            async def scrape() -> dict[str, Any]:
                async with http.get(base + "/metrics") as resp:
                    return {f.name: f for f in text_string_to_metric_families(await resp.text())}

            login = {"username": "admin", "password": "cluster-metrics"}
            async with http.post(base + "/api/v1/login", json=login) as resp:
                token = (await resp.json())["token"]
            async with http.get(base + "/api/v1/stats", headers={"Authorization": f"Bearer {token}"}) as resp:
                stats = await resp.json()
            up = await scrape()
            nats.kill()

            async def down() -> dict[str, Any] | None:
                fams = await scrape()
                return fams if fams["mqhook_cluster_connected"].samples[0].value == 0 else None

            after = await _until(down)
        return up, stats, after
    finally:
        await app.stop()


def test_cluster_metrics_and_stats(tmp_path: Path) -> None:
    nats = NatsServer(tmp_path / "nats")
    nats.start()
    try:
        up, stats, after = asyncio.run(_run(tmp_path, nats))
    finally:
        nats.terminate()

    connected = up["mqhook_cluster_connected"]
    assert connected.type == "gauge" and [(s.labels, s.value) for s in connected.samples] == [({}, 1)]
    counts = up["mqhook_cluster_counts"]
    assert counts.type == "counter"
    series = {(s.labels["part"], s.labels["counter"]) for s in counts.samples if s.name.endswith("_total")}
    assert all(set(s.labels) == {"part", "counter"} for s in counts.samples)
    bridge = {"published", "received", "delivered", "too_long", "too_large", "errors"}
    assert {("bridge", c) for c in bridge} <= series, series
    assert [s.labels for s in up["mqhook_node_info"].samples] == [{"node": NODE}]

    cluster = stats["cluster"]
    assert cluster["node"] == NODE and cluster["connected"] is True
    assert SECRET not in str(stats) and cluster["nats_url"] == f"nats://user:******@127.0.0.1:{nats.port}"
    assert set(cluster["counters"]["bridge"]) == bridge
    # Every part's counters, named the same in both views.
    assert {(p, c) for p, cs in cluster["counters"].items() for c in cs} == series

    assert after is not None, "mqhook_cluster_connected stayed 1 after nats-server was killed"
