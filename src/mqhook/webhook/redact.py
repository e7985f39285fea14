"""Secrets of a webhook config, and how they are hidden wherever a config or an error is shown.

A webhook holds three kinds of secret: ``secret`` (the signing key), the values of
``SECRET_HEADERS`` (``Authorization`` and the like) and the password of the URL's userinfo
(``http://user:PASSWORD@host/``). None of them is ever written to a log line, a config error,
``last_error``, ``/api/v1/stats`` or an answer of the admin API:

- ``url_without_password`` is THE function for a URL shown anywhere (it works on any string,
  valid URL or not, with or without templates): ``http://user:******@host/``;
- ``config_value`` is what a config error prints for a field's value (``mqhook.schema.explain``
  calls it through ``WebhookConfig.explain_value``): ``<redacted>`` for a secret;
- the admin API (``mqhook.admin.webhooks``) answers ``MASK`` for ``secret`` and secret headers.

Everything here runs when a config is checked or an error is recorded, never per event.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "HIDDEN",
    "MASK",
    "SECRET_HEADERS",
    "config_value",
    "is_secret_header",
    "password_span",
    "url_password",
    "url_with_password",
    "url_without_password",
]

MASK = "******"  # what the admin API answers for a secret, and what a URL shows for its password
HIDDEN = "<redacted>"  # what a config error prints for a secret value
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})


def is_secret_header(name: object) -> bool:
    return isinstance(name, str) and name.lower() in SECRET_HEADERS


def password_span(url: str) -> tuple[int, int] | None:
    """(start, end) of the password in ``url``'s userinfo, or None when it has none. Parsed by hand
    (not ``urlsplit``) so that a URL that does not parse, or has templates, is handled too; the
    authority is taken to end at the first '/' only, so that a password holding a raw '?' or '#'
    (an invalid URL, refused with it shown) is hidden whole."""
    scheme_end = url.find("://")
    start = scheme_end + 3 if scheme_end >= 0 else 0
    end = url.find("/", start)
    at = url.rfind("@", start, end if end >= 0 else len(url))
    if at < 0:
        return None
    colon = url.find(":", start, at)
    if colon < 0:
        return None
    return colon + 1, at


def url_password(url: str) -> str | None:
    """The password of ``url``'s userinfo as written (percent-encoded), or None."""
    span = password_span(url)
    return None if span is None else url[span[0] : span[1]]


def url_with_password(url: str, password: str) -> str:
    """``url`` with its userinfo password replaced by ``password`` (unchanged if it has none)."""
    span = password_span(url)
    return url if span is None else url[: span[0]] + password + url[span[1] :]


def url_without_password(url: str) -> str:
    """``url`` with its password shown as ``MASK``: 'http://u:pw@h/x' -> 'http://u:******@h/x'."""
    return url_with_password(url, MASK)


def _hide_headers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (HIDDEN if is_secret_header(k) else v) for k, v in value.items()}
    return value if isinstance(value, str | int | float | bool | None) else HIDDEN


def config_value(field: str, value: Any) -> Any:
    """What a config error about webhook field ``field`` ('secret', 'url', 'headers',
    'headers.Authorization', 'events[0]'...) may print of ``value``."""
    head, dot, rest = field.partition(".")
    head = head.split("[", 1)[0]
    if head == "secret":
        return HIDDEN
    if head == "url":
        if isinstance(value, str):
            return url_without_password(value)
        return value if isinstance(value, int | float | bool | None) else HIDDEN
    if head == "headers":
        if not dot:
            return _hide_headers(value)
        if is_secret_header(rest):
            return HIDDEN
    return value
