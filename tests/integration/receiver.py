"""A real HTTP webhook receiver for the end-to-end webhook tests, plus the small helpers they share.

``Receiver`` is an aiohttp server on 127.0.0.1:0 running in a background thread with its own
event loop. It records every request (method, path, headers, raw body, parsed JSON, arrival and
completion times) and answers according to per-test behaviour:

- ``statuses``: a queue of answers used one per request (an int, or ``(status, headers)``),
  then ``default_status``;
- ``delay``: seconds to wait before answering (a number, or a callable of the ``Request``);
- ``gate``: a ``threading.Event``; while it is clear every request is held unanswered, like a
  stalled receiver. ``gate.set()`` releases them.

Every wait is bounded; a timed-out wait fails with a summary of what did arrive.
Nothing here knows how mqhook is implemented: the expectations live in the tests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

WAIT = 5.0
NODE = "mqhook@127.0.0.1"
NOT_JSON = object()

Answer = int | tuple[int, dict[str, str]]


@dataclass
class Request:
    """One HTTP request as the receiver saw it."""

    index: int  # arrival order, from 0
    method: str
    path: str  # decoded path, e.g. /hooks/c1
    raw_path: str  # as sent, with the query string
    headers: CIMultiDict[str]
    body: bytes
    json: Any  # the parsed body, or NOT_JSON
    arrived: float  # time.monotonic() when the handler started
    wall: float  # time.time() at the same moment
    status: int | None = None  # the status answered; None while held (gate, delay)
    done: float | None = None  # time.monotonic() when the answer was decided
    done_index: int | None = None  # completion order, from 0

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def events(self) -> list[dict[str, Any]]:
        """The event objects in the body: a JSON array (batch) is flattened, an object is one event."""
        if isinstance(self.json, list):
            return [e for e in self.json if isinstance(e, dict)]
        if isinstance(self.json, dict):
            return [self.json]
        return []

    def __repr__(self) -> str:
        names = [e.get("event") for e in self.events][:5]
        return f"<Request #{self.index} {self.method} {self.raw_path} status={self.status} events={names}>"


def matches(event: dict[str, Any], name: str | None, fields: dict[str, Any]) -> bool:
    """``name`` is the event name (None: any). A field value that is callable is a predicate."""
    if name is not None and event.get("event") != name:
        return False
    for key, want in fields.items():
        if key not in event:
            return False
        if callable(want):
            if not want(event[key]):
                return False
        elif event[key] != want:
            return False
    return True


class Receiver:
    """Start with ``start()`` (or use as a context manager); ``url(path)`` is where to point a webhook."""

    def __init__(
        self,
        statuses: Iterable[Answer] = (),
        default_status: int = 200,
        delay: float | Callable[[Request], float] = 0.0,
        gate: threading.Event | None = None,
    ) -> None:
        self.statuses: deque[Answer] = deque(statuses)
        self.default_status = default_status
        self.delay = delay
        self.gate = gate
        self.host = "127.0.0.1"
        self.port = 0
        self._cond = threading.Condition()
        self._requests: list[Request] = []
        self._done_count = 0
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, timeout: float = WAIT) -> Receiver:
        self._thread = threading.Thread(target=self._run, name="webhook-receiver", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError("webhook receiver did not start in time")
        if self._start_error is not None:
            raise RuntimeError(f"webhook receiver failed to start: {self._start_error!r}")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:
            self._start_error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _startup(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        server = site._server  # the asyncio Server: the only way to learn the port picked for 0
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self, timeout: float = 10.0) -> None:
        """Release held requests, close every connection, stop the loop and join the thread."""
        if self._thread is None:
            return
        self._closing = True
        loop = self._loop
        if loop is not None and loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            try:
                fut.result(timeout)
            finally:
                loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str = "/") -> str:
        """``http://127.0.0.1:PORT`` + path; the path is used verbatim (it may hold ``${var}``)."""
        return f"http://{self.host}:{self.port}{path}"

    # -- the handler (receiver thread) -----------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            parsed: Any = json.loads(body) if body else NOT_JSON
        except ValueError:
            parsed = NOT_JSON
        with self._cond:
            rec = Request(
                index=len(self._requests),
                method=request.method,
                path=request.path,
                raw_path=request.raw_path,
                headers=CIMultiDict(request.headers),
                body=body,
                json=parsed,
                arrived=time.monotonic(),
                wall=time.time(),
            )
            self._requests.append(rec)
            self._cond.notify_all()
        delay = self.delay(rec) if callable(self.delay) else self.delay
        if delay > 0:
            await asyncio.sleep(delay)
        gate = self.gate
        while gate is not None and not gate.is_set() and not self._closing:
            await asyncio.sleep(0.005)
        with self._cond:
            answer = self.statuses.popleft() if self.statuses else self.default_status
        status, headers = (answer, {}) if isinstance(answer, int) else answer
        with self._cond:
            rec.status = status
            rec.done = time.monotonic()
            rec.done_index = self._done_count
            self._done_count += 1
            self._cond.notify_all()
        text = '{"result":"ok"}' if 200 <= status < 300 else '{"result":"error"}'
        return web.Response(status=status, headers=headers, text=text, content_type="application/json")

    # -- inspection (test thread) ------------------------------------------------------------
    def set_statuses(self, answers: Iterable[Answer]) -> None:
        with self._cond:
            self.statuses = deque(answers)

    def requests(self) -> list[Request]:
        """Every request so far, in arrival order (including non-2xx and still-held ones)."""
        with self._cond:
            return list(self._requests)

    def completed(self) -> list[Request]:
        """Answered requests in the order the answers were decided."""
        with self._cond:
            done = [r for r in self._requests if r.done_index is not None]
        return sorted(done, key=lambda r: r.done_index or 0)

    def events(self, name: str | None = None, ok_only: bool = True, **fields: Any) -> list[dict[str, Any]]:
        """Events (flattened over batches) in arrival order; by default only from 2xx-answered requests,
        so a request that was refused and retried counts once."""
        with self._cond:
            reqs = list(self._requests)
        out = []
        for r in reqs:
            if ok_only and not r.ok:
                continue
            out.extend(e for e in r.events if matches(e, name, fields))
        return out

    def summary(self, limit: int = 8) -> str:
        evs = self.events(ok_only=False)
        counts: dict[str, int] = {}
        for e in evs:
            counts[str(e.get("event"))] = counts.get(str(e.get("event")), 0) + 1
        last = [(e.get("event"), e.get("clientid"), e.get("topic"), e.get("reason", e.get("reason_code"))) for e in evs]
        statuses = sorted({str(r.status) for r in self.requests()})
        return f"{len(self.requests())} requests (statuses {statuses}), events {counts}; last: {last[-limit:]}"

    # -- waiting -----------------------------------------------------------------------------
    def wait_for(self, predicate: Callable[[], Any], timeout: float = WAIT, what: str = "condition") -> Any:
        """Wait (bounded) until ``predicate()`` is truthy; returns its value. Re-checked at every request."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, 0.1))
        raise AssertionError(f"webhook receiver: timed out after {timeout}s waiting for {what}; {self.summary()}")

    def wait_events(self, name: str | None, n: int, timeout: float = WAIT, **fields: Any) -> list[dict[str, Any]]:
        """Wait until at least ``n`` matching events arrived (2xx-answered); returns all matching."""

        def enough() -> list[dict[str, Any]] | None:
            evs = self.events(name, **fields)
            return evs if len(evs) >= n else None

        return self.wait_for(enough, timeout, f"{n} x {name or 'any event'} {fields or ''}")

    def wait_event(self, name: str | None, timeout: float = WAIT, **fields: Any) -> dict[str, Any]:
        return self.wait_events(name, 1, timeout, **fields)[0]

    def wait_quiet(self, quiet: float = 0.3, timeout: float = WAIT) -> None:
        """Wait (bounded) until no request has arrived or been answered for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                stamps = [t for r in self._requests for t in (r.arrived, r.done) if t is not None]
                idle = time.monotonic() - max(stamps, default=0.0)
                held = any(r.done is None for r in self._requests)
                if idle >= quiet and not held:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"webhook receiver still busy after {timeout}s; {self.summary()}")
                self._cond.wait(min(remaining, max(0.01, quiet - idle)))

    def assert_no_event(self, duration: float, name: str | None = None, **fields: Any) -> None:
        """Negative check: no matching event (from any request, answered or not) within ``duration``."""
        deadline = time.monotonic() + duration
        with self._cond:
            while True:
                found = self.events(name, ok_only=False, **fields)
                assert not found, f"unexpected {name or 'event'} {fields}: {found[:3]}"
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(min(remaining, 0.1))


class Receivers:
    """Test-scoped factory: ``rx(**behaviour)`` starts a Receiver; all are stopped at teardown."""

    def __init__(self) -> None:
        self.all: list[Receiver] = []

    def __call__(self, **kw: Any) -> Receiver:
        r = Receiver(**kw).start()
        self.all.append(r)
        return r

    def stop_all(self) -> None:
        for r in self.all:
            r.stop()

    @classmethod
    def fixture(cls) -> Iterator[Receivers]:
        """Body of the per-module ``rx`` fixture."""
        reg = cls()
        try:
            yield reg
        finally:
            reg.stop_all()


# ---------------------------------------------------------------------------- config helpers
def toml_value(v: Any) -> str:
    """A Python value as TOML (JSON string escapes are valid TOML basic-string escapes)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML for {v!r}")


def config_toml(webhooks: list[dict[str, Any]], node: str = NODE, mqtt: dict[str, Any] | None = None) -> str:
    lines = [f"node = {toml_value(node)}"]
    if mqtt:
        lines.append("[mqtt]")
        lines += [f"{k} = {toml_value(v)}" for k, v in mqtt.items()]
    for wh in webhooks:
        lines.append("[[webhooks]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in wh.items()]
    return "\n".join(lines) + "\n"


def webhook(name: str, url: str, **opts: Any) -> dict[str, Any]:
    """One ``[[webhooks]]`` table; defaults: all events, topics ["#"]."""
    return {"name": name, "url": url, "events": "all", "topics": ["#"], **opts}


def start_broker(
    broker: Any,
    rx: Receiver,
    name: str = "wh",
    mqtt: dict[str, Any] | None = None,
    path: str = "/",
    **opts: Any,
) -> Any:
    """A broker with one webhook pointed at ``rx``."""
    return broker(config_toml([webhook(name, rx.url(path), **opts)], mqtt=mqtt))


# ---------------------------------------------------------------------------- stats helpers
def webhook_stats(b: Any, name: str) -> dict[str, Any]:
    stats = b.stats()
    assert "webhooks" in stats, f"/api/v1/stats has no 'webhooks' key: {sorted(stats)}"
    assert name in stats["webhooks"], f"no stats for webhook {name!r}: {sorted(stats['webhooks'])}"
    return stats["webhooks"][name]


def dropped_total(s: dict[str, Any]) -> int:
    return sum(int(v) for v in s["dropped"].values())


def balanced(s: dict[str, Any]) -> bool:
    """Drained and consistent: nothing queued or in flight; matched = success + failed + dropped."""
    return s["queuing"] == 0 and s["inflight"] == 0 and s["matched"] == s["success"] + s["failed"] + dropped_total(s)


def wait_drained(b: Any, name: str, timeout: float = WAIT, matched: int | None = None) -> dict[str, Any]:
    """Poll the webhook's stats until they balance (and ``matched`` reaches a value); returns them."""
    deadline = time.monotonic() + timeout
    s = webhook_stats(b, name)
    while time.monotonic() < deadline:
        if balanced(s) and (matched is None or s["matched"] >= matched):
            return s
        time.sleep(0.05)
        s = webhook_stats(b, name)
    raise AssertionError(f"webhook {name!r} stats did not drain/balance in {timeout}s: {s}")


# ---------------------------------------------------------------------------- body checks
def now_ms() -> int:
    return int(time.time() * 1000)


def jtype(v: Any) -> str:
    """The JSON type of a parsed value; bool is not int, int is not float."""
    for t, n in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"), (list, "list"), (dict, "dict")):
        if type(v) is t:
            return n
    return "null" if v is None else type(v).__name__


def assert_same_shape(expected: Any, actual: Any, path: str = "$") -> None:
    """Same JSON types recursively, and for objects exactly the same key set."""
    assert jtype(expected) == jtype(actual), f"{path}: expected a {jtype(expected)}, got {actual!r}"
    if isinstance(expected, dict):
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        assert not missing and not extra, f"{path}: missing keys {missing}, unexpected keys {extra}"
        for k in expected:
            assert_same_shape(expected[k], actual[k], f"{path}.{k}")
    elif isinstance(expected, list) and expected:
        for i, item in enumerate(actual):
            assert_same_shape(expected[0], item, f"{path}[{i}]")


def assert_props(props: Any, where: str = "props") -> None:
    """A ``*_props`` object: always has ``User-Property`` (an object); with user properties also
    ``User-Property-Pairs``, a list of {key, value} whose last duplicate wins in ``User-Property``."""
    assert isinstance(props, dict), f"{where}: not an object: {props!r}"
    assert isinstance(props.get("User-Property"), dict), f"{where}: no User-Property object: {props!r}"
    pairs = props.get("User-Property-Pairs")
    if pairs is None:
        assert props["User-Property"] == {}, f"{where}: User-Property without User-Property-Pairs: {props!r}"
        return
    assert isinstance(pairs, list) and pairs, f"{where}: User-Property-Pairs: {pairs!r}"
    for p in pairs:
        assert isinstance(p, dict) and set(p) == {"key", "value"}, f"{where}: bad pair {p!r}"
    assert props["User-Property"] == {p["key"]: p["value"] for p in pairs}, f"{where}: {props!r}"


def assert_guid(value: Any, t0_ms: int, t1_ms: int, slack_ms: int = 2000) -> None:
    """32 uppercase hex digits whose first 16 are a microsecond timestamp inside [t0, t1] (+ slack)."""
    assert isinstance(value, str) and len(value) == 32, f"id {value!r}: expected 32 hex chars"
    assert all(c in "0123456789ABCDEF" for c in value), f"id {value!r}: expected uppercase hex"
    us = int(value[:16], 16)
    assert (t0_ms - slack_ms) * 1000 <= us <= (t1_ms + slack_ms) * 1000, (
        f"id {value!r}: first 16 hex digits = {us} us, not within [{t0_ms}, {t1_ms}] ms"
    )


def user_props(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """The ``*_props`` fragment EMQX gives for these MQTT user properties."""
    return {
        "User-Property": {k: v for k, v in pairs},
        "User-Property-Pairs": [{"key": k, "value": v} for k, v in pairs],
    }


def addr(sockname: tuple[Any, ...]) -> str:
    """A socket address as EMQX prints it: ``ip:port``."""
    return f"{sockname[0]}:{sockname[1]}"


# ---------------------------------------------------------------------------- Standard Webhooks
def standard_webhooks_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """``v1,`` + base64 HMAC-SHA256 over ``id.timestamp.body``, keyed by the base64 part of ``whsec_...``
    (https://www.standardwebhooks.com/, "Signature scheme")."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, msg_id.encode() + b"." + timestamp.encode() + b"." + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


__all__ = [
    "NODE",
    "NOT_JSON",
    "WAIT",
    "Receiver",
    "Receivers",
    "Request",
    "addr",
    "assert_guid",
    "assert_props",
    "assert_same_shape",
    "balanced",
    "config_toml",
    "dropped_total",
    "jtype",
    "matches",
    "now_ms",
    "standard_webhooks_signature",
    "start_broker",
    "toml_value",
    "user_props",
    "wait_drained",
    "webhook",
    "webhook_stats",
]
