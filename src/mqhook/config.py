"""The whole configuration as msgspec Structs: TOML file, then MQHOOK_* environment, then flags.

Every struct forbids unknown fields, so a typo is an error that names the path
(``$.mqtt.max_pakcet_size``) rather than a silently ignored setting.
Environment variables follow EMQX's convention: ``MQHOOK_MQTT__MAX_PACKET_SIZE``
(double underscore between levels) sets ``mqtt.max_packet_size``.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from mqhook.broker.settings import MqttConfig
from mqhook.errors import ConfigError
from mqhook.webhook.model import WebhookConfig

ENV_PREFIX = "MQHOOK_"


def _default_node() -> str:
    return "mqhook@" + socket.gethostname()


class AdminConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    bind: str = "127.0.0.1:18083"


class LogConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    node: str = msgspec.field(default_factory=_default_node)
    mqtt: MqttConfig = msgspec.field(default_factory=MqttConfig)
    admin: AdminConfig = msgspec.field(default_factory=AdminConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    # One model for the file, the --webhook flag and (later) the REST API.
    webhooks: list[WebhookConfig] = msgspec.field(default_factory=list)


# (path, low, high) for integer bounds that msgspec's types alone do not express.
_BOUNDS: tuple[tuple[str, float, int], ...] = (
    ("mqtt.max_packet_size", 16, 268435455),
    ("mqtt.receive_maximum", 1, 65535),
    ("mqtt.max_inflight", 1, 65535),
    ("mqtt.max_queued_messages", 0, 10_000_000),
    ("mqtt.max_session_expiry_interval", 0, 0xFFFFFFFF),
    ("mqtt.max_keepalive", 1, 65535),
    ("mqtt.idle_timeout", 0.1, 3600),
    ("mqtt.topic_alias_maximum", 0, 65535),
    ("mqtt.max_qos", 0, 2),
    ("mqtt.max_clientid_len", 23, 65535),
    ("mqtt.write_buffer_high", 1024, 1 << 30),
)


def parse_bind(value: str, path: str) -> tuple[str, int]:
    """'HOST:PORT' or '[v6]:PORT' -> (host, port); a bad value names the field."""
    host, sep, port_s = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ConfigError(f"{path}: {value!r} is not a valid bind address; expected HOST:PORT, e.g. 127.0.0.1:1883")
    return host, int(port_s)


def _get(cfg: Config, dotted: str) -> Any:
    obj: Any = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def validate(cfg: Config) -> Config:
    """Cross-field and range checks; raises ConfigError naming the field, the value and the limit."""
    for dotted, low, high in _BOUNDS:
        value = _get(cfg, dotted)
        if not low <= value <= high:
            raise ConfigError(f"$.{dotted}: {value!r} is out of range; expected an integer from {low} to {high}")
    parse_bind(cfg.mqtt.bind, "$.mqtt.bind")
    parse_bind(cfg.admin.bind, "$.admin.bind")
    if not cfg.node or "@" not in cfg.node:
        raise ConfigError(f"$.node: {cfg.node!r} is invalid; expected NAME@HOST, e.g. mqhook@127.0.0.1")
    seen: dict[str, int] = {}
    for i, hook in enumerate(cfg.webhooks):
        if hook.name in seen:
            raise ConfigError(
                f"$.webhooks[{i}].name: {hook.name!r} is already the name of $.webhooks[{seen[hook.name]}]; "
                "expected unique webhook names"
            )
        seen[hook.name] = i
    return cfg


def _env_tree(environ: Mapping[str, str]) -> dict[str, Any]:
    """MQHOOK_A__B=v -> {"a": {"b": v}}; values are parsed as TOML scalars when they parse."""
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "MQHOOK_PURE_PYTHON" or name == "MQHOOK_NO_EXT":
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _env_value(raw)
    return tree


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def load(
    path: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the config: embedded defaults < TOML file < environment < command-line overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                tree = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"config file {path!r}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path!r}: invalid TOML: {exc}") from exc
    _merge(tree, _env_tree(os.environ if environ is None else environ))
    if overrides:
        _merge(tree, overrides)
    try:
        cfg = msgspec.convert(tree, Config, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc, tree)) from exc
    return validate(cfg)


def _explain(exc: msgspec.ValidationError, tree: dict[str, Any]) -> str:
    """msgspec says 'Expected `int`, got `str` - at `$.mqtt.max_packet_size`'; add the offending value."""
    msg = str(exc)
    reason, sep, where = msg.rpartition(" - at `")
    path = where.rstrip("`") if sep else "$"
    if not sep:
        reason = msg
    field = re.match(r"([a-z_]+): ", reason)
    if field:  # a check in a struct's __post_init__ names its own field first
        path, reason = f"{path}.{field.group(1)}", reason[field.end() :]
        return f"{path}: {reason}"
    if reason.startswith("Object contains unknown field"):
        name = reason.split("`")[1]
        known = ", ".join(_fields_at(path))
        return f"{path}.{name}: unknown setting; expected one of: {known}"
    value: Any = tree
    for key in _path_keys(path):
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return f"{path}: {reason}"
    return f"{path}: {value!r} is invalid: {reason}"


def _path_keys(path: str) -> list[str | int]:
    """'$.webhooks[0].url' -> ['webhooks', 0, 'url']."""
    return [name or int(index) for name, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path)]


def _fields_at(path: str) -> tuple[str, ...]:
    struct: Any = Config
    for key in _path_keys(path):
        if isinstance(key, int):
            continue  # list element: the struct was already unwrapped below
        field = next((f for f in msgspec.structs.fields(struct) if f.name == key), None)
        if field is None:
            return ()
        struct = field.type
        args = getattr(struct, "__args__", ())
        if args and isinstance(args[0], type) and issubclass(args[0], msgspec.Struct):
            struct = args[0]  # list[SomeStruct]
    return tuple(f.name for f in msgspec.structs.fields(struct))
