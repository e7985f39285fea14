"""Access control: who may connect (authentication) and who may publish or subscribe where
(authorization).

This module owns the broker's two access seams. The connection asks ``Authenticator.authenticate``
once per CONNECT and ``Authorizer.check`` once per PUBLISH and per subscription filter; it fires
``client.check_authn_complete`` / ``client.check_authz_complete`` with the answers and refuses
what they refuse (CONNACK 0x86/0x87, PUBACK/SUBACK 0x87). Password files, ACL files and TLS client
certificates plug in here, as subclasses or replacements with the same methods.

Until they exist, the built-in rules let everyone in as an anonymous client and allow every
action; the authorization source is reported as ``default``, EMQX's name for "no source matched,
the default applied", so the events tell the truth.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from mqhook.mqtt import reason as R

if TYPE_CHECKING:
    from mqhook.broker.connection import Connection

__all__ = ["PUBLISH", "SUBSCRIBE", "Authenticator", "Authn", "Authorizer"]

PUBLISH = "publish"
SUBSCRIBE = "subscribe"


class Authn(NamedTuple):
    """One authentication decision. ``code`` is an MQTT 5 reason code: ``R.SUCCESS``, or the CONNACK
    refusal (``R.BAD_USER_NAME_OR_PASSWORD``, ``R.NOT_AUTHORIZED``)."""

    code: int
    is_superuser: bool
    is_anonymous: bool


ANONYMOUS = Authn(R.SUCCESS, False, True)


class Authenticator:
    """The built-in rule: everyone connects, as an anonymous client."""

    def authenticate(self, conn: Connection, password: bytes | None) -> Authn:
        """Decide a CONNECT; ``conn.client_id``, ``conn.username`` and ``conn.peerhost`` are set."""
        return ANONYMOUS


class Authorizer:
    """The built-in rule set: allow all."""

    source = "default"  # client.check_authz_complete's authz_source

    def check(self, conn: Connection, action: str, topic: str) -> bool:
        """May ``conn`` do ``action`` (``PUBLISH`` or ``SUBSCRIBE``) on ``topic`` (a name or a filter)?"""
        return True
