"""Access control: who may connect (authentication) and who may publish or subscribe where
(authorization).

This module owns the broker's two access seams. The connection asks ``Authenticator.authenticate``
once per CONNECT and ``Authorizer.check`` once per PUBLISH and per subscription filter; it fires
``client.check_authn_complete`` / ``client.check_authz_complete`` with the answers and refuses
what they refuse (CONNACK 0x86/0x87, PUBACK/SUBACK 0x87). Password files and ACL files
(``mqhook.access``) plug in here as subclasses.

An authenticator may decide at once (return the ``Authn``) or later (return None and call ``done``
once, on the broker's thread): a slow password hash then runs elsewhere while the connection holds
what its client sends meanwhile.

The built-in rules let everyone in as an anonymous client and allow every action; the
authorization source is then ``default``, EMQX's name for "no source matched, the default
applied", so the events tell the truth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from mqhook.mqtt import reason as R

if TYPE_CHECKING:
    from mqhook.broker.connection import Connection

__all__ = ["ALLOW_DEFAULT", "DENY_DEFAULT", "PUBLISH", "SUBSCRIBE", "Authenticator", "Authn", "Authorizer", "Authz"]

PUBLISH = "publish"
SUBSCRIBE = "subscribe"


class Authn(NamedTuple):
    """One authentication decision. ``code`` is an MQTT 5 reason code: ``R.SUCCESS``, or the CONNACK
    refusal (``R.BAD_USER_NAME_OR_PASSWORD``, ``R.NOT_AUTHORIZED``)."""

    code: int
    is_superuser: bool
    is_anonymous: bool


ANONYMOUS = Authn(R.SUCCESS, False, True)


class Authz(NamedTuple):
    """One authorization decision and where it came from (``client.check_authz_complete``'s
    ``authz_source``: ``file`` when a rule decided, ``default`` when none matched)."""

    allowed: bool
    source: str


ALLOW_DEFAULT = Authz(True, "default")
DENY_DEFAULT = Authz(False, "default")


class Authenticator:
    """The built-in rule: everyone connects, as an anonymous client."""

    def authenticate(self, conn: Connection, password: bytes | None, done: Callable[[Authn], None]) -> Authn | None:
        """Decide a CONNECT now (the decision) or later (None, then ``done(decision)`` once, on the
        broker's thread). ``conn.client_id``, ``conn.username`` and ``conn.peerhost`` are set."""
        return ANONYMOUS


class Authorizer:
    """The built-in rule set: allow all."""

    def check(self, conn: Connection, action: str, topic: str) -> Authz:
        """May ``conn`` do ``action`` (``PUBLISH`` or ``SUBSCRIBE``) on ``topic`` (a name or a filter)?"""
        return ALLOW_DEFAULT
