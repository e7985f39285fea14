"""The webhook configuration model: one msgspec Struct for the config file and the REST API.

Field names and defaults follow EMQX 5.8's HTTP connector + action (``pool_size`` 8,
``connect_timeout`` 15s, ``inflight_window`` 100, ``max_buffer_bytes`` 256MB, drop-oldest
overflow, ``max_retries`` 2, the one ``content-type: application/json`` header the Dashboard
pre-fills). What EMQX lacks is added with new names: ``batch_size``/``batch_time`` (EMQX removed
batching for HTTP), ``retry_on``/``retry_backoff*`` (EMQX retries only 429/503/transport errors
with no backoff and ignores ``Retry-After``), ``overflow``, ``ordering``, ``secret`` and
``payload_encoding``.

Validation runs in ``__post_init__`` so every way of building the Struct (TOML via
``parse_webhook``, JSON from the REST API via ``msgspec.json.decode``) is checked the same way.
``parse_webhook`` turns msgspec's errors into ``ConfigError`` naming the field path, the value
and what was expected, e.g. ``$.webhooks[0].overflow: 'drop' is invalid; expected one of ...``.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any
from urllib.parse import urlsplit

import msgspec

from mqhook.errors import ConfigError, ProtocolError
from mqhook.hooks import ALL_EVENTS
from mqhook.mqtt.topics import validate_topic_filter
from mqhook.webhook.template import compile_template

NAME_RE = re.compile(r"^[0-9a-zA-Z][-0-9a-zA-Z_]*$")  # EMQX resource-name rule
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$", re.IGNORECASE)
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(b|kb|mb|gb)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}  # EMQX bytesize is binary
_STATUS_CLASS_RE = re.compile(r"^[1-5]xx$")

METHODS = ("post", "put", "get", "delete")
PAYLOAD_ENCODINGS = ("plain", "base64")
OVERFLOWS = ("drop_oldest", "drop_new", "backpressure")
ORDERINGS = ("none", "per_client")
SECRET_PREFIX = "whsec_"

Duration = int | float | str
Size = int | str


class FieldInvalid(ValueError):
    """One field is wrong. ``msgspec`` wraps it in a ValidationError with the Struct's location."""

    def __init__(self, field: str, value: Any, expected: str) -> None:
        super().__init__(f"{field}: {value!r} is invalid; expected {expected}")


def parse_duration(value: Duration, field: str = "duration") -> float:
    """'15s', '500ms', '2m', '1h' or a number of seconds -> seconds (float, >= 0)."""
    if isinstance(value, bool):
        raise FieldInvalid(field, value, "a duration such as '15s', '500ms', '2m', '1h' or a number of seconds")
    if isinstance(value, int | float):
        if value >= 0:
            return float(value)
    elif m := _DURATION_RE.match(value):
        return float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
    raise FieldInvalid(field, value, "a duration such as '15s', '500ms', '2m', '1h' or a number of seconds >= 0")


def parse_size(value: Size, field: str = "size") -> int:
    """'256MB', '64KB', '1GB', '512B' (1 KB = 1024 bytes, as in EMQX) or an int -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value >= 0:
            return value
    elif isinstance(value, str) and (m := _SIZE_RE.match(value)):
        return int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()]
    raise FieldInvalid(field, value, "a byte size such as '256MB', '64KB' or an integer number of bytes >= 0")


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
    """One webhook. ``method`` is stored lower-case; everything else is kept as written."""

    name: str
    url: str
    description: str = ""
    enable: bool = True
    events: list[str] | str = "all"
    topics: list[str] = msgspec.field(default_factory=_default_topics)
    method: str = "post"
    headers: dict[str, str] = msgspec.field(default_factory=_default_headers)
    body: str | None = None
    payload_encoding: str = "plain"
    pool_size: int = 8
    connect_timeout: Duration = "15s"
    request_timeout: Duration = "15s"
    max_retries: int = 2
    retry_backoff: Duration = "1s"
    retry_backoff_max: Duration = "30s"
    retry_on: list[int | str] = msgspec.field(default_factory=_default_retry_on)
    inflight_window: int = 100
    batch_size: int = 1
    batch_time: Duration = "0ms"
    max_queued_events: int = 100000
    max_buffer_bytes: Size = "256MB"
    overflow: str = "drop_oldest"
    ordering: str = "none"
    secret: str | None = None

    def __post_init__(self) -> None:
        self.method = self.method.lower() if isinstance(self.method, str) else self.method
        _check_identity(self)
        _check_request(self)
        _check_numbers(self)
        _check_choices(self)

    # -- resolved values (parsed again on each call: read them once, at start) -------------
    @property
    def rule_id(self) -> str:
        """EMQX names the Dashboard webhook's rule ``<name>_WH_D``; receivers key on it."""
        return f"{self.name}_WH_D"

    @property
    def event_set(self) -> frozenset[str]:
        return frozenset(ALL_EVENTS) if self.events == "all" else frozenset(self.events)

    @property
    def connect_timeout_s(self) -> float:
        return parse_duration(self.connect_timeout)

    @property
    def request_timeout_s(self) -> float:
        return parse_duration(self.request_timeout)

    @property
    def retry_backoff_s(self) -> float:
        return parse_duration(self.retry_backoff)

    @property
    def retry_backoff_max_s(self) -> float:
        return parse_duration(self.retry_backoff_max)

    @property
    def batch_time_s(self) -> float:
        return parse_duration(self.batch_time)

    @property
    def max_buffer_bytes_n(self) -> int:
        return parse_size(self.max_buffer_bytes)

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
            if event not in ALL_EVENTS:
                raise FieldInvalid(f"events[{i}]", event, "one of " + ", ".join(ALL_EVENTS))
    if not cfg.topics:
        raise FieldInvalid("topics", cfg.topics, 'a non-empty list of topic filters, e.g. ["#"]')
    for i, topic_filter in enumerate(cfg.topics):
        try:
            validate_topic_filter(topic_filter)
        except ProtocolError as exc:
            raise FieldInvalid(f"topics[{i}]", topic_filter, f"a valid MQTT topic filter ({exc})") from None


def _check_request(cfg: WebhookConfig) -> None:
    if cfg.method not in METHODS:
        raise FieldInvalid("method", cfg.method, "one of " + ", ".join(METHODS) + " (any case)")
    _check_url(cfg.url)
    for name, value in cfg.headers.items():
        if not HEADER_NAME_RE.match(name):
            raise FieldInvalid(f"headers.{name}", name, "a header name made of RFC 9110 token characters")
        if "\r" in value or "\n" in value or "\0" in value:
            raise FieldInvalid(f"headers.{name}", value, "a value without CR, LF or NUL")
        _check_template(f"headers.{name}", value)
    if cfg.body is not None:
        _check_template("body", cfg.body)
    if cfg.secret is not None:
        try:
            key = secret_key(cfg.secret)
        except (binascii.Error, ValueError):
            key = b""
        if not key:
            raise FieldInvalid("secret", "<redacted>", "'whsec_' + base64 of the key bytes, or any non-empty string")


def _check_url(url: str) -> None:
    expected = "http:// or https:// URL with a host; ${var} templates only in the path"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise FieldInvalid("url", url, expected) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or "${" in parts.netloc:
        raise FieldInvalid("url", url, expected)
    if parts.fragment:
        raise FieldInvalid("url", url, "a URL without a #fragment")
    _check_template("url", url)


def _check_template(field: str, text: str) -> None:
    try:
        compile_template(text)
    except ValueError as exc:
        raise FieldInvalid(field, text, f"a valid template ({exc})") from None


# (field, low, high) for integers.
_INT_BOUNDS = (
    ("pool_size", 1, 1024),
    ("max_retries", 0, 1000),
    ("inflight_window", 1, 100_000),
    ("batch_size", 1, 100_000),
    ("max_queued_events", 1, 1_000_000_000),
)


def _check_numbers(cfg: WebhookConfig) -> None:
    for field, low, high in _INT_BOUNDS:
        value = getattr(cfg, field)
        if not low <= value <= high:
            raise FieldInvalid(field, value, f"an integer from {low} to {high}")
    for field in ("connect_timeout", "request_timeout"):
        if parse_duration(getattr(cfg, field), field) <= 0:
            raise FieldInvalid(field, getattr(cfg, field), "a duration > 0")
    backoff = parse_duration(cfg.retry_backoff, "retry_backoff")
    if parse_duration(cfg.retry_backoff_max, "retry_backoff_max") < backoff:
        expected = f"a duration of at least retry_backoff ({cfg.retry_backoff!r})"
        raise FieldInvalid("retry_backoff_max", cfg.retry_backoff_max, expected)
    if parse_duration(cfg.batch_time, "batch_time") > 3600:
        raise FieldInvalid("batch_time", cfg.batch_time, "a duration of at most 1h")
    if parse_size(cfg.max_buffer_bytes, "max_buffer_bytes") < 1024:
        raise FieldInvalid("max_buffer_bytes", cfg.max_buffer_bytes, "at least 1KB")


def _check_choices(cfg: WebhookConfig) -> None:
    for field, choices in (("payload_encoding", PAYLOAD_ENCODINGS), ("overflow", OVERFLOWS), ("ordering", ORDERINGS)):
        if getattr(cfg, field) not in choices:
            raise FieldInvalid(field, getattr(cfg, field), "one of " + ", ".join(choices))
    for i, item in enumerate(cfg.retry_on):
        ok = (isinstance(item, int) and 100 <= item <= 599) or (isinstance(item, str) and _STATUS_CLASS_RE.match(item))
        if not ok or item == "2xx" or (isinstance(item, int) and 200 <= item <= 299):
            raise FieldInvalid(f"retry_on[{i}]", item, "an HTTP status (e.g. 429) or a class (e.g. '5xx'), not 2xx")


def parse_webhook(obj: Any, path: str = "$") -> WebhookConfig:
    """Build and validate one webhook from a TOML/JSON object; errors name ``path`` + the field."""
    try:
        return msgspec.convert(obj, WebhookConfig, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(str(exc), obj, path)) from None


def _explain(msg: str, obj: Any, path: str) -> str:
    reason, sep, where = msg.rpartition(" - at `")
    sub = where.rstrip("`")[1:] if sep else ""
    if not sep:
        reason = msg
    if reason.startswith("Object contains unknown field"):
        field = reason.split("`")[1]
        known = ", ".join(f.name for f in msgspec.structs.fields(WebhookConfig))
        return f"{path}{sub}.{field}: unknown setting; expected one of: {known}"
    if reason.startswith("Object missing required field"):
        field = reason.split("`")[1]
        return f"{path}{sub}.{field}: missing; this setting is required"
    if not sub:  # raised by __post_init__: the message starts with the field name
        return f"{path}.{reason}"
    value: Any = obj
    for part in re.findall(r"\.([^.\[]+)|\[(\d+)\]", sub):
        key: Any = part[0] or int(part[1])
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return f"{path}{sub}: {reason}"
    return f"{path}{sub}: {value!r} is invalid: {reason}"


def webhook_from_flag(flag: str) -> WebhookConfig:
    """``--webhook NAME=URL``: every event, every topic, all other settings default."""
    name, sep, url = flag.partition("=")
    if not sep:
        raise ConfigError(f"--webhook {flag!r}: expected NAME=URL, e.g. my-hook=http://127.0.0.1:5000/")
    return parse_webhook({"name": name.strip(), "url": url.strip()}, path="--webhook")
