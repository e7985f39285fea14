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
import ipaddress
import os
import re
import socket
import tomllib
import warnings
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import msgspec
import msgspec.inspect as mi
from msgspec import Meta

from mqhook.access.settings import AuthnConfig, AuthzConfig
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


class ClusterConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[cluster]`` (step 1 of issue 14): route messages between mqhook nodes through NATS."""

    # e.g. "nats://127.0.0.1:4222"; several servers of one NATS cluster comma-separated,
    # "nats://10.0.0.1:4222,nats://10.0.0.2:4222" (any one first; the rest are learnt from the server);
    # unset: not clustered, nothing changes
    nats_url: str | None = None
    node: str | None = None  # this node's name in the cluster; unset: $.node
    # Copies JetStream keeps of the cluster's key-value buckets (session owners, retained messages):
    # 1 for one nats-server (--workers), 3 for a cluster of three servers (a bucket survives one loss).
    replicas: Annotated[int, Meta(ge=1, le=5)] = 1
    # A node that has not refreshed its heartbeat (every second) for this long is dead: the others
    # drop its session ownerships and publish its clients' wills (mqhook.cluster.sessions). At least
    # 2s; a node frozen or cut off for longer than this loses its clients to the others.
    node_timeout: Duration = Duration("3s")


# -- listeners ----------------------------------------------------------------------------------
# ``[[listeners]]``: MQTT listeners beside ``mqtt.bind`` (the default plain TCP listener, named
# "default", off when set to ""). ``mqhook.server.listeners`` runs them; ``mqhook.server.tls``
# builds their TLS contexts (TLS 1.2 at least) and names the field of a key or certificate that
# does not load.

LISTENER_TYPES = ("tcp", "tls", "ws", "wss")
DEFAULT_LISTENER = "default"  # the name of the listener of mqtt.bind
DEFAULT_WS_PATH = "/mqtt"
_LISTENER_NAME = re.compile(r"[0-9A-Za-z][-0-9A-Za-z_:.]*")
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "*"})


class ListenerConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    type: Literal["tcp", "tls", "ws", "wss"]
    bind: str
    name: str = ""  # unset: TYPE:PORT, e.g. "wss:8084"
    # Sockets open on this listener at once; a CONNECT beyond is refused (CONNACK 0x97, 3 in 3.1.1).
    # 0: no limit of its own (mqtt.max_connections, for all listeners together, still applies).
    max_connections: Annotated[int, Meta(ge=0, le=100_000_000)] = 0
    # tls and wss only
    certfile: str | None = None  # PEM: the server certificate, then any intermediates
    keyfile: str | None = None  # PEM, unencrypted
    cacertfile: str | None = None  # PEM: the CAs client certificates are checked against
    verify: Literal["verify_none", "verify_peer"] = "verify_none"
    fail_if_no_peer_cert: bool = False  # verify_peer only: refuse a client without a certificate
    # verify_peer only: the client certificate's subject CN (or whole DN) is the user name, and a
    # verified certificate authenticates the client (no password is asked)
    peer_cert_as_username: Literal["cn", "dn"] | None = None
    # ws and wss only: the HTTP path of the WebSocket upgrade (default /mqtt)
    path: str | None = None

    @property
    def ws_path(self) -> str:
        return DEFAULT_WS_PATH if self.path is None else self.path

    @property
    def is_tls(self) -> bool:
        return self.type in ("tls", "wss")


def listener_name(listener: ListenerConfig) -> str:
    """The name it was given, else TYPE:PORT."""
    return listener.name or f"{listener.type}:{parse_bind(listener.bind, 'bind')[1]}"


def _check_pem(path: str, value: str | None, what: str) -> None:
    """A readable file holding a PEM block (the TLS library reports what is wrong inside it)."""
    if not value:
        raise ConfigError(f"{path}: {value!r} is invalid; expected a readable PEM file ({what})")
    try:
        with open(value, "rb") as f:
            head = f.read(1 << 20)
    except OSError as exc:
        raise ConfigError(f"{path}: {value!r} is invalid; expected a readable PEM file ({exc.strerror})") from exc
    if b"-----BEGIN " not in head:
        raise ConfigError(f"{path}: {value!r} is invalid; expected a readable PEM file (no '-----BEGIN' line in it)")


def _binds_overlap(a: tuple[str, int], b: tuple[str, int]) -> bool:
    """Two listening addresses that cannot both be bound (port 0 never collides)."""
    if a[1] != b[1] or a[1] == 0:
        return False
    return a[0] == b[0] or a[0] in _WILDCARD_HOSTS or b[0] in _WILDCARD_HOSTS


def _validate_listeners(cfg: Config) -> None:
    """mqtt.bind and [[listeners]]: binds that parse and do not collide, unique names, TLS files
    present and readable, settings only where their type uses them."""
    binds: list[tuple[str, tuple[str, int]]] = []
    names: dict[str, str] = {}
    if cfg.mqtt.bind:
        binds.append(("$.mqtt.bind", parse_bind(cfg.mqtt.bind, "$.mqtt.bind")))
        names[DEFAULT_LISTENER] = "$.mqtt.bind"
    elif not cfg.listeners:
        raise ConfigError(
            "$.mqtt.bind: '' is invalid; expected HOST:PORT, e.g. 127.0.0.1:1883, or at least one [[listeners]] entry"
        )
    for i, lst in enumerate(cfg.listeners):
        at = f"$.listeners[{i}]"
        addr = parse_bind(lst.bind, f"{at}.bind")
        for other_path, other in binds:
            if _binds_overlap(addr, other):
                raise ConfigError(
                    f"{at}.bind: {lst.bind!r} is already bound by {other_path}; expected a different HOST:PORT"
                )
        binds.append((f"{at}.bind", addr))
        if lst.name and not _LISTENER_NAME.fullmatch(lst.name):
            raise ConfigError(
                f"{at}.name: {lst.name!r} is invalid; expected letters, digits and - _ : . "
                "(starting with a letter or digit)"
            )
        name = listener_name(lst)
        if name in names:
            raise ConfigError(
                f"{at}.name: {name!r} is already the name of {names[name]}; expected unique listener names"
                + ("" if lst.name else ' (set name = "...": the default is TYPE:PORT)')
            )
        names[name] = at if lst.name else f"{at} (by default)"
        if lst.is_tls:
            _check_pem(f"{at}.certfile", lst.certfile, f'required for type "{lst.type}"')
            _check_pem(f"{at}.keyfile", lst.keyfile, f'required for type "{lst.type}"')
            if lst.verify == "verify_peer":
                _check_pem(f"{at}.cacertfile", lst.cacertfile, "CA certificates, required by verify_peer")
            elif lst.cacertfile is not None:
                _check_pem(f"{at}.cacertfile", lst.cacertfile, "CA certificates")
            if lst.peer_cert_as_username is not None and lst.verify != "verify_peer":
                raise ConfigError(
                    f"{at}.peer_cert_as_username: {lst.peer_cert_as_username!r} is invalid with verify = "
                    '"verify_none"; expected verify = "verify_peer" (no client certificate is asked for without it)'
                )
            if lst.fail_if_no_peer_cert and lst.verify != "verify_peer":
                raise ConfigError(
                    f'{at}.fail_if_no_peer_cert: true is invalid with verify = "verify_none"; '
                    'expected verify = "verify_peer" (no client certificate is asked for without it)'
                )
        else:
            for field in ("certfile", "keyfile", "cacertfile"):
                if getattr(lst, field) is not None:
                    raise ConfigError(
                        f'{at}.{field}: {getattr(lst, field)!r} is invalid for type "{lst.type}"; expected it '
                        'only on a "tls" or "wss" listener'
                    )
            if lst.verify != "verify_none" or lst.fail_if_no_peer_cert or lst.peer_cert_as_username is not None:
                field = (
                    "verify"
                    if lst.verify != "verify_none"
                    else ("fail_if_no_peer_cert" if lst.fail_if_no_peer_cert else "peer_cert_as_username")
                )
                raise ConfigError(
                    f'{at}.{field}: {getattr(lst, field)!r} is invalid for type "{lst.type}"; expected it '
                    'only on a "tls" or "wss" listener'
                )
        if lst.type in ("ws", "wss"):
            path = lst.ws_path
            if not path.startswith("/") or any(c in path for c in " ?#") or not path.isprintable():
                raise ConfigError(
                    f"{at}.path: {path!r} is invalid; expected an HTTP path starting with '/', e.g. /mqtt"
                )
        elif lst.path is not None:
            raise ConfigError(
                f'{at}.path: {lst.path!r} is invalid for type "{lst.type}"; expected it only on a "ws" or '
                '"wss" listener'
            )


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    node: str = msgspec.field(default_factory=_default_node)
    # Administrators, API keys and webhooks made over the API (mqhook.admin.store).
    data_dir: str = "./data"
    mqtt: MqttConfig = msgspec.field(default_factory=MqttConfig)
    admin: AdminConfig = msgspec.field(default_factory=AdminConfig)
    authn: AuthnConfig = msgspec.field(default_factory=AuthnConfig)
    authz: AuthzConfig = msgspec.field(default_factory=AuthzConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    # One model for the file, the --webhook flag and (later) the REST API.
    webhooks: list[WebhookConfig] = msgspec.field(default_factory=list)
    # MQTT listeners beside mqtt.bind: tcp, tls, ws, wss (see the ``# -- listeners`` block above).
    listeners: list[ListenerConfig] = msgspec.field(default_factory=list)
    # Other mqhook nodes, through NATS (mqhook.cluster); needs the extra mqhook[cluster].
    cluster: ClusterConfig = msgspec.field(default_factory=ClusterConfig)


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
    _validate_listeners(cfg)  # mqtt.bind and [[listeners]]
    parse_bind(cfg.admin.bind, "$.admin.bind")
    _check_anonymous(cfg)
    if not cfg.data_dir:
        raise ConfigError("$.data_dir: '' is invalid; expected a directory path, e.g. ./data")
    if not cfg.node or "@" not in cfg.node:
        raise ConfigError(f"$.node: {cfg.node!r} is invalid; expected NAME@HOST, e.g. mqhook@127.0.0.1")
    check_single_copy(cfg, "$.cluster.nats_url")
    seen: dict[str, int] = {}
    for i, hook in enumerate(cfg.webhooks):
        if hook.name in seen:
            raise ConfigError(
                f"$.webhooks[{i}].name: {hook.name!r} is already the name of $.webhooks[{seen[hook.name]}]; "
                "expected unique webhook names"
            )
        seen[hook.name] = i
    return cfg


def check_single_copy(cfg: Config, clustered_by: str) -> None:
    """``overlapping_subscriptions = "single_copy"`` is refused while clustered (``clustered_by``:
    the field or flag that clusters the node). A message from another node comes once per local
    filter that wants it, at separate moments; one copy per session would need each node to know
    which of those arrivals a session's other filters will also get, which a subscription added or
    removed meanwhile (its NATS subscription not yet in place) makes uncertain: a subscriber could
    lose messages its older filter was entitled to. Refused rather than honoured with that gap."""
    if cfg.mqtt.overlapping_subscriptions != "single_copy":
        return
    if clustered_by == "$.cluster.nats_url" and not cfg.cluster.nats_url:
        return
    raise ConfigError(
        f"$.mqtt.overlapping_subscriptions: 'single_copy' is not supported with {clustered_by} "
        "(a message from another node comes once per matching filter); expected 'copy_each' (the default) "
        f"while clustered, or no {clustered_by}"
    )


def mqtt_binds(cfg: Config) -> list[tuple[str, str]]:
    """(field path, HOST:PORT) of every MQTT listener of ``cfg``."""
    binds = [("$.mqtt.bind", cfg.mqtt.bind)] if cfg.mqtt.bind else []
    for i, listener in enumerate(getattr(cfg, "listeners", None) or ()):
        binds.append((f"$.listeners[{i}].bind", listener.bind))
    return binds


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allows_anonymous(cfg: Config) -> bool:
    """``authn.allow_anonymous``, or when unset: true while every MQTT listener binds loopback."""
    if cfg.authn.allow_anonymous is not None:
        return cfg.authn.allow_anonymous
    return all(_is_loopback(parse_bind(bind, path)[0]) for path, bind in mqtt_binds(cfg))


def _check_anonymous(cfg: Config) -> None:
    """Refuse a listener open to the network that would let anyone in, unless that was said."""
    if cfg.authn.allow_anonymous is not None:
        return
    for path, bind in mqtt_binds(cfg):
        host = parse_bind(bind, path)[0]
        if not _is_loopback(host):
            raise ConfigError(
                f"{path}: {bind!r} is open to the network and $.authn.allow_anonymous is not set; expected "
                "a loopback address, or authn.allow_anonymous set explicitly (false, with a password_file, "
                "or true to let anyone connect)"
            )


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
