"""The webhook configuration model: one msgspec Struct for the config file and the REST API.

Field names and defaults follow EMQX 5.8's HTTP connector + action (``pool_size`` 8,
``connect_timeout`` 15s, ``inflight_window`` 100, ``max_buffer_bytes`` 256MB, drop-oldest
overflow, ``max_retries`` 2, the one ``content-type: application/json`` header the Dashboard
pre-fills). What EMQX lacks is added with new names: ``batch_size``/``batch_time`` (EMQX removed
batching for HTTP), ``retry_on``/``retry_backoff*`` (EMQX retries only 429/503/transport errors
with no backoff and ignores ``Retry-After``), ``overflow``, ``ordering``, ``secret`` and
``payload_encoding``.

Bounds and closed choices are msgspec types (``Annotated[int, Meta(...)]``, ``Literal``, the
``Method`` enum, the bounded ``Duration``/``ByteSize`` of ``mqhook.schema``); what types cannot
say (names, URLs and the characters they hold, templates and their variables, which must be fields
of the selected events (``variables``), topic filters, ``retry_on``, ``retry_backoff_max >=
retry_backoff``) is checked in ``__post_init__``. So every way of building the Struct (TOML via
``parse_webhook``, JSON from the REST API via ``mqhook.schema.decode_json``) is checked the same way, and
``mqhook.schema.explain`` names the field path, the value and what was expected, e.g.
``$.webhooks[0].overflow: 'drop' is invalid; expected one of drop_oldest, drop_new, backpressure``.
No error shows a secret: ``explain_value`` (called by ``explain``) and the checks here print the
URL without its password and ``secret`` or a secret header's value as '<redacted>' (``redact``).
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from mqhook.errors import ConfigError, ProtocolError
from mqhook.events.catalogue import EVENT_NAMES
from mqhook.mqtt.topics import validate_topic_filter
from mqhook.schema import ByteSize, Duration, FieldInvalid, convert, explain
from mqhook.schema import parse_duration as parse_duration
from mqhook.schema import parse_size as parse_size
from mqhook.webhook import variables
from mqhook.webhook.redact import HIDDEN, config_value, password_span
from mqhook.webhook.template import Template, TemplateError, compile_template

NAME_RE = re.compile(r"^[0-9a-zA-Z][-0-9a-zA-Z_]*$")  # EMQX resource-name rule
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
_STATUS_CLASS_RE = re.compile(r"^[1-5]xx$")
# What a URL may not hold as written (RFC 3986): controls, space, '"<>\\^`{|}', and outside
# ASCII any space or unprintable character (other non-ASCII text is sent percent-encoded, as IRIs).
_URL_BAD_ASCII = re.compile(r'[\x00-\x20\x7f"<>\\^`{|}]')
_URL_BAD_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_VAR_RE = re.compile(r"\$\$\{|\$\{([^{}]*)\}")  # as the template parser reads them
SECRET_PREFIX = "whsec_"


class Method(enum.StrEnum):
    """The HTTP method, written in any case ('POST' -> Method.POST == 'post').

    An enum rather than a ``Literal`` because msgspec calls ``_missing_`` for a value it does not
    know, in every decode path (TOML tree, REST JSON), so the case is folded there and only there.
    """

    POST = "post"
    PUT = "put"
    GET = "get"
    DELETE = "delete"

    @classmethod
    def _missing_(cls, value: object) -> Method | None:
        return cls.__members__.get(value.upper()) if isinstance(value, str) else None


PayloadEncoding = Literal["plain", "base64"]
Overflow = Literal["drop_oldest", "drop_new", "backpressure"]
Ordering = Literal["none", "per_client"]
Fsync = Literal["interval", "always", "never"]


class Timeout(Duration, gt=0):
    """A duration > 0: ``connect_timeout``, ``request_timeout``."""

    __slots__ = ()


class Linger(Duration, le="1h"):
    """``batch_time``: at most an hour."""

    __slots__ = ()


class BufferSize(ByteSize, ge="1KB"):
    """``max_buffer_bytes``: at least 1 KB."""

    __slots__ = ()


def secret_key(secret: str) -> bytes:
    """The HMAC key: 'whsec_<base64>' is base64-decoded (Standard Webhooks); any other string is its UTF-8."""
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    return secret.encode("utf-8")


def _default_headers() -> dict[str, str]:
    return {"content-type": "application/json"}


def _default_topics() -> list[str]:
    return ["#"]


def _default_retry_on() -> list[int | str]:
    return [429, "5xx"]


class WebhookConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One webhook. Durations and sizes are parsed once, when the Struct is decoded, and keep
    what was written ('15s' is encoded back as "15s"): decode and encode with ``mqhook.schema``'s
    ``convert``/``decode_json``/``encode_json`` (or its ``dec_hook``/``enc_hook``)."""

    name: str
    url: str
    description: str = ""
    enable: bool = True
    events: list[str] | str = "all"
    topics: list[str] = msgspec.field(default_factory=_default_topics)
    method: Method = Method.POST
    headers: dict[str, str] = msgspec.field(default_factory=_default_headers)
    body: str | None = None
    payload_encoding: PayloadEncoding = "plain"
    pool_size: Annotated[int, Meta(ge=1, le=1024)] = 8
    connect_timeout: Timeout = Timeout("15s")
    request_timeout: Timeout = Timeout("15s")
    max_retries: Annotated[int, Meta(ge=0, le=1000)] = 2
    retry_backoff: Duration = Duration("1s")
    retry_backoff_max: Duration = Duration("30s")
    retry_on: list[int | str] = msgspec.field(default_factory=_default_retry_on)
    inflight_window: Annotated[int, Meta(ge=1, le=100_000)] = 100
    batch_size: Annotated[int, Meta(ge=1, le=100_000)] = 1
    batch_time: Linger = Linger("0ms")
    max_queued_events: Annotated[int, Meta(ge=1, le=1_000_000_000)] = 100000
    max_buffer_bytes: BufferSize = BufferSize("256MB")
    overflow: Overflow = "drop_oldest"
    ordering: Ordering = "none"
    secret: str | None = None
    # Durability (README "Reliability"): the spool on disk, its group commit, how long an event is
    # retried, and the dead letters.
    durable: bool = False
    fsync: Fsync = "interval"
    fsync_interval: Timeout = Timeout("10ms")
    max_event_age: Timeout = Timeout("24h")
    max_spool_bytes: BufferSize = BufferSize("256MB")
    dead_letter: bool = False
    max_dead_letter_bytes: BufferSize = BufferSize("64MB")

    def __post_init__(self) -> None:
        _check_identity(self)
        _check_request(self)
        _check_retries(self)

    @classmethod
    def explain_value(cls, field: str, value: Any) -> Any:
        """What a config error about ``field`` may print of ``value`` (``mqhook.schema.explain``):
        secrets as '<redacted>', the URL without its password."""
        return config_value(field, value)

    # -- resolved values (read from the values parsed at decode time) ---------------------
    @property
    def rule_id(self) -> str:
        """EMQX names the Dashboard webhook's rule ``<name>_WH_D``; receivers key on it."""
        return f"{self.name}_WH_D"

    @property
    def event_set(self) -> frozenset[str]:
        return frozenset(EVENT_NAMES) if self.events == "all" else frozenset(self.events)

    @property
    def connect_timeout_s(self) -> float:
        return self.connect_timeout.seconds

    @property
    def request_timeout_s(self) -> float:
        return self.request_timeout.seconds

    @property
    def retry_backoff_s(self) -> float:
        return self.retry_backoff.seconds

    @property
    def retry_backoff_max_s(self) -> float:
        return self.retry_backoff_max.seconds

    @property
    def batch_time_s(self) -> float:
        return self.batch_time.seconds

    @property
    def max_buffer_bytes_n(self) -> int:
        return self.max_buffer_bytes.bytes

    @property
    def max_spool_bytes_n(self) -> int:
        return self.max_spool_bytes.bytes

    @property
    def max_dead_letter_bytes_n(self) -> int:
        return self.max_dead_letter_bytes.bytes

    @property
    def secret_key(self) -> bytes | None:
        return None if self.secret is None else secret_key(self.secret)

    def retries(self, status: int) -> bool:
        """True when ``status`` is listed in ``retry_on`` (exactly or by its class, e.g. '5xx')."""
        klass = str(status // 100)
        return any(item == status or (isinstance(item, str) and item[0] == klass) for item in self.retry_on)


def _check_identity(cfg: WebhookConfig) -> None:
    if not NAME_RE.match(cfg.name) or len(cfg.name.encode("utf-8")) >= 255:
        expected = "letters, digits, '-' and '_', starting with a letter or digit, < 255 bytes"
        raise FieldInvalid("name", cfg.name, expected)
    if cfg.events != "all":
        if isinstance(cfg.events, str) or not cfg.events:
            raise FieldInvalid("events", cfg.events, '"all" or a non-empty list of EMQX event names')
        for i, event in enumerate(cfg.events):
            if event not in EVENT_NAMES:
                raise FieldInvalid(f"events[{i}]", event, "one of " + ", ".join(EVENT_NAMES))
    if not cfg.topics:
        raise FieldInvalid("topics", cfg.topics, 'a non-empty list of topic filters, e.g. ["#"]')
    for i, topic_filter in enumerate(cfg.topics):
        try:
            validate_topic_filter(topic_filter)
        except ProtocolError as exc:
            raise FieldInvalid(f"topics[{i}]", topic_filter, f"a valid MQTT topic filter ({exc})") from None


def _invalid(field: str, value: Any, expected: str) -> FieldInvalid:
    """A FieldInvalid whose value is already shown as errors may show it (secrets hidden), so that
    no message made from it (msgspec's, a log line's) can carry a secret."""
    return FieldInvalid(field, config_value(field, value), expected)


def _check_request(cfg: WebhookConfig) -> None:
    events = cfg.event_set
    _check_url(cfg.url, events)
    for name, value in cfg.headers.items():
        if not HEADER_NAME_RE.match(name):
            raise FieldInvalid(f"headers.{name}", name, "a header name made of RFC 9110 token characters")
        if "\r" in value or "\n" in value or "\0" in value:
            raise _invalid(f"headers.{name}", value, "a value without CR, LF or NUL")
        _check_template(f"headers.{name}", value, events)
    if cfg.body is not None:
        _check_template("body", cfg.body, events)
    if cfg.secret is not None:
        try:
            key = secret_key(cfg.secret)
        except (binascii.Error, ValueError):
            key = b""
        if not key:
            raise FieldInvalid("secret", HIDDEN, "'whsec_' + base64 of the key bytes, or any non-empty string")


def _check_url(url: str, events: frozenset[str]) -> None:
    expected = "http:// or https:// URL with a host; ${var} templates only in the path and query"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise _invalid("url", url, expected) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or "${" in parts.netloc:
        raise _invalid("url", url, expected)
    if parts.fragment or "#" in url:
        raise _invalid("url", url, "a URL without a #fragment")
    _check_template("url", url, events)
    _check_url_chars(url)


def _check_url_chars(url: str) -> None:
    """Refuse a character a URL may not hold as written; ``${var}``s are not looked into (what
    they render is percent-encoded), a ``$${`` is (it renders a literal '${')."""
    text = _VAR_RE.sub(lambda m: m.group() if m.group(1) is None else "x" * len(m.group()), url)
    authority_end = text.find("/", text.index("//") + 2)
    bad = _URL_BAD_ASCII.search(text) or _URL_BAD_PCT.search(text)
    if bad is not None:
        index, char = bad.start(), bad.group()
    else:
        found = next(
            (
                (i, c)
                for i, c in enumerate(text)
                if (c in "[]" and 0 <= authority_end <= i) or (not c.isascii() and (c.isspace() or not c.isprintable()))
            ),
            None,
        )
        if found is None:
            return
        index, char = found
    span = password_span(url)
    if span is not None and span[0] <= index < span[1]:  # say nothing of the password's characters
        raise _invalid(
            "url", url, "only characters a URL may hold; the password has one that is not (percent-encode it)"
        )
    if char == "%":
        what = f"the '%' at character {index + 1} is not followed by two hex digits"
    else:
        encoded = "".join(f"%{b:02X}" for b in char.encode())
        what = f"{char!r} at character {index + 1} is not one (percent-encode it: {encoded})"
    raise _invalid("url", url, f"only characters a URL may hold; {what}")


def _check_template(field: str, text: str, events: frozenset[str]) -> Template:
    """Compile ``text``; refuse a variable that none of ``events`` has, naming it."""
    try:
        template = compile_template(text)
    except TemplateError as exc:
        raise _invalid(field, text, f"a valid template ({exc})") from None
    for var in template.variables:
        if not variables.known(var.path, events):
            fields = ", ".join(variables.fields_of(events))
            which = "any of the selected events" if len(events) > 1 else next(iter(events))
            name = "${" + ".".join(var.path) + "}"
            expected = f"variables the events have; {name} is not a field of {which} (fields: {fields})"
            raise _invalid(field, text, expected)
    return template


def _check_retries(cfg: WebhookConfig) -> None:
    if cfg.retry_backoff_max.seconds < cfg.retry_backoff.seconds:
        expected = f"a duration of at least retry_backoff ({cfg.retry_backoff.written!r})"
        raise FieldInvalid("retry_backoff_max", cfg.retry_backoff_max.written, expected)
    for i, item in enumerate(cfg.retry_on):
        ok = (isinstance(item, int) and 100 <= item <= 599) or (isinstance(item, str) and _STATUS_CLASS_RE.match(item))
        if not ok or item == "2xx" or (isinstance(item, int) and 200 <= item <= 299):
            raise FieldInvalid(f"retry_on[{i}]", item, "an HTTP status (e.g. 429) or a class (e.g. '5xx'), not 2xx")


def parse_webhook(obj: Any, path: str = "$") -> WebhookConfig:
    """Build and validate one webhook from a TOML/JSON object; errors name ``path`` + the field."""
    try:
        return convert(obj, WebhookConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(explain(exc, obj, WebhookConfig, path)) from None


def webhook_from_flag(flag: str) -> WebhookConfig:
    """``--webhook NAME=URL``: every event, every topic, all other settings default."""
    name, sep, url = flag.partition("=")
    if not sep:
        raise ConfigError(f"--webhook {flag!r}: expected NAME=URL, e.g. my-hook=http://127.0.0.1:5000/")
    return parse_webhook({"name": name.strip(), "url": url.strip()}, path="--webhook")
