"""MQTT 5 property blocks as EMQX prints them in event bodies (the ``*_props`` fields).

This module owns the conversion from the broker's property dicts (see
``mqhook.mqtt.properties``: ``"User-Property"`` is a list of ``(key, value)``
pairs in wire order, binary properties are ``bytes``) to the JSON shape of
EMQX 5.8.9 ``emqx_rule_events:printable_maps/1``:

- the result is always an object with at least ``{"User-Property": {}}``, even
  for MQTT 3.1.1 clients and for packets without properties;
- with user properties, ``"User-Property"`` is an object in which the last
  duplicate key wins (Erlang ``maps:from_list``) and ``"User-Property-Pairs"``
  is ``[{"key": k, "value": v}, ...]`` in wire order (EMQX emits the pairs
  whenever the property list is present, so an empty list gives ``[]``);
- binary values (``Correlation-Data``, ``Authentication-Data``) become strings:
  EMQX's JSON encoder forces UTF-8, so invalid bytes turn into U+FFFD, as here;
- every other value (ints, strings, ``Subscription-Identifier`` lists) passes through.

It also owns ``FrozenDict`` and the shared empty constants, so an event about a
packet without properties allocates nothing for them.
"""

from __future__ import annotations

from typing import Any, NoReturn

__all__ = ["EMPTY_ATTRS", "EMPTY_PROPS", "FrozenDict", "printable_props"]

USER_PROPERTY = "User-Property"
USER_PROPERTY_PAIRS = "User-Property-Pairs"
_BINARY = (bytes, bytearray, memoryview)  # a tuple: isinstance is faster with it than with a union


class FrozenDict(dict[str, Any]):
    """A dict that refuses changes: the shared constants below must stay empty for every event.

    It is a real ``dict`` subclass, so msgspec and orjson encode it as an object with no hook.
    """

    __slots__ = ()

    def _immutable(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("this property object is shared by many events and cannot be changed")

    __setitem__ = _immutable
    __delitem__ = _immutable
    __ior__ = _immutable
    clear = _immutable
    pop = _immutable
    popitem = _immutable
    setdefault = _immutable
    update = _immutable

    def __reduce__(self) -> tuple[type[FrozenDict], tuple[dict[str, Any]]]:
        return (FrozenDict, (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict:
        return self


EMPTY_USER_PROPERTY = FrozenDict()
EMPTY_PROPS = FrozenDict({USER_PROPERTY: EMPTY_USER_PROPERTY})
"""``{"User-Property": {}}``: the ``*_props`` value of every packet without properties."""

EMPTY_ATTRS = FrozenDict()
"""``client_attrs`` of every client: mqhook has no client attributes yet (EMQX 5.7+ defaults to ``{}``)."""


def printable_props(props: dict[str, Any] | None) -> dict[str, Any]:
    """The EMQX JSON shape of one property block; ``EMPTY_PROPS`` (shared) when there is none."""
    if not props:
        return EMPTY_PROPS
    out: dict[str, Any] = {USER_PROPERTY: EMPTY_USER_PROPERTY}
    for name, value in props.items():
        if name == USER_PROPERTY:
            pairs = value.items() if isinstance(value, dict) else value
            by_key: dict[str, str] = {}
            listed: list[dict[str, str]] = []
            for key, val in pairs:
                by_key[key] = val  # the last duplicate wins, as maps:from_list does
                listed.append({"key": key, "value": val})
            out[USER_PROPERTY] = by_key
            out[USER_PROPERTY_PAIRS] = listed
        elif isinstance(value, _BINARY):
            out[name] = bytes(value).decode("utf-8", "replace")
        else:
            out[name] = value
    return out
