"""The whole configuration as msgspec Structs: TOML file, then MQHOOK_* environment, then flags.

Every struct forbids unknown fields, so a typo in the file is an error that names the path
(``$.mqtt.max_pakcet_size``) rather than a silently ignored setting. Bounds and choices are
msgspec types; ``mqhook.schema.explain`` words every error as ``PATH: VALUE is invalid; expected
...``. Environment variables follow EMQX's convention: ``MQHOOK_MQTT__MAX_PACKET_SIZE`` (double
underscore between levels) sets ``mqtt.max_packet_size``. An ``MQHOOK_*`` variable that names no
setting (a wrapper's ``MQHOOK_BIN``, say) is reported through ``load``'s ``warn`` and ignored;
one that names a setting with a bad value is an error, like a bad value in the file.
"""

from __future__ import annotations

import functools
import os
import socket
import tomllib
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Literal

import msgspec
import msgspec.inspect as mi

from mqhook.broker.settings import MqttConfig
from mqhook.errors import ConfigError
from mqhook.schema import Duration, convert, explain
from mqhook.webhook.model import WebhookConfig

ENV_PREFIX = "MQHOOK_"
# Switches read elsewhere (mqhook.native, the build), not settings: skipped without a word.
ENV_SWITCHES = frozenset({"MQHOOK_PURE_PYTHON", "MQHOOK_NO_EXT", "MQHOOK_REQUIRE_NATIVE"})


class ConfigWarning(UserWarning):
    """Something in the configuration was ignored; start-up goes on."""


def _default_node() -> str:
    return "mqhook@" + socket.gethostname()


class TokenExpiry(Duration, ge="1m", le="720h"):
    """``admin.token_expiry``: from a minute to 30 days."""

    __slots__ = ()


class AdminConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    bind: str = "127.0.0.1:18083"
    # The password of the first administrator, ``admin``, used only when the data directory has no
    # administrator yet; unset (or empty): a random one is made and printed once on stderr.
    default_password: str | None = None
    token_expiry: TokenExpiry = TokenExpiry("1h")  # bearer tokens from POST /api/v1/login
    metrics_auth: bool = False  # true: GET /metrics needs credentials like the API
    dashboard: bool = True  # serve the dashboard at /


class LogConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    node: str = msgspec.field(default_factory=_default_node)
    # Administrators, API keys and webhooks made over the API (mqhook.admin.store).
    data_dir: str = "./data"
    mqtt: MqttConfig = msgspec.field(default_factory=MqttConfig)
    admin: AdminConfig = msgspec.field(default_factory=AdminConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    # One model for the file, the --webhook flag and (later) the REST API.
    webhooks: list[WebhookConfig] = msgspec.field(default_factory=list)


def parse_bind(value: str, path: str) -> tuple[str, int]:
    """'HOST:PORT' or '[v6]:PORT' -> (host, port); a bad value names the field."""
    host, sep, port_s = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ConfigError(f"{path}: {value!r} is not a valid bind address; expected HOST:PORT, e.g. 127.0.0.1:1883")
    return host, int(port_s)


def validate(cfg: Config) -> Config:
    """The checks msgspec's types cannot express: addresses, the node name and cross-field rules
    (unique webhook names); raises ConfigError naming the field(s), the value and what was expected."""
    parse_bind(cfg.mqtt.bind, "$.mqtt.bind")
    parse_bind(cfg.admin.bind, "$.admin.bind")
    if not cfg.data_dir:
        raise ConfigError("$.data_dir: '' is invalid; expected a directory path, e.g. ./data")
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


def _env_tree(environ: Mapping[str, str], warn: Callable[[str], None]) -> dict[str, Any]:
    """MQHOOK_A__B=v -> {"a": {"b": v}}; values are parsed as TOML scalars when they parse.
    A variable that names no setting goes to ``warn`` and is left out."""
    tree: dict[str, Any] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in ENV_SWITCHES:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        problem = _not_a_setting(tuple(parts))
        if problem:
            warn(f"environment variable {name} ignored: {problem}")
            continue
        node = tree
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = _env_value(environ[name])
    return tree


@functools.cache
def _not_a_setting(parts: tuple[str, ...]) -> str:
    """Why ``parts`` (['mqtt', 'max_packet_size']) leads to no setting of Config; '' when it does."""
    tp: mi.Type = mi.type_info(Config)
    where = "$"
    for part in parts:
        if not isinstance(tp, mi.StructType):
            return f"{where} has no settings under it"
        field = next((f for f in tp.fields if f.name == part), None)
        if field is None:
            known = ", ".join(f.name for f in tp.fields)
            return f"{where}.{part} is not a setting; expected one of: {known}"
        tp, where = field.type, f"{where}.{part}"
    return ""


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


def _warn(message: str) -> None:
    warnings.warn(message, ConfigWarning, stacklevel=4)


def load(
    path: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    warn: Callable[[str], None] = _warn,
) -> Config:
    """Build the config: embedded defaults < TOML file < environment < command-line overrides.

    What is ignored (an ``MQHOOK_*`` variable that names no setting) is passed to ``warn``, by
    default a ``ConfigWarning``; the CLI prints it before starting.
    """
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                tree = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"config file {path!r}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path!r}: invalid TOML: {exc}") from exc
    _merge(tree, _env_tree(os.environ if environ is None else environ, warn))
    if overrides:
        _merge(tree, overrides)
    try:
        cfg = convert(tree, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(explain(exc, tree, Config)) from exc
    return validate(cfg)
