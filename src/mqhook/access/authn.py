"""``FileAuthenticator``: CONNECTs checked against the password file (``passwd``).

- No user name: allowed as anonymous when ``allow_anonymous``, else CONNACK 0x87 (3.1.1: 5).
- A user name: with a password file, the password must match its hash (else 0x86; 3.1.1: 4); an
  unknown name costs the same hashing as a wrong password, so names cannot be probed by timing.
  Without a password file, user names are not checked (anonymous rules apply to everyone).
- A slow hash never runs on the broker's thread: ``offload(fn, args, on_done)`` runs it elsewhere
  and the connection holds what its client sends meanwhile (``mqhook.broker.auth``). A user's last
  successful password is remembered as a SHA-256, so a client that reconnects is answered at once.
- Failed logins are slowed per source address: after ``MAX_FAILURES`` within ``FAILURE_WINDOW``
  seconds, further CONNECTs from that address are refused without checking, after ``SLOW_DOWN``
  seconds (on the broker's clock), until the window passes. Counted in the broker's
  ``limits["login_failures_per_address"]``.
- A user name taken from a verified client certificate (a TLS listener's ``peer_cert_as_username``)
  is authenticated by that certificate; the password file, if it lists the name, says whether it
  is a superuser.
- ``clientid_bound_to_username``: a client id whose session belongs to another user is refused
  (0x87), so one user cannot take over another's session and read its queued messages.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mqhook.access.passwd import PasswordFile, verify
from mqhook.access.settings import AuthnConfig
from mqhook.broker.auth import ANONYMOUS, Authenticator, Authn
from mqhook.mqtt import reason as R
from mqhook.passwords import hash_password

if TYPE_CHECKING:
    from mqhook.broker.connection import Connection

__all__ = ["FileAuthenticator", "Offload"]

log = logging.getLogger("mqhook.access")

MAX_FAILURES = 5
FAILURE_WINDOW = 60.0
SLOW_DOWN = 1.0
MAX_ADDRESSES = 10_000  # addresses with failures remembered before the expired ones are dropped

Offload = Callable[[Callable[..., Any], tuple[Any, ...], Callable[[Any], None]], None]

BAD_CREDENTIALS = Authn(R.BAD_USER_NAME_OR_PASSWORD, False, False)
NOT_AUTHORIZED_ANONYMOUS = Authn(R.NOT_AUTHORIZED, False, True)
NOT_AUTHORIZED = Authn(R.NOT_AUTHORIZED, False, False)
USER = Authn(R.SUCCESS, False, False)
SUPERUSER = Authn(R.SUCCESS, True, False)


class FileAuthenticator(Authenticator):
    def __init__(self, config: AuthnConfig, allow_anonymous: bool, offload: Offload, clock: Any) -> None:
        self.config = config
        self.allow_anonymous = allow_anonymous
        self.offload = offload
        self.clock = clock
        self.passwords = PasswordFile.load(config.password_file) if config.password_file else None
        self._remembered: dict[str, tuple[str, bytes]] = {}  # user -> (stored hash, sha256 of the password)
        self._failures: dict[str, tuple[int, float]] = {}  # address -> (failures, first in window)
        self._dummy = hash_password("no user has this password")

    def reload(self) -> None:
        """Read the password file again (SIGHUP); a bad file raises ConfigError and changes nothing."""
        if self.config.password_file:
            self.passwords = PasswordFile.load(self.config.password_file)
            self._remembered.clear()

    def authenticate(self, conn: Connection, password: bytes | None, done: Callable[[Authn], None]) -> Authn | None:
        username = conn.username
        if self.config.clientid_bound_to_username:
            session = conn.broker.sessions.get(conn.client_id)
            if session is not None and session.client_info[0] != username:
                return NOT_AUTHORIZED
        if not username:
            return ANONYMOUS if self.allow_anonymous else NOT_AUTHORIZED_ANONYMOUS
        if conn.username_from_cert:  # a certificate the TLS handshake verified: no password is asked
            entry = self.passwords.users.get(username) if self.passwords is not None else None
            return SUPERUSER if entry is not None and entry[1] else USER
        passwords = self.passwords
        if passwords is None:
            return ANONYMOUS if self.allow_anonymous else NOT_AUTHORIZED
        address = conn.peerhost
        now = self.clock.time()
        count, since = self._failures.get(address, (0, now))
        if now - since > FAILURE_WINDOW:
            count, since = 0, now
            self._failures.pop(address, None)
        if count >= MAX_FAILURES:
            conn.stats.limits["login_failures_per_address"] += 1
            self.clock.call_later(SLOW_DOWN, done, BAD_CREDENTIALS)
            return None
        entry = passwords.users.get(username)
        text = (password or b"").decode("utf-8", "replace")
        if entry is not None and password is not None:
            known = self._remembered.get(username)
            if known is not None and known[0] == entry[0] and hmac.compare_digest(known[1], _sha(password)):
                return SUPERUSER if entry[1] else USER
        stored = entry[0] if entry is not None and password is not None else self._dummy

        def decided(ok: bool) -> None:
            if ok and entry is not None and password is not None:
                self._remembered[username] = (entry[0], _sha(password))
                done(SUPERUSER if entry[1] else USER)
                return
            now = self.clock.time()
            failures, first = self._failures.get(address, (0, now))
            self._failures[address] = (failures + 1, first)
            if len(self._failures) > MAX_ADDRESSES:  # bounded: forget the windows that are over
                self._failures = {a: v for a, v in self._failures.items() if now - v[1] <= FAILURE_WINDOW}
            done(BAD_CREDENTIALS)

        self.offload(verify, (text, stored), decided)
        return None


def _sha(password: bytes) -> bytes:
    return hashlib.sha256(password).digest()
