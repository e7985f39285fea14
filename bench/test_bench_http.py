"""Client-side CPU of one webhook HTTP request: ``send_once`` over the webhook's HTTP client.

Run: ``.venv/bin/pytest bench/test_bench_http.py --benchmark-only -p no:cacheprovider
--benchmark-columns=min,median,max,rounds`` (about 2 minutes); only the ratios:
``.venv/bin/pytest bench/test_bench_http.py --benchmark-only -p no:cacheprovider -k interleaved``.

The receiver is a plain aiohttp server in a **separate process** on 127.0.0.1 (answering
``{"result": "ok", "message": "success"}`` like EMQX's sample receiver), so its CPU does not
count. It exits when this module is done, or after ``RECEIVER_LIFETIME`` seconds at the latest.
Each round sends ``PER_ROUND`` requests on the event loop the broker uses (uvloop) and the timer
is this process's CPU time (``time.process_time``) divided by ``PER_ROUND``: **every time in the
table is CPU microseconds per request**, not wall time, so a busy machine slows it less.

Bodies: ``one`` is one event (~450 B, ``batch_size = 1``), ``hundred`` a batch of 100 (~45 KB).
Modes: ``seq`` sends one request at a time; ``conc`` keeps ``POOL_SIZE`` in flight (the
dispatcher keeps up to ``inflight_window`` requests, at most ``pool_size`` on the wire).

Variants (same request, same headers, same receiver):

- ``head``: aiohttp: ``send_once`` and ``make_session`` as they were at commit c987098, before the
  lean client (copied below, frozen): one ``aiohttp.ClientSession`` per webhook;
- ``now``: the lean client: ``mqhook.webhook.request.send_once`` over ``request.make_client``
  (``mqhook.webhook.http.HttpClient``, a keep-alive pool on ``asyncio.Protocol``, replies parsed by
  httptools / llhttp);
- ``floor``: not a candidate: a bare ``asyncio.Protocol`` writing the same bytes on one keep-alive
  connection and waiting for a Content-Length reply (no timeouts, no parser, no error handling).
  It is what the socket calls and the event loop cost, i.e. the least any Python client could do.

The ``sticky`` tests use a receiver path that sets a cookie on every reply, as load balancers with
sticky sessions do (AWS ALB's ``AWSALB``), and compare ``head`` with ``now`` there (aiohttp keeps
the cookie in its jar and sends it back; the lean client keeps no cookies).

``test_interleaved_ratios`` rotates ``head``, ``now`` and ``floor`` round by round (the machine's
noise hits all alike) and prints CPU us/request and the ratios now/head and now/floor per case;
those lines are the figures to quote.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import uvloop

from mqhook.webhook.http import HttpClient
from mqhook.webhook.model import WebhookConfig, parse_webhook
from mqhook.webhook.request import (
    _STATUS_KINDS,
    REPLY_LIMIT,
    Outcome,
    Request,
    RequestBuilder,
    make_client,
    send_once,
)

PER_ROUND = 200  # requests per benchmark round (the timer divides by this)
ROUNDS = 15
POOL_SIZE = 8
RECEIVER_LIFETIME = 300.0  # seconds; the receiver process exits by itself after this
SIZES = {"one": 1, "hundred": 100}
MODES = {"seq": 1, "conc": POOL_SIZE}


def cpu_per_request() -> float:
    """Process CPU seconds / PER_ROUND: a round's time in the table is CPU per request."""
    return time.process_time() / PER_ROUND


pytestmark = [pytest.mark.timeout(300), pytest.mark.benchmark(timer=cpu_per_request)]

RECEIVER = r"""
import asyncio, sys
from aiohttp import web
import uvloop

STICKY = "AWSALB=" + "x" * 120 + "; Expires=Tue, 01 Jan 2036 00:00:00 GMT; Path=/"

async def hook(request):
    await request.read()
    return web.json_response({"result": "ok", "message": "success"})

async def sticky(request):
    await request.read()
    return web.json_response({"result": "ok", "message": "success"}, headers={"Set-Cookie": STICKY})

async def main():
    app = web.Application(client_max_size=1 << 24)
    app.router.add_route("*", "/hook", hook)
    app.router.add_route("*", "/sticky", sticky)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_reader(sys.stdin.fileno(), stop.set)  # stdin closed: stop
    try:
        await asyncio.wait_for(stop.wait(), float(sys.argv[1]))
    except TimeoutError:
        pass
    await runner.cleanup()

uvloop.run(main())
"""


def _event(i: int) -> bytes:
    """One queued event's JSON, shaped like a message.publish (about 450 bytes)."""
    ev = {
        "id": f"0006054DC3E940F8F445000038A6{i:04X}",
        "clientid": f"client-{i % 50}",
        "username": "undefined",
        "topic": f"sensors/{i % 50}/temp",
        "qos": i % 2,
        "flags": {"retain": False, "dup": False},
        "payload": '{ "msg": "Hello Webhook", "value": 21.5 }',
        "pub_props": {"User-Property": {}},
        "peerhost": "127.0.0.1",
        "publish_received_at": 1694681417728 + i,
        "event": "message.publish",
        "node": "mqhook@127.0.0.1",
        "timestamp": 1694681417728 + i,
    }
    return json.dumps(ev, separators=(",", ":")).encode()


# -- the code as it was before the tuning (commit c987098), frozen for comparison ------------
def head_make_session(cfg: WebhookConfig) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=cfg.pool_size)
    timeout = aiohttp.ClientTimeout(total=cfg.request_timeout_s, connect=cfg.connect_timeout_s)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


async def head_send_once(session: aiohttp.ClientSession, req: Request, headers: dict[str, str]) -> Outcome:
    out = Outcome()
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        async with session.request(req.method, req.url, data=req.body, headers=headers, allow_redirects=False) as resp:
            out.status = resp.status
            out.kind = _STATUS_KINDS.get(resp.status // 100, "other_status")
            out.retry_after = resp.headers.get("Retry-After")
            chunks: list[bytes] = []
            size = 0
            while size < REPLY_LIMIT:
                chunk = await resp.content.read(REPLY_LIMIT - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            out.reply = b"".join(chunks)
    except TimeoutError:
        out.error = f"timeout after {loop.time() - start:.3f}s"
        if out.status is None:
            out.kind = "timeout"
    except aiohttp.ClientConnectorError as exc:
        out.error = f"cannot connect to {exc.host}:{exc.port}: {exc.os_error}"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        out.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    out.latency = loop.time() - start
    return out


# -- the floor: a bare protocol on one keep-alive connection (reference, not a candidate) ------
class _Bare(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.waiter: asyncio.Future[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].lower()
        i = head.index(b"content-length:") + len(b"content-length:")
        length = int(head[i : head.index(b"\r\n", i)])
        if len(self.buf) >= end + 4 + length and self.waiter is not None:
            reply, self.buf = self.buf[: end + 4 + length], self.buf[end + 4 + length :]
            self.waiter.set_result(reply)


class Floor:
    def __init__(self, port: int) -> None:
        self.port = port
        self.protos: list[_Bare] = []

    async def open(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(n):
            _, proto = await loop.create_connection(_Bare, "127.0.0.1", self.port)
            self.protos.append(proto)

    async def send(self, slot: int, req: Request, headers: dict[str, str]) -> bytes:
        proto = self.protos[slot]
        assert proto.transport is not None and req.body is not None
        path = req.url.split(str(self.port), 1)[1]
        lines = [f"{req.method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(req.body)}\r\n\r\n")
        proto.waiter = asyncio.get_running_loop().create_future()
        proto.transport.writelines([("\r\n".join(lines)).encode("latin-1"), req.body])
        return await proto.waiter

    def close(self) -> None:
        for proto in self.protos:
            if proto.transport is not None:
                proto.transport.close()


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def receiver_port() -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, str(RECEIVER_LIFETIME)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip().isdigit(), f"receiver did not start: {line!r}"
        yield int(line)
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        proc.stdout.close()
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = uvloop.new_event_loop()
    yield lp
    lp.run_until_complete(asyncio.sleep(0.1))  # let closed transports finish closing
    lp.close()


def _request(port: int, path: str, size: str) -> tuple[RequestBuilder, Request]:
    n = SIZES[size]
    url = f"http://127.0.0.1:{port}{path}"
    cfg = parse_webhook({"name": "bench", "url": url, "pool_size": POOL_SIZE, "batch_size": n}, "$.webhooks[0]")
    builder = RequestBuilder(cfg)
    req = builder.build([(_event(i), f"client-{i % 50}") for i in range(n)])
    assert req.count == n and req.body is not None
    return builder, req


class Case:
    """One variant on one body: ``run(n, inflight)`` sends ``n`` requests, ``inflight`` at a time."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, port: int, variant: str, size: str, path: str = "/hook"
    ) -> None:
        self.loop = loop
        self.builder, self.req = _request(port, path, size)
        cfg = parse_webhook({"name": "bench", "url": self.req.url, "pool_size": POOL_SIZE}, "$.webhooks[0]")
        self.variant = variant
        self.floor: Floor | None = None
        self.session: aiohttp.ClientSession | None = None
        self.client: HttpClient | None = None
        if variant == "floor":
            self.floor = Floor(port)
            loop.run_until_complete(self.floor.open(POOL_SIZE))
        elif variant == "head":

            async def create() -> aiohttp.ClientSession:
                return head_make_session(cfg)

            self.session = loop.run_until_complete(create())
        else:
            self.client = make_client(cfg)
        self.run(4 * POOL_SIZE, POOL_SIZE)  # open the pool's connections, warm the caches

    async def _one(self, slot: int) -> None:
        headers = self.builder.attempt_headers(self.req)  # what the dispatcher does per attempt
        if self.floor is not None:
            reply = await self.floor.send(slot, self.req, headers)
            assert reply.startswith(b"HTTP/1.1 200"), reply[:100]
            return
        if self.client is not None:
            out = await send_once(self.client, self.req, headers)
        else:
            assert self.session is not None
            out = await head_send_once(self.session, self.req, headers)
        assert out.status == 200 and out.kind == "2xx" and b'"ok"' in out.reply, (out.status, out.error)

    def run(self, n: int, inflight: int) -> None:
        async def worker(slot: int, count: int) -> None:
            for _ in range(count):
                await self._one(slot)

        async def all_of() -> None:
            await asyncio.gather(*[worker(slot, n // inflight) for slot in range(inflight)])

        self.loop.run_until_complete(all_of())

    def close(self) -> None:
        if self.floor is not None:
            self.floor.close()
        if self.session is not None:
            self.loop.run_until_complete(self.session.close())
        if self.client is not None:
            self.loop.run_until_complete(self.client.close())


def _bench(benchmark: Any, case: Case, inflight: int) -> None:
    try:
        benchmark.pedantic(case.run, args=(PER_ROUND, inflight), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    finally:
        case.close()
    benchmark.extra_info["unit"] = "CPU seconds per request"


@pytest.mark.parametrize("variant", ["head", "now", "floor"])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("size", list(SIZES))
def test_cpu_per_request(
    benchmark: Any, loop: asyncio.AbstractEventLoop, receiver_port: int, size: str, mode: str, variant: str
) -> None:
    benchmark.group = f"{size} {mode}"
    _bench(benchmark, Case(loop, receiver_port, variant, size), MODES[mode])


@pytest.mark.parametrize("variant", ["head", "now"])
def test_cpu_per_request_sticky_cookie(
    benchmark: Any, loop: asyncio.AbstractEventLoop, receiver_port: int, variant: str
) -> None:
    """The receiver sets a cookie on every reply (a sticky load balancer)."""
    benchmark.group = "one seq, Set-Cookie on every reply"
    _bench(benchmark, Case(loop, receiver_port, variant, "one", "/sticky"), 1)


def test_interleaved_ratios(
    benchmark: Any, loop: asyncio.AbstractEventLoop, receiver_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """head, now and floor rotate round by round; prints CPU us/request, now/head and now/floor per case."""
    cases = [(s, m, "/hook") for s in SIZES for m in MODES] + [("one", "seq", "/sticky")]
    rounds = int(os.environ.get("BENCH_HTTP_ROUNDS", "11"))
    variants = ("head", "now", "floor")
    lines: list[str] = []

    def measure() -> None:
        lines.clear()
        for size, mode, path in cases:
            trio = {v: Case(loop, receiver_port, v, size, path) for v in variants}
            cpu: dict[str, list[float]] = {v: [] for v in variants}
            try:
                for r in range(rounds):
                    for i in range(len(variants)):
                        v = variants[(r + i) % len(variants)]
                        t0 = time.process_time()
                        trio[v].run(PER_ROUND, MODES[mode])
                        cpu[v].append((time.process_time() - t0) / PER_ROUND * 1e6)
            finally:
                for c in trio.values():
                    c.close()
            head, now, floor = (statistics.median(cpu[v]) for v in variants)
            paired = statistics.median([n / h for n, h in zip(cpu["now"], cpu["head"], strict=True)])
            name = f"{size} {mode}{' Set-Cookie' if path == '/sticky' else ''}"
            lines.append(
                f"{name:22s} head {head:6.1f} us  now {now:6.1f} us  floor {floor:6.1f} us  "
                f"now/head {now / head:.3f} (paired {paired:.3f})  now/floor {now / floor:.2f}"
            )
            benchmark.extra_info[name] = {
                "head_us": head,
                "now_us": now,
                "floor_us": floor,
                "ratio": now / head,
                "paired": paired,
                "now_floor": now / floor,
            }

    benchmark.group = "interleaved (the time is the whole run's, not per request)"
    benchmark.pedantic(measure, rounds=1, iterations=1)
    with capsys.disabled():
        print(f"\nCPU per request, median of {rounds} interleaved rounds of {PER_ROUND} requests:")
        for line in lines:
            print("  " + line)
