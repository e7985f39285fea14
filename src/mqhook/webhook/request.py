"""Building, signing, sending and classifying one webhook HTTP request.

- ``RequestBuilder`` renders the URL path, header values and body of a batch (EMQX: templates
  in path, headers and body; GET/DELETE send no body). Deliberate changes from EMQX: a header
  that renders CR, LF or NUL refuses the request (``RenderRefused``) instead of sending it (EMQX
  6.x silently drops the header); a variable rendered into the URL is percent-encoded as ONE
  path segment (``/``, ``?``, ``#``, ``%``, space... encoded; ``.`` or ``..`` alone becomes
  ``%2E`` / ``%2E%2E``) or, after the ``?``, as one query value, so a clientid like
  ``../../etc`` or ``a?b`` can neither leave the configured path nor add a query.
  When URL or header templates have variables, a batch only holds events that render them
  the same way, so no event is sent to another event's URL.
- ``send_once`` makes one attempt over the webhook's ``http.HttpClient`` (``make_client``) and
  never raises for network trouble: it returns an ``Outcome``, whose ``kind`` is one of
  ``counters.OUTCOMES`` (status class, ``timeout``, ``connection_error``). An error after the
  status line arrived keeps the status's kind (and sets ``error``); the reply is kept up to
  ``REPLY_LIMIT`` bytes.
- ``classify``: 2xx success; a status in ``retry_on`` (default 429 and 5xx) or any connection
  error / timeout is retried; every other status fails at once. EMQX retries only 429, 503 and
  transport errors, with no backoff and ignoring ``Retry-After`` (issue #12869).
- ``backoff_delay``: exponential with full jitter, or ``Retry-After`` (on 429/503) capped at
  ``retry_backoff_max``.
"""

from __future__ import annotations

import random
import re
import time
from email.utils import parsedate_to_datetime
from urllib.parse import quote

from mqhook import __version__
from mqhook.errors import MqhookError
from mqhook.webhook.encode import meta_prefix, splice
from mqhook.webhook.http import ConnectError, HttpClient, HttpError, RequestTimeout, Response
from mqhook.webhook.model import WebhookConfig
from mqhook.webhook.queue import Entry
from mqhook.webhook.redact import is_secret_header, url_without_password
from mqhook.webhook.signing import ID_HEADER, new_message_id, sign
from mqhook.webhook.template import Context, Template, Var, compile_template

REPLY_LIMIT = 65536  # bytes of a reply kept (a longer reply is cut and its connection closed, unread)
USER_AGENT = f"mqhook/{__version__}"
SUCCESS, RETRY, FAIL = "success", "retry", "fail"
_STATUS_KINDS = {2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
# The event's own top-level ``timestamp`` (ms). No other key of an event can match: the string
# ``"timestamp":`` cannot occur inside a JSON string, and nested maps (User-Property,
# client_attrs) hold string values, which do not start with a digit. Event Structs encode it
# among their last fields (after the payload), so it is looked for from the end first.
_TIMESTAMP_KEY = b'"timestamp":'
_DIGITS = re.compile(rb"\d+")
_TIMESTAMP = re.compile(rb'"timestamp":(\d+)')


class RenderRefused(MqhookError):
    """A request could not be built safely (a header rendered CR/LF/NUL); it is not sent."""


class Request:
    """One request, built once and sent on each attempt; ``msg_id`` is stable across retries."""

    __slots__ = ("body", "count", "headers", "method", "msg_id", "url")

    def __init__(self, method: str, url: str, headers: dict[str, str], body: bytes | None, count: int) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.count = count
        self.msg_id = new_message_id()


_DOT_SEGMENTS = {".": "%2E", "..": "%2E%2E"}


def path_segment(text: str) -> str:
    """A variable's text as one URL path segment: every byte but ``A-Za-z0-9-._~`` percent-encoded
    (``/``, ``?``, ``#``, ``%``, space...), and ``.``/``..`` (which servers resolve) encoded too."""
    return _DOT_SEGMENTS.get(text) or quote(text, safe="")


def query_value(text: str) -> str:
    """A variable's text as (part of) one query value: ``&``, ``=``, ``+``, ``#``... percent-encoded."""
    return quote(text, safe="")


class UrlTemplate:
    """A webhook's URL template: variables before the ``?`` render as path segments, after it as
    query values (``model`` refuses a ``#`` and variables in the authority)."""

    __slots__ = ("parts", "static")

    def __init__(self, template: Template) -> None:
        self.static = template.static
        self.parts: list[tuple[str | Var, bool]] = []  # (part, in the query)
        in_query = False
        for part in template.parts:
            self.parts.append((part, in_query))
            if isinstance(part, str) and "?" in part:
                in_query = True

    def render(self, ctx: Context) -> str:
        if self.static is not None:
            return self.static
        out: list[str] = []
        for part, in_query in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                out.append((query_value if in_query else path_segment)(part.render(ctx)))
        return "".join(out)


class RequestBuilder:
    """Compiled templates and settings of one webhook; turns entries into a ``Request``."""

    def __init__(self, cfg: WebhookConfig) -> None:
        self.method = cfg.method.upper()
        self.has_body = cfg.method in ("post", "put")
        self.prefix = meta_prefix(cfg.rule_id)
        self.batched = cfg.batch_size > 1
        self.key = cfg.secret_key
        self.url = UrlTemplate(compile_template(cfg.url))
        self.headers: list[tuple[str, Template]] = [(k, compile_template(v)) for k, v in cfg.headers.items()]
        if not any(k.lower() == "user-agent" for k in cfg.headers):
            self.headers.append(("user-agent", compile_template(USER_AGENT)))
        self.body = None if cfg.body is None else compile_template(cfg.body)
        self.varies = self.url.static is None or any(t.static is None for _, t in self.headers)
        # No template reads the events (the usual case): URL and headers are rendered once, on the
        # first request, and the body is joined straight from the queued JSON (``_json_body``).
        self._plain = not self.varies and self.body is None
        self._fixed: tuple[str, dict[str, str]] | None = None
        self._open = b"[" + self.prefix
        self._sep = b"," + self.prefix

    def _target(self, ctx: Context) -> tuple[str, dict[str, str]]:
        headers: dict[str, str] = {}
        for name, tpl in self.headers:
            value = tpl.render(ctx)
            if "\r" in value or "\n" in value or "\0" in value:
                shown = "a value" if is_secret_header(name) else repr(value[:100])
                raise RenderRefused(f"header {name!r} rendered to {shown}, which contains CR, LF or NUL")
            headers[name] = value
        return self.url.render(ctx), headers

    def build(self, entries: list[Entry]) -> Request:
        """A request for the longest head of ``entries`` that shares one URL and header set;
        ``request.count`` says how many. Raises RenderRefused if the first cannot be rendered."""
        if self._plain:
            if self._fixed is None:
                self._fixed = self._target(Context(splice(entries[0][0], self.prefix)))
            url, headers = self._fixed
            body = self._json_body(entries) if self.has_body else None
            return Request(self.method, url, headers, body, len(entries) if self.batched else 1)
        full = [splice(raw, self.prefix) for raw, _ in entries]
        contexts = [Context(full[0])]
        url, headers = self._target(contexts[0])
        n = len(full)
        if self.varies:
            n = 1
            while n < len(full):
                ctx = Context(full[n])
                try:
                    if self._target(ctx) != (url, headers):
                        break
                except RenderRefused:
                    break
                contexts.append(ctx)
                n += 1
        return Request(self.method, url, headers, self._body(full[:n], contexts), n)

    def _json_body(self, entries: list[Entry]) -> bytes:
        """The events with the metadata spliced in after each ``{``, joined in C (every event object
        has members: its ``event`` tag at least). Measured: 0.6x the CPU of splicing each event and
        concatenating the brackets (bench/test_bench_webhook.py ``test_build_request_of_100``)."""
        if not self.batched:
            return splice(entries[0][0], self.prefix)
        tails = [raw[1:] for raw, _ in entries]
        return b"".join((self._open, self._sep.join(tails), b"]"))

    def _body(self, full: list[bytes], contexts: list[Context]) -> bytes | None:
        if not self.has_body:
            return None
        if self.body is None:
            return b"[" + b",".join(full) + b"]" if self.batched else full[0]
        while len(contexts) < len(full):
            contexts.append(Context(full[len(contexts)]))
        if not self.batched:
            return self.body.render(contexts[0]).encode("utf-8")
        return ("[" + ",".join([self.body.render(c) for c in contexts]) + "]").encode("utf-8")

    def attempt_headers(self, req: Request) -> dict[str, str]:
        """Headers for one attempt: ``webhook-id`` always; with a secret, a fresh timestamp and signature."""
        headers = dict(req.headers)
        if self.key is None:
            headers[ID_HEADER] = req.msg_id
        else:
            headers.update(sign(self.key, req.msg_id, int(time.time()), req.body or b""))
        return headers


class Outcome:
    """What one attempt produced: a status and reply, or an error string."""

    __slots__ = ("error", "kind", "latency", "reply", "retry_after", "status")

    def __init__(self) -> None:
        self.status: int | None = None
        self.error: str | None = None
        self.kind = "connection_error"  # one of counters.OUTCOMES
        self.retry_after: str | None = None
        self.reply = b""
        self.latency = 0.0


def make_client(cfg: WebhookConfig) -> HttpClient:
    """The webhook's HTTP client: ``pool_size`` connections, explicit timeouts, replies cut at
    ``REPLY_LIMIT``. TLS settings, once ``WebhookConfig`` has some, go in ``http.tls_context``."""
    return HttpClient(
        cfg.url,
        pool_size=cfg.pool_size,
        connect_timeout=cfg.connect_timeout_s,
        request_timeout=cfg.request_timeout_s,
        reply_limit=REPLY_LIMIT,
    )


async def send_once(client: HttpClient, req: Request, headers: dict[str, str]) -> Outcome:
    """One attempt. Redirects are not followed (EMQX neither). Never raises for I/O trouble."""
    out = Outcome()
    # perf_counter, not loop.time(): uvloop's clock moves in whole milliseconds, once per loop turn.
    start = time.perf_counter()
    resp: Response | None = None
    try:
        resp = await client.request(req.method, req.url, headers, req.body)
        out.reply = resp.body
    except TimeoutError as exc:
        out.error = f"timeout after {time.perf_counter() - start:.3f}s"
        resp = exc.response if isinstance(exc, RequestTimeout) else None
        if resp is None:  # a timeout while reading the reply keeps the status's kind, as classify does
            out.kind = "timeout"
    except ConnectError as exc:
        reason = "connection refused" if isinstance(exc.os_error, ConnectionRefusedError) else exc.os_error
        out.error = f"cannot connect to {exc.host}:{exc.port}: {reason}"
    except (HttpError, OSError, ValueError) as exc:  # the status, if it came, still says what happened
        out.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        resp = exc.response if isinstance(exc, HttpError) else None
    if resp is not None:
        status = out.status = resp.status
        out.kind = _STATUS_KINDS.get(status // 100, "other_status")
        out.retry_after = resp.header("retry-after")
    out.latency = time.perf_counter() - start
    return out


def created_ms(raw: bytes) -> int | None:
    """The ``timestamp`` (ms, when the event was built) of one queued event's JSON; None if absent."""
    i = raw.rfind(_TIMESTAMP_KEY)
    if i < 0:
        return None
    m = _DIGITS.match(raw, i + len(_TIMESTAMP_KEY))
    if m is not None:
        return int(m.group())
    found = _TIMESTAMP.search(raw)  # the last one was a nested string value: take the first number
    return int(found.group(1)) if found else None


def retry_statuses(cfg: WebhookConfig) -> frozenset[int]:
    """``retry_on`` expanded to the set of statuses it names."""
    return frozenset(s for s in range(100, 600) if cfg.retries(s))


def classify(out: Outcome, retry_on: frozenset[int]) -> str:
    if out.status is None:
        return RETRY  # connection error or timeout: always retried
    if 200 <= out.status <= 299:
        return SUCCESS
    return RETRY if out.status in retry_on else FAIL


def describe(req: Request, out: Outcome) -> str:
    """A last_error line: what was sent where (the URL without its query and password), and what came back."""
    path = url_without_password(req.url.split("?", 1)[0])
    if out.status is None:
        return f"{req.method} {path}: {out.error}"
    reply = out.reply[:200].decode("utf-8", "replace")
    return f"{req.method} {path}: HTTP {out.status} {reply!r}"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value: delta-seconds or an HTTP date; None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(attempt: int, base: float, cap: float, out: Outcome | None = None) -> float:
    """Delay before retry number ``attempt + 1``: ``Retry-After`` on 429/503 (capped), else full jitter."""
    if out is not None and out.status in (429, 503):
        after = parse_retry_after(out.retry_after)
        if after is not None:
            return min(after, cap)
    return random.uniform(0.0, min(cap, base * 2.0 ** min(attempt, 60)))
