"""Which ``${...}`` variables a webhook's templates may use: the fields its events have.

A template variable is checked when the config is (``WebhookConfig``), against the event
catalogue (``mqhook.events.catalogue.EVENT_TYPES``, the structs the events are encoded from):
a variable that none of the webhook's ``events`` has is refused, naming it, instead of
rendering ``undefined`` into every request (and, unquoted in a JSON body, invalid JSON). One
that some of the events have is fine: the others render ``undefined`` as EMQX does.

What a path may name, for one event:

- ``${.}`` (the whole event), ``${event}``, ``${metadata}`` and ``${metadata.rule_id}``;
- a field of the event's struct, and into it: the fields of a nested struct (``flags.dup``),
  anything under an object field (``pub_props.User-Property.k``, ``client_attrs.x``: their keys
  are the client's), an index into a list;
- anything under ``payload``, read as JSON when the payload is JSON (``payload.a.b.0``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import msgspec.inspect as mi

from mqhook.events.catalogue import EVENT_TYPES

__all__ = ["fields_of", "known"]

JSON_STRINGS = frozenset({"payload"})  # string fields whose JSON content templates may read into
_ENVELOPE: dict[str, frozenset[str] | None] = {"event": frozenset(), "metadata": frozenset({"rule_id"})}


@functools.cache
def _struct(event: str) -> mi.StructType:
    info = mi.type_info(EVENT_TYPES[event])
    assert isinstance(info, mi.StructType)
    return info


def _field(tp: mi.StructType, name: str) -> mi.Type | None:
    return next((f.type for f in tp.fields if f.name == name), None)


def _has(event: str, path: tuple[str, ...]) -> bool:
    head, rest = path[0], path[1:]
    if head in _ENVELOPE:
        below = _ENVELOPE[head]
        return not rest or (below is not None and len(rest) == 1 and rest[0] in below)
    tp: mi.Type | None = _field(_struct(event), head)
    name = head
    for key in rest:
        if tp is None:
            return False
        if isinstance(tp, mi.DictType | mi.AnyType):
            return True
        if isinstance(tp, mi.StrType):
            return name in JSON_STRINGS
        if isinstance(tp, mi.StructType):
            tp = _field(tp, key)
        elif isinstance(tp, mi.ListType) and key.isdigit():
            tp = tp.item_type
        else:
            return False
        name = key
    return tp is not None


def known(path: tuple[str, ...], events: Iterable[str]) -> bool:
    """Whether ``${a.b}`` (``path`` = ('a', 'b'); () is ``${.}``) is a field of one of ``events``."""
    return not path or any(_has(event, path) for event in events)


def fields_of(events: Iterable[str]) -> list[str]:
    """The variables ``events`` have at the top, sorted (for error messages)."""
    names = {f.name for event in events for f in _struct(event).fields}
    extra = {"event", "metadata.rule_id"} | ({"payload.<key>"} if "payload" in names else set())
    return sorted(names | extra)
