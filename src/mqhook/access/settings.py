"""``[authn]`` and ``[authz]``: the settings of authentication and authorization."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["AuthnConfig", "AuthzConfig"]


class AuthnConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # None: true while every MQTT listener binds a loopback address, and start-up is refused when one
    # is open to the network; say true or false to decide yourself.
    allow_anonymous: bool | None = None
    password_file: str | None = None  # `mqhook passwd --file FILE add USER`; mosquitto's $6$/$7$ hashes are read too
    # A client id whose session belongs to one user cannot be taken over by another (CONNACK 0x87).
    clientid_bound_to_username: bool = False


class AuthzConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    acl_file: str | None = None  # TOML [[rules]], first match wins; reloaded on SIGHUP
    no_match: Literal["allow", "deny"] = "allow"  # when no rule matches (or there is no file)
