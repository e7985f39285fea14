"""The MQTT password file: one ``username:hash`` line per user, ``:superuser`` after a superuser's.

Hashes written by ``mqhook passwd`` are salted scrypt (``mqhook.passwords``). mosquitto's are read
too, so its users can bring their file: ``$7$`` (PBKDF2-HMAC-SHA512, ``mosquitto_passwd`` 2.x) and
``$6$`` (salted SHA-512, 1.x). Blank lines and lines starting with ``#`` are ignored. The file is
written whole to a temporary file and renamed over the old one, readable by its owner only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import tempfile
from pathlib import Path

from mqhook.errors import ConfigError
from mqhook.passwords import hash_password, verify_password

__all__ = ["PasswordFile", "verify"]

SUPERUSER = "superuser"


def verify(password: str, stored: str) -> bool:
    """``password`` against a stored hash of any supported kind; False for an unknown kind."""
    if stored.startswith("$7$"):
        return _verify_mosquitto7(password, stored)
    if stored.startswith("$6$"):
        return _verify_mosquitto6(password, stored)
    return verify_password(password, stored)


def _verify_mosquitto7(password: str, stored: str) -> bool:
    try:
        _, _, iterations, salt, expected = stored.split("$")
        want = base64.b64decode(expected)
        got = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(iterations), len(want))
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(got, want)


def _verify_mosquitto6(password: str, stored: str) -> bool:
    try:
        _, _, salt, expected = stored.split("$")
        want = base64.b64decode(expected)
        got = hashlib.sha512(password.encode() + base64.b64decode(salt)).digest()
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(got, want)


class PasswordFile:
    """The users of one file: name -> (hash, superuser)."""

    def __init__(self, users: dict[str, tuple[str, bool]] | None = None) -> None:
        self.users: dict[str, tuple[str, bool]] = users or {}

    @classmethod
    def load(cls, path: str | os.PathLike[str], field: str = "$.authn.password_file") -> PasswordFile:
        """Read a file; a ConfigError names the file, the line and what was expected."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"{field}: {str(path)!r} cannot be read ({exc.strerror}); expected a password file"
            ) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{field}: {str(path)!r} is not UTF-8 text; expected a password file") from exc
        users: dict[str, tuple[str, bool]] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, rest = line.partition(":")
            hashed, _, flags = rest.partition(":")
            if not sep or not name or not hashed or flags not in ("", SUPERUSER):
                raise ConfigError(
                    f"{field}: {str(path)!r} line {number} is invalid; expected USER:HASH or USER:HASH:superuser"
                )
            users[name] = (hashed, flags == SUPERUSER)
        return cls(users)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically (a reader sees the old file or the new one), mode 0600."""
        target = Path(path)
        lines = [f"{name}:{hashed}{':' + SUPERUSER if superuser else ''}\n" for name, (hashed, superuser) in
                 sorted(self.users.items())]  # fmt: skip
        fd, tmp = tempfile.mkstemp(prefix=".passwd-", dir=target.parent or ".")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.writelines(lines)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def set(self, name: str, password: str, superuser: bool = False) -> None:
        if not name or ":" in name or "\n" in name:
            raise ValueError(f"user name {name!r}: expected a non-empty name without ':' or a line break")
        self.users[name] = (hash_password(password), superuser)

    def remove(self, name: str) -> bool:
        return self.users.pop(name, None) is not None
