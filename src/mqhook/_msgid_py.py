"""Pure-Python message ids: the reference for, and fallback of, ext/msgid.pyx.

Message ids are EMQX's (``emqx_guid``): a 64-bit microsecond timestamp, 48 bits naming this node
and process, a 16-bit sequence, printed as 32 uppercase hex digits. Every event about one message
carries its id (``mqhook.broker.message.Message.id``). The sequence lives in whichever module is
selected (see ``mqhook.native``), so ids never repeat in a process.
"""

from __future__ import annotations

import itertools
import struct

__all__ = ["new_message_id", "set_node_bits"]

_node_bits = 0
_seq = itertools.count()
_pack_id = struct.Struct(">QQ").pack


def set_node_bits(bits: int) -> None:
    """The middle 48 bits of every id (shifted left by 16), fixed per process."""
    global _node_bits
    _node_bits = bits


def new_message_id(received_at: float) -> str:
    """32 uppercase hex digits, as ``emqx_guid:to_hexstr/1`` prints them."""
    return _pack_id(int(received_at * 1_000_000), _node_bits | (next(_seq) & 0xFFFF)).hex().upper()
