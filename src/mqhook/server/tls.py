"""TLS for the ``tls`` and ``wss`` listeners: the server context, and the handshake of each socket.

The context (``server_context``) is the standard library's: TLS 1.2 at least, the listener's
certificate chain and key, and for ``verify = "verify_peer"`` its CA file, a client certificate
being asked for (``CERT_OPTIONAL``) or required (``fail_if_no_peer_cert``: ``CERT_REQUIRED``). A
file that does not load stops start-up with a ``ConfigError`` naming the field.

Each accepted socket gets the event loop's own TLS protocol (uvloop's, in Cython) around the MQTT
protocol, exactly as ``create_server(ssl=...)`` would make it, with one difference: ``TlsServer``
keeps the handshake's waiter. With ``ssl=`` a failed handshake (a wrong CA, an expired or missing
client certificate, a port scanner) is dropped without a word to anyone; here it is counted on the
listener (``refused["tls_handshake"]``) and logged with the peer and the reason. The handshake is
bounded by ``mqtt.idle_timeout``, like the wait for a CONNECT. (``loop.start_tls`` on an accepted
socket is no alternative: uvloop starts reading before it can run, and the ClientHello is lost.)
Once the handshake is done the MQTT protocol (plain or WebSocket) gets ``connection_made`` with the
TLS transport, which it drives as it drives a TCP one: backpressure both ways, ``peername`` and
``sockname`` of the TCP socket underneath, ``peercert`` for verify_peer listeners.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import logging
import ssl
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from mqhook.errors import ConfigError

if TYPE_CHECKING:
    from mqhook.config import ListenerConfig
    from mqhook.server.listeners import ListenerStats

__all__ = ["TlsServer", "server_context"]

log = logging.getLogger("mqhook.server")


class _Encrypted(Exception):
    """The key file asked for a passphrase."""


def _no_passphrase() -> str:
    raise _Encrypted


def server_context(settings: ListenerConfig, at: str) -> ssl.SSLContext:
    """The listener's server-side context; a ConfigError naming the field when a file does not load."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION
    certfile, keyfile = settings.certfile or "", settings.keyfile or ""
    try:
        ctx.load_cert_chain(certfile, keyfile, password=_no_passphrase)
    except _Encrypted:
        raise ConfigError(
            f"{at}.keyfile: {keyfile!r} is invalid; expected an unencrypted PEM private key (it asks for a passphrase)"
        ) from None
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise ConfigError(
                f"{at}.keyfile: {keyfile!r} is invalid; expected the private key of {at}.certfile {certfile!r}"
            ) from exc
        raise ConfigError(
            f"{at}.certfile: {certfile!r} (with {at}.keyfile {keyfile!r}) is invalid; expected a PEM certificate "
            f"chain and its PEM private key ({exc.reason or exc})"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"{at}.certfile: {certfile!r} is invalid; expected a readable PEM file ({exc})") from exc
    if settings.cacertfile:
        try:
            ctx.load_verify_locations(cafile=settings.cacertfile)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"{at}.cacertfile: {settings.cacertfile!r} is invalid; expected PEM CA certificates ({exc})"
            ) from exc
    if settings.verify == "verify_peer":
        ctx.verify_mode = ssl.CERT_REQUIRED if settings.fail_if_no_peer_cert else ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _ssl_protocol_class(loop: asyncio.AbstractEventLoop) -> type:
    """The event loop's own TLS protocol: uvloop's (Cython) under uvloop, asyncio's otherwise."""
    try:
        import uvloop
        from uvloop.loop import SSLProtocol as UvSSLProtocol  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - uvloop is a hard dependency
        return _counted(asyncio.sslproto.SSLProtocol)
    if isinstance(loop, uvloop.Loop):
        return _counted(UvSSLProtocol)
    return _counted(asyncio.sslproto.SSLProtocol)


def _counted(base: type) -> type:
    """``base`` noting the peer's address at accept, for the log line of a failed handshake."""

    class Tls(base):
        peer = "undefined"

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            info = transport.get_extra_info("peername")
            if info:
                self.peer = f"{info[0]}:{info[1]}"
            super().connection_made(transport)

    return Tls


class TlsServer:
    """The protocol factory of a TLS listener: each accepted socket gets the loop's TLS protocol
    around ``make()``'s, and a waiter that says how its handshake ended."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        context: ssl.SSLContext,
        timeout: float,
        stats: ListenerStats,
        make: Callable[[], asyncio.Protocol],
    ) -> None:
        self.loop = loop
        self.context = context
        self.timeout = timeout
        self.stats = stats
        self.make = make
        self._cls = _ssl_protocol_class(loop)

    def __call__(self) -> asyncio.BaseProtocol:
        waiter = self.loop.create_future()
        tls = self._cls(
            self.loop, self.make(), self.context, waiter, server_side=True, ssl_handshake_timeout=self.timeout
        )
        waiter.add_done_callback(partial(self._handshake_done, tls))
        return tls

    def _handshake_done(self, tls: Any, waiter: asyncio.Future[None]) -> None:
        if waiter.cancelled():
            return
        exc = waiter.exception()
        if exc is None:
            return
        # The TLS protocol has closed the socket already; the MQTT protocol never saw it.
        self.stats.refused["tls_handshake"] += 1
        reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc) or repr(exc)
        log.info("TLS handshake with %s on listener %s failed: %s", tls.peer, self.stats.name, reason)
