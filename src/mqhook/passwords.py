"""Salted slow password hashes: scrypt from the standard library's ``hashlib``.

A stored hash reads ``scrypt$N$r$p$SALT$HASH`` (salt and hash in unpadded URL-safe base64), so
its cost travels with it and can be raised later without invalidating old hashes. N = 2**14,
r = 8, p = 1 (16 MiB, ~40 ms here) is the cost OWASP lists for scrypt. Used for the admin
server's users (``mqhook.admin.store``) and meant for MQTT password files too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

__all__ = ["hash_password", "verify_password"]

SCHEME = "scrypt"
COST = (1 << 14, 8, 1)  # N, r, p
DKLEN = 32
SALT_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=dklen)


def hash_password(password: str) -> str:
    """A new salted hash of ``password``."""
    salt = os.urandom(SALT_BYTES)
    n, r, p = COST
    return f"{SCHEME}${n}${r}${p}${_b64(salt)}${_b64(_derive(password, salt, n, r, p, DKLEN))}"


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` hashes to ``stored``; False for a wrong password or a malformed hash."""
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != SCHEME:
            return False
        want = _unb64(expected)
        got = _derive(password, _unb64(salt), int(n), int(r), int(p), len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)
