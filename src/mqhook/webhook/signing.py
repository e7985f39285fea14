"""Request signing per the Standard Webhooks specification (EMQX has no signing: issue emqx-web-hook #160).

Three headers go on every request of a webhook that has a ``secret``:

- ``webhook-id``: unique per request and the same on each of its retries, so receivers can
  de-duplicate (it doubles as an idempotency key);
- ``webhook-timestamp``: integer unix seconds of this attempt;
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``.

Secrets: ``whsec_<base64>`` (the spec's format) is base64-decoded and the bytes are the key;
any other string is used as its raw UTF-8 bytes (see ``model.secret_key``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from mqhook.webhook.model import secret_key

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


def new_message_id() -> str:
    """A unique request id, ``msg_`` + 24 hex characters (96 random bits)."""
    return "msg_" + os.urandom(12).hex()


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` over ``{msg_id}.{timestamp}.{body}``."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers. ``secret`` is a configured string or an already-decoded key."""
    key = secret if isinstance(secret, bytes) else secret_key(secret)
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(key, msg_id, timestamp, body),
    }
