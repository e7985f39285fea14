"""Authorization: may this client publish to, or subscribe to, this topic?

Until ACLs exist, the built-in rule set allows everything; its source is
reported as ``default`` (EMQX's name for "no source matched, the default
applied"), so the ``client.check_authz_complete`` event tells the truth.
ACL sources later plug in behind ``Authorizer.check``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mqhook.broker.connection import Connection

PUBLISH = "publish"
SUBSCRIBE = "subscribe"


class Authorizer:
    """The built-in rule set: allow all."""

    source = "default"

    def check(self, conn: Connection, action: str, topic: str) -> bool:
        return True
