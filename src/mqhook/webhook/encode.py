"""Webhook bodies from event JSON: splice the per-webhook ``metadata`` into each event object.

EMQX adds ``"metadata": {"rule_id": "<name>_WH_D"}`` to every body; the rest of the body is
the event map. The events layer hands every webhook the same event JSON (bytes, see
``mqhook.events.writer``); each webhook splices its own metadata bytes after the opening
brace (``splice``), when it builds a request. Key order is therefore ``metadata`` first,
then the event's fields (EMQX guarantees no key order either).

A batch body is joined from the queued JSON in one ``bytes.join`` (``request.RequestBuilder``):
no intermediate object per event. bench/test_bench_webhook.py measures it.
"""

from __future__ import annotations

import msgspec

_encode = msgspec.json.Encoder().encode


def meta_prefix(rule_id: str) -> bytes:
    """The bytes that open every body of one webhook: ``{"metadata":{"rule_id":...},``."""
    return b'{"metadata":{"rule_id":' + _encode(rule_id) + b"},"


def splice(raw: bytes, prefix: bytes) -> bytes:
    """Insert the metadata ``prefix`` into one encoded event object."""
    if raw == b"{}":
        return prefix[:-1] + b"}"
    return prefix + raw[1:]
