"""The ACL file and ``FileAuthorizer``: who may publish or subscribe where.

The file is TOML, a list of ``[[rules]]``; the first rule that matches decides::

    [[rules]]
    permission = "allow"                     # or "deny"
    action = "publish"                       # "subscribe", or "all"
    topics = ["sensors/${clientid}/#", "eq alerts/#"]
    username = "alice"                       # who; each optional, all given must match
    clientid = "c1"
    ipaddr = "10.0.0.0/8"                    # an address or a CIDR block

- A topic of a rule is an MQTT filter; ``${username}`` and ``${clientid}`` are replaced by the
  client's (a rule with a placeholder the client cannot fill, or would fill with ``+``, ``#`` or
  ``/``, does not match); ``eq `` in front means the literal string, wildcards included.
- For PUBLISH, the topic name must match the rule's filter. For SUBSCRIBE, the client's filter must
  be covered by it: every topic the client's filter matches, the rule's matches too (``a/+`` covers
  ``a/b`` and ``a/+``, not ``a/#``). A shared subscription is checked by its filter without
  ``$share/GROUP/``. ``#`` and ``+`` at the start do not cover ``$`` topics [MQTT-4.7.2-1].
- No rule matches: ``no_match`` decides, reported as source ``default``; a rule: source ``file``.
  Superusers are allowed everything (source ``superuser``).
- PUBLISH decisions are cached per connection and topic (at most ``CACHE_SIZE``), so a client
  publishing to the same topics pays one dict lookup; a reload (SIGHUP) starts every cache again.
  Without an ACL file the composition root uses the broker's built-in ``Authorizer`` answering
  ``no_match`` (``DefaultAuthorizer``): no cache, no lookup.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from mqhook.access.settings import AuthzConfig
from mqhook.broker.auth import PUBLISH, SUBSCRIBE, Authorizer, Authz
from mqhook.errors import ConfigError, ProtocolError
from mqhook.mqtt.topics import parse_shared, validate_topic_filter
from mqhook.schema import FieldInvalid, convert, explain

if TYPE_CHECKING:
    from mqhook.broker.connection import Connection

__all__ = ["Acl", "DefaultAuthorizer", "FileAuthorizer", "Rule", "authorizer_for"]

CACHE_SIZE = 256
ALLOW_FILE = Authz(True, "file")
DENY_FILE = Authz(False, "file")
ALLOW_SUPERUSER = Authz(True, "superuser")
_PLACEHOLDER = re.compile(r"\$\{(username|clientid)\}")
_UNFILLABLE = re.compile(r"[+#/]")


class Rule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    permission: Literal["allow", "deny"]
    action: Literal["publish", "subscribe", "all"]
    topics: list[str]
    username: str | None = None
    clientid: str | None = None
    ipaddr: str | None = None

    def __post_init__(self) -> None:
        if not self.topics:
            raise FieldInvalid("topics", self.topics, 'a non-empty list of topic filters, e.g. ["sensors/#"]')
        for i, topic in enumerate(self.topics):
            if topic.startswith("eq "):
                continue
            try:
                validate_topic_filter(_PLACEHOLDER.sub("x", topic))
            except ProtocolError as exc:
                raise FieldInvalid(f"topics[{i}]", topic, f"a topic filter, or 'eq ' and a literal ({exc})") from None
        if self.ipaddr is not None:
            try:
                ipaddress.ip_network(self.ipaddr, strict=False)
            except ValueError:
                raise FieldInvalid("ipaddr", self.ipaddr, "an IP address or CIDR block, e.g. 10.0.0.0/8") from None


class AclFile(msgspec.Struct, forbid_unknown_fields=True):
    rules: list[Rule] = msgspec.field(default_factory=list)


class Acl:
    """Parsed rules, each with its matcher."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)
        self._networks = [None if r.ipaddr is None else ipaddress.ip_network(r.ipaddr, strict=False) for r in rules]

    @classmethod
    def load(cls, path: str, field: str = "$.authz.acl_file") -> Acl:
        try:
            with open(path, "rb") as f:
                tree = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"{field}: {path!r} cannot be read ({exc.strerror}); expected an ACL file") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{field}: {path!r} is not valid TOML: {exc}") from exc
        try:
            parsed = convert(tree, AclFile)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{path}: " + explain(exc, tree, AclFile)) from None
        return cls(parsed.rules)

    def decide(self, username: str | None, clientid: str, peerhost: str, action: str, topic: str) -> int | None:
        """The index of the first rule that matches, or None."""
        subject = topic
        if action == SUBSCRIBE:
            _, subject = parse_shared(topic)
        address: Any = None
        for i, rule in enumerate(self.rules):
            if rule.action != "all" and rule.action != action:
                continue
            if rule.username is not None and rule.username != username:
                continue
            if rule.clientid is not None and rule.clientid != clientid:
                continue
            network = self._networks[i]
            if network is not None:
                if address is None:
                    try:
                        address = ipaddress.ip_address(peerhost.strip("[]"))
                    except ValueError:
                        address = False
                if address is False or address not in network:
                    continue
            for pattern in rule.topics:
                if pattern.startswith("eq "):
                    if pattern[3:] == subject:
                        return i
                    continue
                resolved = _fill(pattern, username, clientid)
                if resolved is not None and covers(resolved, subject):
                    return i
        return None


def _fill(pattern: str, username: str | None, clientid: str) -> str | None:
    if "${" not in pattern:
        return pattern
    failed = False

    def value(m: re.Match[str]) -> str:
        nonlocal failed
        v = username if m.group(1) == "username" else clientid
        if not v or _UNFILLABLE.search(v):
            failed = True
            return "x"
        return v

    out = _PLACEHOLDER.sub(value, pattern)
    return None if failed else out


def covers(rule: str, subject: str) -> bool:
    """Does the filter ``rule`` match the topic name ``subject``, or (when ``subject`` is a filter)
    every topic that ``subject`` matches?"""
    r = rule.split("/")
    s = subject.split("/")
    if subject.startswith("$") and r[0] in ("#", "+"):
        return False
    for i, level in enumerate(r):
        if level == "#":
            return True
        if i >= len(s):
            return False
        got = s[i]
        if level == "+":
            if got == "#":
                return False
            continue
        if level != got:
            return False
    return len(s) == len(r)


class FileAuthorizer(Authorizer):
    """The ACL of ``config.acl_file`` (or none), ``no_match`` for the rest."""

    def __init__(self, config: AuthzConfig) -> None:
        self.config = config
        self.acl = Acl.load(config.acl_file) if config.acl_file else Acl([])
        self.default = Authz(config.no_match == "allow", "default")

    def reload(self) -> None:
        """Read the ACL file again (SIGHUP); a bad file raises ConfigError and changes nothing. The
        connections' caches belong to the old ``Acl`` object and are started again on next use."""
        if self.config.acl_file:
            self.acl = Acl.load(self.config.acl_file)

    def check(self, conn: Connection, action: str, topic: str) -> Authz:
        if conn.is_superuser:
            return ALLOW_SUPERUSER
        acl = self.acl
        if action == PUBLISH:  # once per PUBLISH: cached by topic, per connection
            cache = conn.authz_cache
            if cache is None or cache[0] is not acl:
                cache = conn.authz_cache = (acl, {})
            decisions: dict[str, Authz] = cache[1]
            found = decisions.get(topic)
            if found is not None:
                return found
            found = self._decide(acl, conn, action, topic)
            if len(decisions) >= CACHE_SIZE:
                decisions.clear()
            decisions[topic] = found
            return found
        return self._decide(acl, conn, action, topic)  # a subscription: decided each time (rare)

    def _decide(self, acl: Acl, conn: Connection, action: str, topic: str) -> Authz:
        index = acl.decide(conn.username, conn.client_id, conn.peerhost, action, topic)
        if index is None:
            return self.default
        return ALLOW_FILE if acl.rules[index].permission == "allow" else DENY_FILE

    def explain(self, username: str | None, clientid: str, peerhost: str, action: str, topic: str) -> str:
        """``mqhook acl check``'s answer: the decision and the rule that made it."""
        index = self.acl.decide(username, clientid, peerhost, action, topic)
        if index is None:
            return f"{self.config.no_match}: no rule matches; no_match = {self.config.no_match!r}"
        rule = self.acl.rules[index]
        return f"{rule.permission}: rule {index + 1} of {self.config.acl_file} ({msgspec.json.encode(rule).decode()})"


class DefaultAuthorizer(Authorizer):
    """No ACL file: every decision is ``no_match`` (superusers still allowed everything)."""

    def __init__(self, no_match: str) -> None:
        self.default = Authz(no_match == "allow", "default")

    def check(self, conn: Connection, action: str, topic: str) -> Authz:
        return ALLOW_SUPERUSER if conn.is_superuser else self.default

    def reload(self) -> None:
        """Nothing to read."""


def authorizer_for(config: AuthzConfig) -> FileAuthorizer | DefaultAuthorizer:
    """The authorizer ``[authz]`` asks for: the ACL file's, or the plain default without one."""
    return FileAuthorizer(config) if config.acl_file else DefaultAuthorizer(config.no_match)
