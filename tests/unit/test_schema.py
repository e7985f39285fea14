"""mqhook.schema: Duration/ByteSize value types, the msgspec hooks and ``explain``."""

from __future__ import annotations

import copy
import enum
import pickle
from typing import Annotated, Any, Literal

import msgspec
import pytest

from mqhook.errors import ConfigError
from mqhook.schema import (
    ByteSize,
    Duration,
    FieldInvalid,
    convert,
    dec_hook,
    decode_json,
    enc_hook,
    encode_json,
    explain,
)

# -- value types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("15s", 15.0),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        (" 10 S ", 10.0),
        (3, 3.0),
        (0.25, 0.25),
    ],
)
def test_duration_keeps_seconds_and_what_was_written(written: Any, seconds: float) -> None:
    d = Duration(written)
    assert d.seconds == seconds and type(d.seconds) is float
    assert d.written == written and str(d) == str(written)
    assert repr(d) == f"Duration({written!r})"


@pytest.mark.parametrize(
    ("written", "size"), [("256MB", 256 * 1024**2), ("64KB", 65536), ("1GB", 1024**3), ("512B", 512), ("7", 7), (0, 0)]
)
def test_byte_size_keeps_bytes_and_what_was_written(written: Any, size: int) -> None:
    b = ByteSize(written)
    assert b.bytes == size and type(b.bytes) is int
    assert b.written == written


@pytest.mark.parametrize(
    "written", ["15", "-1s", "1d", "", "inf", float("inf"), float("nan"), 10**400, -0.5, True, None, [1]]
)
def test_duration_rejects(written: Any) -> None:
    with pytest.raises(FieldInvalid) as info:
        Duration(written)
    assert info.value.field == "" and info.value.value is written
    assert info.value.expected == "a duration such as '15s', '500ms', '2m', '1h' or a number of seconds"


@pytest.mark.parametrize("written", ["1TB", "1.5MB", "-1KB", -1, 1.0, False, ""])
def test_byte_size_rejects(written: Any) -> None:
    with pytest.raises(FieldInvalid, match="expected a byte size such as '256MB'"):
        ByteSize(written)


def test_equal_by_amount_immutable_hashable_copyable() -> None:
    assert Duration("1m") == Duration(60) == Duration("60000ms")
    assert Duration(1) != ByteSize(1) and Duration(1) != 1.0
    assert len({Duration("1s"), Duration(1), ByteSize("1KB"), ByteSize(1024)}) == 2
    d = Duration("15s")
    with pytest.raises(AttributeError):
        d.written = "1s"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        d.amount = 1.0  # type: ignore[misc]
    for clone in (copy.copy(d), copy.deepcopy(d), pickle.loads(pickle.dumps(d))):
        assert clone == d and clone.written == "15s"


class Short(Duration, gt=0, le="1m"):
    __slots__ = ()


class Big(ByteSize, ge="1KB"):
    __slots__ = ()


def test_bounded_subclasses_check_their_limits() -> None:
    assert Short("1ms").seconds == 0.001 and Short("60s").seconds == 60.0
    for bad, expected in [(0, "a duration > 0"), ("61s", "a duration <= 1m")]:
        with pytest.raises(FieldInvalid) as info:
            Short(bad)
        assert info.value.expected == expected
    with pytest.raises(FieldInvalid, match="expected a duration > 0 and <= 1m such as"):
        Short("soon")
    assert Big(1024).bytes == 1024
    with pytest.raises(FieldInvalid, match=r"expected a byte size >= 1KB$"):
        Big("1023B")


# -- hooks ----------------------------------------------------------------------------------------


class Level(enum.StrEnum):
    LOW = "low"
    HIGH = "high"

    @classmethod
    def _missing_(cls, value: object) -> Level | None:
        return cls.__members__.get(value.upper()) if isinstance(value, str) else None


class Inner(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    wait: Short = Short("1s")
    size: Big = Big("1KB")
    mode: Literal["zeta", "alpha"] = "zeta"
    level: Level = Level.LOW
    n: Annotated[int, msgspec.Meta(ge=1, le=9)] = 1
    m: Annotated[int, msgspec.Meta(ge=0)] = 0
    tag: str = "t"

    def __post_init__(self) -> None:
        if self.tag == "bad":
            raise FieldInvalid("tag", self.tag, "anything but 'bad'")


class Outer(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    inner: list[Inner] = msgspec.field(default_factory=list)


def test_hooks_round_trip_what_was_written() -> None:
    obj = {"name": "x", "inner": [{"wait": "500ms", "size": 2048}, {"wait": 30}]}
    out = convert(obj, Outer)
    assert out.inner[0].wait == Short("0.5s") and out.inner[1].size == Big("1KB")
    data = encode_json(out)
    assert msgspec.json.decode(data)["inner"][0] == {
        "wait": "500ms",
        "size": 2048,
        "mode": "zeta",
        "level": "low",
        "n": 1,
        "m": 0,
        "tag": "t",
    }
    assert decode_json(data, Outer) == out
    assert msgspec.to_builtins(out, enc_hook=enc_hook)["inner"][1]["wait"] == 30


def test_hooks_refuse_other_types() -> None:
    with pytest.raises(NotImplementedError):
        dec_hook(complex, "1j")
    with pytest.raises(NotImplementedError):
        enc_hook(1j)
    with pytest.raises(TypeError, match="Short is unsupported"):
        msgspec.json.encode(Inner())  # without enc_hook


# -- explain: PATH: VALUE is invalid; expected WHAT ---------------------------------------------------


def _explain(obj: Any, prefix: str = "$") -> str:
    with pytest.raises(msgspec.ValidationError) as info:
        convert(obj, Outer)
    return explain(info.value, obj, Outer, prefix)


@pytest.mark.parametrize(
    ("inner", "expected"),
    [
        ({"wait": "2m"}, "$.inner[0].wait: '2m' is invalid; expected a duration <= 1m"),
        (
            {"wait": "x"},
            "$.inner[0].wait: 'x' is invalid; expected a duration > 0 and <= 1m such as '15s', '500ms', '2m', '1h' "
            "or a number of seconds",
        ),
        ({"size": 1}, "$.inner[0].size: 1 is invalid; expected a byte size >= 1KB"),
        ({"mode": "beta"}, "$.inner[0].mode: 'beta' is invalid; expected one of zeta, alpha"),
        ({"level": "mid"}, "$.inner[0].level: 'mid' is invalid; expected one of low, high (any case)"),
        ({"n": 0}, "$.inner[0].n: 0 is invalid; expected an integer from 1 to 9"),
        ({"n": 10}, "$.inner[0].n: 10 is invalid; expected an integer from 1 to 9"),
        ({"m": -1}, "$.inner[0].m: -1 is invalid; expected an integer >= 0"),
        ({"n": "1"}, "$.inner[0].n: '1' is invalid; expected `int`, got `str`"),
        ({"tag": "bad"}, "$.inner[0].tag: 'bad' is invalid; expected anything but 'bad'"),
        ({"tga": 1}, "$.inner[0].tga: unknown setting; expected one of: wait, size, mode, level, n, m, tag"),
    ],
)
def test_explain(inner: dict[str, Any], expected: str) -> None:
    assert _explain({"name": "x", "inner": [inner]}) == expected


def test_explain_at_the_root_and_with_a_prefix() -> None:
    assert _explain({"inner": []}) == "$.name: missing; this setting is required"
    assert _explain({"name": 1}, "--flag") == "--flag.name: 1 is invalid; expected `str`, got `int`"
    assert _explain([]) == "$: [] is invalid; expected `object`, got `array`"
    assert Inner(level=Level("HIGH")).level is Level.HIGH


def test_field_invalid_is_a_config_error() -> None:
    exc = FieldInvalid("a.b", 3, "a small number")
    assert isinstance(exc, ConfigError) and isinstance(exc, ValueError)
    assert str(exc) == "a.b: 3 is invalid; expected a small number"
    assert str(FieldInvalid("", "x", "y")) == "'x' is invalid; expected y"
