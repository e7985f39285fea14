"""Bottom layer of the configuration: value types, msgspec hooks and the one error explainer.

It imports only the standard library, msgspec and ``mqhook.errors``, so every settings module
(``mqhook.config``, ``mqhook.broker.settings``, ``mqhook.webhook.model``) can build on it.

- ``Duration`` ('15s', '500ms', '2m', '1h' or a number of seconds) and ``ByteSize`` ('256MB',
  '64KB', '512B' or a number of bytes, 1 KB = 1024 bytes as in EMQX) are parsed once, when the
  config is decoded, and keep what the user wrote: ``enc_hook`` gives it back, so '15s' is
  encoded as "15s" and a config round-trips through JSON unchanged. A subclass declares bounds
  the way ``msgspec.Meta`` does for numbers: ``class Timeout(Duration, gt=0): ...``.
- ``convert``, ``encode_json`` and ``decode_json`` pass the hooks; a bare ``msgspec`` call needs
  ``dec_hook=dec_hook`` / ``enc_hook=enc_hook`` to handle these types.
- ``FieldInvalid`` is what a check raises in a Struct's ``__post_init__`` or in a hook: a
  ``ConfigError`` and a ``ValueError`` (msgspec wraps only ValueError/TypeError with a location).
- ``explain`` turns msgspec's ``ValidationError`` into ``PATH: VALUE is invalid; expected ...``.
  It prints only the value of the field at fault (never a whole table), as the Struct holding it
  allows: a Struct with secrets defines ``explain_value`` (see ``_shown``).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar, get_args, get_origin

import msgspec
import msgspec.inspect as mi

from mqhook.errors import ConfigError

T = TypeVar("T")
N = TypeVar("N", int, float)


class FieldInvalid(ConfigError, ValueError):
    """One value is wrong. ``field`` is relative to the Struct that raised it ('' in a hook:
    msgspec knows the location); ``explain`` puts the full path in front."""

    def __init__(self, field: str, value: Any, expected: str) -> None:
        self.field = field
        self.value = value
        self.expected = expected
        head = f"{field}: " if field else ""
        super().__init__(f"{head}{value!r} is invalid; expected {expected}")


# -- quantities written with a unit ------------------------------------------------------------


class _Quantity(Generic[N]):
    """An amount parsed once from what the user wrote; immutable; equal when the amounts are."""

    __slots__ = ("amount", "written")

    kind: ClassVar[str]  # "a duration"
    examples: ClassVar[str]
    bounds: ClassVar[tuple[tuple[str, float, str], ...]] = ()  # (op, limit, limit as written)

    amount: N
    written: str | int | float

    def __init_subclass__(
        cls,
        *,
        gt: str | int | None = None,
        ge: str | int | None = None,
        le: str | int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        limits = [(op, lim) for op, lim in ((">", gt), (">=", ge), ("<=", le)) if lim is not None]
        cls.bounds = cls.bounds + tuple((op, cls._parse_or_fail(lim), str(lim)) for op, lim in limits)

    def __init__(self, written: str | int | float) -> None:
        amount = self._parse_or_fail(written)
        for op, limit, shown in self.bounds:
            if not _OPS[op](amount, limit):
                raise FieldInvalid("", written, f"{self.kind} {op} {shown}")
        object.__setattr__(self, "written", written)
        object.__setattr__(self, "amount", amount)

    @classmethod
    def _parse_or_fail(cls, written: Any) -> Any:
        amount = None if isinstance(written, bool) else cls._parse(written)
        if amount is None:
            wanted = " and".join(f" {op} {shown}" for op, _, shown in cls.bounds)
            raise FieldInvalid("", written, f"{cls.kind}{wanted} such as {cls.examples}")
        return amount

    @classmethod
    def _parse(cls, written: Any) -> N | None:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[Any, ...]:  # copy and pickle rebuild it from what was written
        return (type(self), (self.written,))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Quantity):
            return NotImplemented
        return self.kind == other.kind and self.amount == other.amount

    def __hash__(self) -> int:
        return hash((self.kind, self.amount))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.written!r})"

    def __str__(self) -> str:
        return str(self.written)


_OPS: dict[str, Callable[[Any, Any], bool]] = {">": operator.gt, ">=": operator.ge, "<=": operator.le}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(b|kb|mb|gb)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}  # EMQX bytesize is binary


class Duration(_Quantity[float]):
    """'15s', '500ms', '2m', '1h' or a number of seconds (>= 0); ``seconds`` is the float."""

    __slots__ = ()
    kind = "a duration"
    examples = "'15s', '500ms', '2m', '1h' or a number of seconds"

    @classmethod
    def _parse(cls, written: Any) -> float | None:
        if isinstance(written, int | float):
            try:
                seconds = float(written)
            except OverflowError:  # an int too big for a float
                return None
            return seconds if seconds >= 0 and math.isfinite(seconds) else None
        if isinstance(written, str) and (m := _DURATION_RE.match(written)):
            return float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
        return None

    @property
    def seconds(self) -> float:
        return self.amount


class ByteSize(_Quantity[int]):
    """'256MB', '64KB', '1GB', '512B' (1 KB = 1024 bytes) or a number of bytes; ``bytes`` is the int."""

    __slots__ = ()
    kind = "a byte size"
    examples = "'256MB', '64KB', '512B' or a number of bytes"

    @classmethod
    def _parse(cls, written: Any) -> int | None:
        if isinstance(written, int):
            return written if written >= 0 else None
        if isinstance(written, str) and (m := _SIZE_RE.match(written)):
            return int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()]
        return None

    @property
    def bytes(self) -> int:
        return self.amount


def parse_duration(value: Any, field: str = "duration") -> float:
    """'15s', '500ms', '2m', '1h' or a number of seconds -> seconds; FieldInvalid names ``field``."""
    try:
        return Duration(value).seconds
    except FieldInvalid as exc:
        raise FieldInvalid(field, value, exc.expected) from None


def parse_size(value: Any, field: str = "size") -> int:
    """'256MB', '64KB', '1GB', '512B' or a number of bytes -> bytes; FieldInvalid names ``field``."""
    try:
        return ByteSize(value).bytes
    except FieldInvalid as exc:
        raise FieldInvalid(field, value, exc.expected) from None


# -- msgspec hooks and helpers -----------------------------------------------------------------


def dec_hook(tp: Any, obj: Any) -> Any:
    """msgspec ``dec_hook``: build the value types of this module from what was written."""
    if isinstance(tp, type) and issubclass(tp, _Quantity):
        return tp(obj)
    raise NotImplementedError(f"cannot decode {tp!r}")


def enc_hook(obj: Any) -> Any:
    """msgspec ``enc_hook``: a value type is encoded as exactly what was written ('15s' stays '15s')."""
    if isinstance(obj, _Quantity):
        return obj.written
    raise NotImplementedError(f"cannot encode {type(obj).__name__} objects")


_ENCODER = msgspec.json.Encoder(enc_hook=enc_hook)


def convert(obj: Any, tp: type[T]) -> T:
    """``msgspec.convert`` of a TOML/JSON tree, strict, with this module's hooks."""
    return msgspec.convert(obj, tp, strict=True, dec_hook=dec_hook)


def encode_json(obj: Any) -> bytes:
    return _ENCODER.encode(obj)


def decode_json(data: bytes | str, tp: type[T]) -> T:
    return msgspec.json.decode(data, type=tp, strict=True, dec_hook=dec_hook)


# -- error messages ------------------------------------------------------------------------------


def explain(exc: msgspec.ValidationError, tree: Any, root: Any, prefix: str = "$") -> str:
    """msgspec's 'Expected `int` >= 1 - at `$.mqtt.max_inflight`' -> '$.mqtt.max_inflight: 0 is
    invalid; expected an integer from 1 to 65535'.

    ``tree`` is the object that was decoded (the value is read from it), ``root`` the type it was
    decoded to (for the known field names, the choices and the bounds); ``prefix`` replaces '$'
    (e.g. '$.webhooks[0]' or '--webhook').
    """
    loc, text = explain_at(exc, tree, root, prefix)
    return f"{loc}: {text}"


def explain_at(exc: msgspec.ValidationError, tree: Any, root: Any, prefix: str = "$") -> tuple[str, str]:
    """``explain`` in two parts: the field's path ('$.mqtt.max_inflight') and what is wrong there."""
    reason, sep, where = str(exc).rpartition(" - at `")
    if not sep:
        reason, where = str(exc), "$`"
    loc = prefix + where[1:-1]  # '$.a[0]`' -> prefix + '.a[0]'
    keys = _path_keys(where[1:-1])
    cause = exc.__cause__
    if isinstance(cause, FieldInvalid):  # raised by a __post_init__ check or by dec_hook
        if cause.field:
            loc += cause.field if cause.field.startswith("[") else "." + cause.field
        value = _shown(root, keys, cause.field, cause.value)
        return loc, f"{value!r} is invalid; expected {cause.expected}"
    tp = _type_at(mi.type_info(root), keys)
    if reason.startswith(("Object contains unknown field", "Object missing required field")):
        name = reason.split("`")[1]
        if reason.startswith("Object missing"):
            return f"{loc}.{name}", "missing; this setting is required"
        known = ", ".join(f.name for f in tp.fields) if isinstance(tp, mi.StructType) else ""
        return f"{loc}.{name}", f"unknown setting; expected one of: {known}"
    if reason.startswith("Invalid enum value") and (choices := _choices(tp, root, keys)):
        detail = "expected one of " + choices
    elif reason.startswith("Expected") and (bounds := _bounds(tp)) and re.search(r"` [<>]", reason):
        detail = "expected " + bounds  # both limits, where msgspec names the one that was crossed
    elif reason.startswith("Expected "):
        detail = "expected " + reason[len("Expected ") :]
    else:
        detail = reason
    found, value = _value_at(tree, keys)
    if found and isinstance(value, dict | list) and value and (tp is None or _holds_struct(tp)):
        found = False  # a whole table (a webhook entry, say): only the field at fault is printed
    if found:
        value = _shown(root, keys, "", value)
    return loc, (f"{value!r} is invalid; {detail}" if found else f"invalid; {detail}")


def _shown(root: Any, keys: list[str | int], field: str, value: Any) -> Any:
    """What an error may print of ``value``, found at ``keys`` (+ ``field``, relative to them).

    The innermost Struct on the way decides, if it defines ``explain_value(field, value)`` (a
    classmethod taking the path relative to it, e.g. 'headers.Authorization' or 'events[0]'):
    that is how a secret is printed '<redacted>'."""
    owner: Any = None
    rel: list[str | int] = []
    tp: mi.Type | None = mi.type_info(root)
    for i, key in enumerate([*keys, None]):
        if isinstance(tp, mi.StructType):
            owner, rel = tp.cls, list(keys[i:])
        if key is None or tp is None:
            break
        tp = _step(tp, key)
    hook = getattr(owner, "explain_value", None)
    if hook is None:
        return value
    path = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in rel)
    if field:
        path += field if field.startswith("[") else "." + field
    return hook(path.lstrip("."), value)


def _holds_struct(tp: mi.Type) -> bool:
    """Whether values of ``tp`` may hold a Struct (whose other fields an error must not print)."""
    if isinstance(tp, mi.StructType):
        return True
    if isinstance(tp, mi.UnionType):
        return any(_holds_struct(t) for t in tp.types)
    if isinstance(tp, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        return _holds_struct(tp.item_type)
    if isinstance(tp, mi.DictType):
        return _holds_struct(tp.value_type)
    return False


def _path_keys(path: str) -> list[str | int]:
    """'.webhooks[0].url' -> ['webhooks', 0, 'url']."""
    return [name or int(index) for name, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path)]


def _value_at(tree: Any, keys: list[str | int]) -> tuple[bool, Any]:
    value = tree
    for key in keys:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return False, None
    return True, value


def _type_at(tp: mi.Type, keys: list[str | int]) -> mi.Type | None:
    """The msgspec.inspect type found by following ``keys`` from ``tp`` (None if lost on the way)."""
    for key in keys:
        found = _step(tp, key)
        if found is None:
            return None
        tp = found
    return tp


def _step(tp: mi.Type, key: str | int) -> mi.Type | None:
    if isinstance(tp, mi.UnionType):
        return next((t for t in (_step(m, key) for m in tp.types) if t is not None), None)
    if isinstance(tp, mi.StructType) and isinstance(key, str):
        return next((f.type for f in tp.fields if f.name == key), None)
    if isinstance(tp, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType) and isinstance(key, int):
        return tp.item_type
    if isinstance(tp, mi.DictType):
        return tp.value_type
    return None


def _choices(tp: mi.Type | None, root: Any, keys: list[str | int]) -> str:
    """'a, b' for a Literal or an Enum, in the order they were declared."""
    if isinstance(tp, mi.EnumType):
        any_case = " (any case)" if "_missing_" in vars(tp.cls) else ""
        return ", ".join(str(m.value) for m in tp.cls) + any_case
    if not isinstance(tp, mi.LiteralType):
        return ""
    values: tuple[Any, ...] = tp.values  # sorted by msgspec: prefer the annotation's order
    parent = _type_at(mi.type_info(root), keys[:-1])
    if keys and isinstance(parent, mi.StructType):
        hint = next((f.type for f in msgspec.structs.fields(parent.cls) if f.name == keys[-1]), None)
        while get_origin(hint) is Annotated:
            hint = get_args(hint)[0]
        if get_origin(hint) is Literal:
            values = get_args(hint)
    return ", ".join(str(v) for v in values)


def _bounds(tp: mi.Type | None) -> str:
    """IntType(ge=1, le=1024) -> 'an integer from 1 to 1024'."""
    if not isinstance(tp, mi.IntType | mi.FloatType):
        return ""
    what = "an integer" if isinstance(tp, mi.IntType) else "a number"
    if tp.ge is not None and tp.le is not None:
        return f"{what} from {_num(tp.ge)} to {_num(tp.le)}"
    ops = ((">", tp.gt), (">=", tp.ge), ("<", tp.lt), ("<=", tp.le))
    return " and ".join(f"{what} {op} {_num(limit)}" for op, limit in ops if limit is not None)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))
