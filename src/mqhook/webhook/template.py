"""``${...}`` templates for a webhook's URL path, header values and body.

EMQX semantics (``emqx_template`` / ``emqx_placeholder``), followed exactly:

- ``${field}`` and nested ``${a.b.c}``; a string field holding JSON (``payload``) is decoded on
  demand, once per event, so ``${payload.a.b}`` works when the payload is JSON;
- ``${.}`` is the whole event as JSON; ``$${`` is a literal ``${``;
- strings are inserted raw (no quotes, no escaping), numbers and booleans as text, objects and
  lists as compact JSON, JSON null as ``null``, and a missing field as ``undefined``.

Added here (EMQX issues #3786 and #5442: a quote in the payload breaks a hand-written JSON body):
``${json:field}`` inserts the value JSON-encoded, strings quoted and escaped, so
``{"c": ${json:payload}}`` is always valid JSON. A missing field gives ``"undefined"``
(a JSON string, matching EMQX's missing-value convention), never bare ``undefined``.

Templates are compiled once per webhook; a template without variables renders to a constant.
Which variables a webhook's templates may name (fields of its events) is checked by the config
model (``mqhook.webhook.variables``); a compiled template renders whatever path it holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec

from mqhook.errors import ConfigError

_TOKEN_RE = re.compile(r"\$\$\{|\$\{([^{}]*)\}")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


class TemplateError(ConfigError, ValueError):
    """A template that cannot be compiled; a ValueError too, so msgspec reports it with its field."""


class _Missing:
    """The value of a field that does not exist; renders as EMQX's ``undefined``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Context:
    """One event as templates see it. Built from the event's JSON bytes (``metadata`` included)
    or from a dict; the bytes are decoded once, on the first variable that needs them."""

    __slots__ = ("_data", "_decoded", "_raw")

    def __init__(self, raw: bytes | None = None, data: dict[str, Any] | None = None) -> None:
        self._raw = raw
        self._data = data
        self._decoded: dict[tuple[str, ...], Any] | None = None

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = _decode(self._raw or b"{}")
        return self._data

    def whole(self) -> str:
        """``${.}``: the event JSON, exactly the bytes a template-less body would carry."""
        if self._raw is not None:
            return self._raw.decode("utf-8")
        return _encode(self._data).decode("utf-8")

    def lookup(self, path: tuple[str, ...]) -> Any:
        value: Any = self.data
        for i, key in enumerate(path):
            if isinstance(value, str):
                value = self._json_in(path[:i], value)
            if isinstance(value, dict):
                value = value.get(key, MISSING)
            elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            else:
                return MISSING
        return value

    def _json_in(self, prefix: tuple[str, ...], text: str) -> Any:
        """A string field read as JSON (EMQX decodes ``payload`` lazily); cached per field."""
        if self._decoded is None:
            self._decoded = {}
        try:
            return self._decoded[prefix]
        except KeyError:
            pass
        try:
            value = _decode(text)
        except msgspec.DecodeError:
            value = MISSING
        self._decoded[prefix] = value
        return value


def render_text(value: Any) -> str:
    """EMQX's rendering of a value into text."""
    if type(value) is str:
        return value
    if value is MISSING:
        return "undefined"
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return str(value)
    return _encode(value).decode("utf-8")


def render_json(value: Any) -> str:
    """``${json:...}``: the value as a JSON document (strings quoted and escaped)."""
    if value is MISSING:
        return '"undefined"'
    return _encode(value).decode("utf-8")


class Var:
    """One ``${...}``: a field path (empty for ``${.}``) and whether to JSON-encode it."""

    __slots__ = ("as_json", "path")

    def __init__(self, path: tuple[str, ...], as_json: bool) -> None:
        self.path = path
        self.as_json = as_json

    def render(self, ctx: Context) -> str:
        if not self.path:
            return ctx.whole()
        value = ctx.lookup(self.path)
        return render_json(value) if self.as_json else render_text(value)

    def __repr__(self) -> str:
        return "${" + ("json:" if self.as_json else "") + (".".join(self.path) or ".") + "}"


class Template:
    """A compiled template: literal strings and ``Var`` parts."""

    __slots__ = ("parts", "source", "static")

    def __init__(self, source: str, parts: list[str | Var]) -> None:
        self.source = source
        self.parts = parts
        self.static: str | None = None
        if not any(isinstance(p, Var) for p in parts):
            self.static = "".join(p for p in parts if isinstance(p, str))

    @property
    def variables(self) -> list[Var]:
        return [p for p in self.parts if isinstance(p, Var)]

    def render(self, ctx: Context, escape: Callable[[str], str] | None = None) -> str:
        """Render with ``ctx``; ``escape`` (e.g. URL quoting) is applied to each variable's text."""
        if self.static is not None:
            return self.static
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif escape is None:
                out.append(part.render(ctx))
            else:
                out.append(escape(part.render(ctx)))
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


def _parse_var(expr: str) -> Var:
    text = expr.strip()
    as_json = text.startswith("json:")
    if as_json:
        text = text[5:].strip()
    if text == ".":
        return Var((), as_json)
    path = tuple(text.split("."))
    if not text or any(not key for key in path):
        expected = "${field}, ${a.b}, ${.} or ${json:field}"
        raise TemplateError(f"bad variable ${{{expr}}}: expected {expected}")
    return Var(path, as_json)


def _check_literal(text: str) -> None:
    if "${" in text:
        raise TemplateError("unterminated '${'; write '$${' for a literal '${'")


def compile_template(source: str) -> Template:
    """Parse ``source``; raises TemplateError on an unterminated ``${`` or an empty variable."""
    parts: list[str | Var] = []
    literal: list[str] = []
    pos = 0
    for m in _TOKEN_RE.finditer(source):
        _check_literal(source[pos : m.start()])
        literal.append(source[pos : m.start()])
        pos = m.end()
        if m.group(1) is None:  # "$${" -> a literal "${"
            literal.append("${")
            continue
        parts.append("".join(literal))
        literal = []
        parts.append(_parse_var(m.group(1)))
    _check_literal(source[pos:])
    literal.append(source[pos:])
    parts.append("".join(literal))
    return Template(source, [p for p in parts if p != ""])
