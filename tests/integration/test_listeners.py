"""Listeners: ``mqtt.bind`` beside ``[[listeners]]`` of type tcp, tls, ws and wss, with real clients.

The test makes its own PKI with ``cryptography`` (a CA, a server certificate for 127.0.0.1, client
certificates: a good one, an expired one, one from another CA). Clients: ``mosquitto_pub`` /
``mosquitto_sub`` over TLS (``--cafile``, ``--cert``/``--key``), paho-mqtt with
``transport="websockets"`` over ws and wss, and a raw WebSocket client built on wsproto for what a
library client does not send (frames split or joined at will, text frames, upgrades without the
``mqtt`` subprotocol). The broker's side is read from ``/api/v1/stats`` (``listeners``), ``/metrics``
and the webhook events.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from conftest import run_cli, wait_until

from . import rawmqtt as rm
from .receiver import Receiver, Receivers

pytestmark = pytest.mark.timeout(60)
MOSQ = shutil.which("mosquitto_pub") and shutil.which("mosquitto_sub")
needs_mosquitto = pytest.mark.skipif(not MOSQ, reason="mosquitto-clients not installed")
WAIT = 5.0


# -- PKI ---------------------------------------------------------------------------------------------


@dataclass
class Pki:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    expired_cert: Path
    expired_key: Path
    other_ca: Path
    other_client_cert: Path
    other_client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, key: Any, cert: x509.Certificate) -> tuple[Path, Path]:
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path.with_suffix(".pem"), path.with_suffix(".key")


def _ca(cn: str) -> tuple[Any, x509.Certificate]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    cn: str, ca_key: Any, ca_cert: x509.Certificate, server: bool, expired: bool = False
) -> tuple[Any, x509.Certificate]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    start, end = (
        (now - datetime.timedelta(days=10), now - datetime.timedelta(days=1))
        if expired
        else (
            now - datetime.timedelta(days=1),
            now + datetime.timedelta(days=30),
        )
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return key, builder.sign(ca_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _ca("mqhook test CA")
    ca, _ = _write(d / "ca", ca_key, ca_cert)
    server_cert, server_key = _write(d / "server", *_leaf("127.0.0.1", ca_key, ca_cert, server=True))
    client_cert, client_key = _write(d / "client", *_leaf("client-1", ca_key, ca_cert, server=False))
    expired_cert, expired_key = _write(d / "expired", *_leaf("client-old", ca_key, ca_cert, False, expired=True))
    other_key, other_cert = _ca("another CA")
    other_ca, _ = _write(d / "other-ca", other_key, other_cert)
    oc_cert, oc_key = _write(d / "other-client", *_leaf("intruder", other_key, other_cert, server=False))
    return Pki(
        d, ca, server_cert, server_key, client_cert, client_key, expired_cert, expired_key, other_ca, oc_cert, oc_key
    )


# -- helpers -------------------------------------------------------------------------------------------


def tls_listener(pki: Pki, name: str, kind: str = "tls", **extra: Any) -> str:
    lines = [
        "[[listeners]]",
        f'name = "{name}"',
        f'type = "{kind}"',
        'bind = "127.0.0.1:0"',
        f'certfile = "{pki.server_cert}"',
        f'keyfile = "{pki.server_key}"',
    ]
    for key, value in extra.items():
        lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def plain_listener(name: str, kind: str, **extra: Any) -> str:
    lines = ["[[listeners]]", f'name = "{name}"', f'type = "{kind}"', 'bind = "127.0.0.1:0"']
    for key, value in extra.items():
        lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return f'"{value}"'


def listeners(b: Any) -> dict[str, Any]:
    return b.stats()["listeners"]


def port_of(b: Any, name: str) -> int:
    return int(listeners(b)[name]["bind"].rpartition(":")[2])


def client_context(pki: Pki, cafile: Path | None = None, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile or pki.ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


class Paho:
    """A paho client over any transport; every wait bounded."""

    def __init__(
        self,
        port: int,
        client_id: str,
        transport: str = "tcp",
        protocol: int = mqtt.MQTTv5,
        tls: ssl.SSLContext | None = None,
        path: str = "/mqtt",
        expect_rc: int | None = 0,
    ) -> None:
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            transport=transport,  # type: ignore[arg-type]
            reconnect_on_failure=False,
        )
        if transport == "websockets":
            self.c.ws_set_options(path=path)
        if tls is not None:
            self.c.tls_set_context(tls)
        self.lock = threading.Condition()
        self.messages: list[tuple[str, bytes]] = []
        self.rc: int | None = None
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda *a: self.connected.set()
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        assert self.connected.wait(WAIT), f"{client_id}: no CONNACK"
        if expect_rc is not None:
            assert self.rc == expect_rc, f"{client_id}: CONNACK {self.rc}, expected {expect_rc}"

    def _on_connect(self, c: Any, ud: Any, flags: Any, rc: Any, props: Any) -> None:
        self.rc = rc.value if hasattr(rc, "value") else int(rc)
        self.connected.set()

    def _on_message(self, c: Any, ud: Any, m: Any) -> None:
        with self.lock:
            self.messages.append((m.topic, bytes(m.payload)))
            self.lock.notify_all()

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.subscribed.clear()
        self.c.subscribe(topic, qos)
        assert self.subscribed.wait(WAIT), "no SUBACK"

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.c.publish(topic, payload, qos)
        info.wait_for_publish(WAIT)

    def wait_message(self, topic: str, timeout: float = WAIT) -> bytes:
        with self.lock:
            ok = self.lock.wait_for(lambda: any(t == topic for t, _ in self.messages), timeout)
            assert ok, f"no message on {topic}; got {self.messages}"
            return next(p for t, p in self.messages if t == topic)

    def close(self) -> None:
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()


@pytest.fixture
def pahos() -> Iterator[list[Paho]]:
    made: list[Paho] = []
    yield made
    for p in made:
        p.close()


class RawWs:
    """A WebSocket client on wsproto over a real socket (optionally TLS): frames exactly as asked."""

    def __init__(
        self,
        port: int,
        path: str = "/mqtt",
        subprotocols: tuple[str, ...] = ("mqtt",),
        tls: ssl.SSLContext | None = None,
        upgrade: bool = True,
    ) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.sock: socket.socket = tls.wrap_socket(sock, server_hostname="127.0.0.1") if tls else sock
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.buf = bytearray()  # MQTT bytes received
        self.closed: CloseConnection | None = None
        self.rejected: RejectConnection | None = None
        self.reject_body = b""
        if upgrade:
            self.sock.sendall(self.ws.send(Request(host="127.0.0.1", target=path, subprotocols=list(subprotocols))))
            self._until(lambda: self.accepted is not None or self.rejected is not None)

    accepted: AcceptConnection | None = None

    def _pump(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.ws.receive_data(None)
        else:
            self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted = event
            elif isinstance(event, RejectConnection):
                self.rejected = event
            elif isinstance(event, RejectData):
                self.reject_body += event.data
            elif isinstance(event, BytesMessage):
                self.buf += event.data
            elif isinstance(event, CloseConnection):
                self.closed = event
        return bool(data)

    def _until(self, predicate: Any, timeout: float = WAIT) -> None:
        self.sock.settimeout(timeout)
        while not predicate():
            if not self._pump():
                break

    def send_frames(self, *parts: bytes, one_message: bool = False) -> None:
        """Each part as one binary frame; ``one_message``: as the fragments of one message."""
        out = b""
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            out += self.ws.send(Message(data=part, message_finished=last if one_message else True))
        self.sock.sendall(out)

    def send_text(self, text: str) -> None:
        self.sock.sendall(self.ws.send(TextMessage(data=text)))

    def packet(self) -> rm.Packet:
        """The next MQTT packet (from however many frames)."""

        def parsed() -> rm.Packet | None:
            reader = rm.RawClient.__new__(rm.RawClient)
            reader.buf = self.buf
            return reader._try_parse()

        got: list[rm.Packet] = []

        def have() -> bool:
            if not got:
                pkt = parsed()
                if pkt is not None:
                    got.append(pkt)
            return bool(got) or self.closed is not None

        self._until(have)
        assert got, f"no MQTT packet; closed={self.closed}"
        return got[0]

    def wait_close(self) -> CloseConnection:
        self._until(lambda: self.closed is not None)
        assert self.closed is not None, "the broker did not close the WebSocket"
        return self.closed

    def close(self) -> None:
        self.sock.close()


# -- configuration -----------------------------------------------------------------------------------


def _run_config(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return run_cli(["run", "--config", str(path), "--data-dir", str(tmp_path / "data"), "--admin-bind", "127.0.0.1:0"])


def test_config_errors_name_the_field(tmp_path: Path, pki: Pki) -> None:
    cases = [
        (
            f'[[listeners]]\ntype = "tls"\nbind = "127.0.0.1:0"\ncertfile = "/x.pem"\nkeyfile = "{pki.server_key}"\n',
            "$.listeners[0].certfile: '/x.pem' is invalid; expected a readable PEM file",
        ),
        ('[[listeners]]\ntype = "wss"\nbind = "127.0.0.1:0"\n', "$.listeners[0].certfile: None is invalid"),
        ('[[listeners]]\ntype = "ws"\nbind = "127.0.0.1"\n', "$.listeners[0].bind: '127.0.0.1' is not a valid"),
        ('[[listeners]]\ntype = "quic"\nbind = "127.0.0.1:0"\n', "$.listeners[0].type: 'quic' is invalid"),
        (
            '[mqtt]\nbind = "127.0.0.1:18831"\n[[listeners]]\ntype = "ws"\nbind = "0.0.0.0:18831"\n',
            "$.listeners[0].bind: '0.0.0.0:18831' is already bound by $.mqtt.bind",
        ),
        (
            '[[listeners]]\ntype = "ws"\nbind = "127.0.0.1:18832"\n[[listeners]]\ntype = "tcp"\n'
            'bind = "127.0.0.1:18832"\n',
            "$.listeners[1].bind: '127.0.0.1:18832' is already bound by $.listeners[0].bind",
        ),
        (
            tls_listener(pki, "t", verify="verify_peer"),
            "$.listeners[0].cacertfile: None is invalid; expected a readable PEM file",
        ),
        (
            tls_listener(pki, "t", fail_if_no_peer_cert=True),
            "$.listeners[0].fail_if_no_peer_cert: true is invalid",
        ),
        (
            plain_listener("w", "tcp", path="/mqtt"),
            "$.listeners[0].path: '/mqtt' is invalid for type \"tcp\"",
        ),
        (plain_listener("w", "ws", path="mqtt"), "$.listeners[0].path: 'mqtt' is invalid"),
        (
            plain_listener("a", "ws") + plain_listener("a", "tcp"),
            "$.listeners[1].name: 'a' is already the name of $.listeners[0]",
        ),
        ('[mqtt]\nbind = ""\n', "$.mqtt.bind: '' is invalid"),
    ]
    for text, expected in cases:
        out = _run_config(tmp_path, text)
        assert out.returncode == 2, (text, out.returncode, out.stderr)
        assert expected in out.stderr, (text, out.stderr)


def test_a_key_that_is_not_the_certificates_stops_start_up_naming_keyfile(tmp_path: Path, pki: Pki) -> None:
    text = (
        f'[[listeners]]\ntype = "tls"\nbind = "127.0.0.1:0"\ncertfile = "{pki.server_cert}"\n'
        f'keyfile = "{pki.client_key}"\n'
    )
    out = _run_config(tmp_path, text)
    assert out.returncode == 2, out.stderr
    assert "$.listeners[0].keyfile:" in out.stderr and "expected the private key of" in out.stderr, out.stderr


def test_a_bind_in_use_stops_start_up_naming_the_field(tmp_path: Path, broker: Any) -> None:
    b = broker()
    text = f'[[listeners]]\ntype = "ws"\nbind = "127.0.0.1:{b.mqtt_port}"\n'
    out = _run_config(tmp_path, text)
    assert out.returncode == 1, out.stderr
    assert f"cannot listen for MQTT (ws) on 127.0.0.1:{b.mqtt_port} ($.listeners[0].bind)" in out.stderr, out.stderr


def test_mqtt_bind_empty_leaves_only_the_listeners(broker: Any, pahos: list[Paho], uid: str) -> None:
    b = broker(config='[mqtt]\nbind = ""\n' + plain_listener("ws-only", "ws"), extra_args=["--mqtt-bind", ""])
    ls = listeners(b)
    assert list(ls) == ["ws-only"]
    assert b.mqtt_port == port_of(b, "ws-only")  # the listening line's mqtt= is the first listener
    pahos.append(Paho(b.mqtt_port, uid, transport="websockets"))


# -- TLS ----------------------------------------------------------------------------------------------


def _mosq(tool: str, port: int, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool, "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _mosq_sub(port: int, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@needs_mosquitto
def test_mosquitto_clients_over_tls(broker: Any, pki: Pki, uid: str) -> None:
    b = broker(config=tls_listener(pki, "tls-a"))
    port = port_of(b, "tls-a")
    topic = f"{uid}/tls"
    sub = _mosq_sub(port, "--cafile", str(pki.ca), "-V", "mqttv5", "-i", f"{uid}-s", "-t", topic, "-C", "1", "-q", "1")
    try:
        assert wait_until(lambda: listeners(b)["tls-a"]["connections"] == 1, timeout=WAIT)
        wait_until(lambda: b.stat("subscriptions") >= 1)
        pub = _mosq(
            "mosquitto_pub", port, "--cafile", str(pki.ca), "-V", "mqttv311", "-t", topic, "-m", "over-tls", "-q", "1"
        )
        assert pub.returncode == 0, pub.stderr
        out, err = sub.communicate(timeout=WAIT)
        assert out.strip() == "over-tls", (out, err)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.communicate()
    assert listeners(b)["tls-a"]["refused"]["tls_handshake"] == 0


@needs_mosquitto
def test_tls_verify_peer_with_client_certificates(broker: Any, pki: Pki, uid: str) -> None:
    b = broker(
        config=tls_listener(pki, "mtls", verify="verify_peer", fail_if_no_peer_cert=True, cacertfile=str(pki.ca))
    )
    port = port_of(b, "mtls")
    ok = _mosq(
        "mosquitto_pub", port, "--cafile", str(pki.ca), "--cert", str(pki.client_cert), "--key", str(pki.client_key),
        "-t", f"{uid}/x", "-m", "hi",
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    # no client certificate; an expired one; one from another CA; a client that trusts another CA
    bad = [
        ["--cafile", str(pki.ca)],
        ["--cafile", str(pki.ca), "--cert", str(pki.expired_cert), "--key", str(pki.expired_key)],
        ["--cafile", str(pki.ca), "--cert", str(pki.other_client_cert), "--key", str(pki.other_client_key)],
        ["--cafile", str(pki.other_ca), "--cert", str(pki.client_cert), "--key", str(pki.client_key)],
    ]
    for refused, args in enumerate(bad, start=1):
        out = _mosq("mosquitto_pub", port, *args, "-t", f"{uid}/x", "-m", "no")
        assert out.returncode != 0, (args, out.stdout, out.stderr)
        counted = wait_until(lambda n=refused: listeners(b)["mtls"]["refused"]["tls_handshake"] == n)
        assert counted, (args, listeners(b)["mtls"])
    ls = listeners(b)["mtls"]
    assert ls["accepted"] == 1 and ls["connections"] == 0
    assert b.stat("connects", "success") == 1
    # the broker is fine: the good client still gets in
    again = _mosq(
        "mosquitto_pub", port, "--cafile", str(pki.ca), "--cert", str(pki.client_cert), "--key", str(pki.client_key),
        "-t", f"{uid}/x", "-m", "again",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "handshake" in b.stderr_text() and "failed" in b.stderr_text()


def test_tls_verify_peer_optional_certificate(broker: Any, pki: Pki, pahos: list[Paho], uid: str) -> None:
    """verify_peer without fail_if_no_peer_cert: a certificate is checked when sent, not required."""
    b = broker(config=tls_listener(pki, "opt", verify="verify_peer", cacertfile=str(pki.ca)))
    port = port_of(b, "opt")
    pahos.append(Paho(port, f"{uid}-a", tls=client_context(pki)))
    pahos.append(Paho(port, f"{uid}-b", tls=client_context(pki, cert=(pki.client_cert, pki.client_key))))
    ctx = client_context(pki, cert=(pki.expired_cert, pki.expired_key))
    try:
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=WAIT), server_hostname="127.0.0.1")
        s.sendall(rm.connect_packet(f"{uid}-c"))  # TLS 1.3: the server's verdict on our certificate comes now
        got = s.recv(10)
        s.close()
    except (ssl.SSLError, OSError):
        got = b""
    assert got == b"", "the broker accepted an expired certificate"
    assert wait_until(lambda: listeners(b)["opt"]["refused"]["tls_handshake"] == 1)


def test_tls_refuses_tls_1_1(broker: Any, pki: Pki) -> None:
    b = broker(config=tls_listener(pki, "t"))
    ctx = client_context(pki)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # that is the point
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:
        pytest.skip("this OpenSSL cannot speak TLS 1.1 at all")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        ctx.wrap_socket(
            socket.create_connection(("127.0.0.1", port_of(b, "t")), timeout=WAIT), server_hostname="127.0.0.1"
        )
    assert wait_until(lambda: listeners(b)["t"]["refused"]["tls_handshake"] == 1)


def test_garbage_instead_of_a_tls_handshake_is_counted_and_harmless(
    broker: Any, pki: Pki, pahos: list[Paho], uid: str
) -> None:
    b = broker(config=tls_listener(pki, "t"))
    port = port_of(b, "t")
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(rm.connect_packet("plain-on-tls"))  # MQTT where a ClientHello belongs
        s.settimeout(WAIT)
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
    assert wait_until(lambda: listeners(b)["t"]["refused"]["tls_handshake"] == 1)
    pahos.append(Paho(port, uid, tls=client_context(pki)))


# -- WebSocket ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["v311", "v5"])
def test_paho_over_ws_and_wss_and_across_listener_types(
    broker: Any, pki: Pki, pahos: list[Paho], uid: str, protocol: int
) -> None:
    b = broker(config=plain_listener("ws", "ws") + tls_listener(pki, "wss", kind="wss") + tls_listener(pki, "tls"))
    ctx = client_context(pki)
    ws_sub = Paho(port_of(b, "ws"), f"{uid}-ws", transport="websockets", protocol=protocol)
    pahos.append(ws_sub)
    tcp_sub = Paho(b.mqtt_port, f"{uid}-tcp", protocol=protocol)
    pahos.append(tcp_sub)
    wss_pub = Paho(port_of(b, "wss"), f"{uid}-wss", transport="websockets", protocol=protocol, tls=ctx)
    pahos.append(wss_pub)
    tls_pub = Paho(port_of(b, "tls"), f"{uid}-tls", protocol=protocol, tls=ctx)
    pahos.append(tls_pub)
    ws_sub.subscribe(f"{uid}/#")
    tcp_sub.subscribe(f"{uid}/#")
    big = bytes(range(256)) * 1024  # 256 KiB: many frames and TCP segments
    wss_pub.publish(f"{uid}/from-wss", b"hello from wss")
    tls_pub.publish(f"{uid}/from-tls", big)
    for sub in (ws_sub, tcp_sub):
        assert sub.wait_message(f"{uid}/from-wss") == b"hello from wss"
        assert sub.wait_message(f"{uid}/from-tls") == big
    ls = listeners(b)
    for name in ("ws", "wss", "tls", "default"):
        assert ls[name]["connections"] == 1, (name, ls)
    assert ls["ws"]["path"] == "/mqtt" and ls["wss"]["type"] == "wss"


def test_event_fields_per_listener_type(broker: Any, pki: Pki, pahos: list[Paho], uid: str) -> None:
    rx = Receivers()
    try:
        r = rx()
        b = broker(
            config=plain_listener("ws", "ws")
            + tls_listener(pki, "wss", kind="wss")
            + tls_listener(pki, "tls")
            + f'[[webhooks]]\nname = "ev"\nurl = "{r.url()}"\nevents = ["client.connected"]\n'
        )
        ctx = client_context(pki)
        cases = {
            "default": (b.mqtt_port, {}),
            "ws": (port_of(b, "ws"), {"transport": "websockets"}),
            "wss": (port_of(b, "wss"), {"transport": "websockets", "tls": ctx}),
            "tls": (port_of(b, "tls"), {"tls": ctx}),
        }
        for name, (port, kw) in cases.items():
            p = Paho(port, f"{uid}-{name}", **kw)
            pahos.append(p)
            sock: Any = p.c.socket()
            local = getattr(sock, "_socket", sock).getsockname() if name in ("default", "ws") else None
            ev = r.wait_event("client.connected", clientid=f"{uid}-{name}")
            assert ev["sockname"] == f"127.0.0.1:{port}", (name, ev)
            assert ev["peername"].startswith("127.0.0.1:"), (name, ev)
            if local is not None:
                assert ev["peername"] == f"{local[0]}:{local[1]}", (name, ev)
            assert ev["proto_name"] == "MQTT" and ev["proto_ver"] == 5, (name, ev)
    finally:
        rx.stop_all()


def test_ws_upgrade_without_the_mqtt_subprotocol_is_refused_with_400(broker: Any, pahos: list[Paho], uid: str) -> None:
    b = broker(config=plain_listener("ws", "ws"))
    port = port_of(b, "ws")
    c = RawWs(port, subprotocols=("chat",))
    try:
        assert c.rejected is not None and c.rejected.status_code == 400
        c._until(lambda: False)  # read to the end
        assert b"subprotocol 'mqtt' is required" in c.reject_body
    finally:
        c.close()
    c = RawWs(port, subprotocols=())
    try:
        assert c.rejected is not None and c.rejected.status_code == 400
    finally:
        c.close()
    c = RawWs(port, path="/elsewhere")
    try:
        assert c.rejected is not None and c.rejected.status_code == 404
    finally:
        c.close()
    assert wait_until(lambda: listeners(b)["ws"]["refused"]["ws_upgrade"] == 3)
    assert listeners(b)["ws"]["accepted"] == 0 and b.stat("sockets") == 0
    pahos.append(Paho(port, uid, transport="websockets"))  # the listener is fine


def test_plain_http_get_on_the_ws_path_gets_400(broker: Any) -> None:
    b = broker(config=plain_listener("ws", "ws", path="/mqtt/ws"))
    port = port_of(b, "ws")
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(b"GET /mqtt/ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400 "), reply
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(b"\x10\x10garbage, not http\r\n\r\n")
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400 "), reply
    assert wait_until(lambda: listeners(b)["ws"]["refused"]["ws_upgrade"] == 2)


def test_one_packet_over_several_frames_and_several_packets_in_one_frame(broker: Any, uid: str) -> None:
    b = broker(config=plain_listener("ws", "ws"))
    port = port_of(b, "ws")
    c = RawWs(port)
    try:
        assert c.accepted is not None and c.accepted.subprotocol == "mqtt"
        connect = rm.connect_packet(f"{uid}-raw", version=5)
        # a CONNECT byte by byte, in separate messages of one frame each
        c.send_frames(*[connect[i : i + 1] for i in range(len(connect))])
        assert c.packet().type == rm.CONNACK
        # SUBSCRIBE and a PUBLISH to it split across the fragments of one message
        sub = rm.subscribe_packet(1, [(f"{uid}/t", 1)])
        pub = rm.publish_packet(f"{uid}/t", b"split", qos=1, pid=7)
        both = sub + pub
        c.send_frames(both[:3], both[3:20], both[20:], one_message=True)
        got = [c.packet() for _ in range(3)]  # SUBACK, PUBACK, and our own PUBLISH back, in any order
        assert sorted(p.type for p in got) == sorted([rm.SUBACK, rm.PUBACK, rm.PUBLISH]), got
        publish = next(p for p in got if p.type == rm.PUBLISH)
        assert rm.parse_publish(publish).payload == b"split"
        # several packets in one frame: three PUBLISHes and a PINGREQ
        frame = b"".join(rm.publish_packet(f"{uid}/t", f"m{i}".encode()) for i in range(3)) + b"\xc0\x00"
        c.send_frames(frame)
        got = [c.packet() for _ in range(4)]
        assert [rm.parse_publish(p).payload for p in got if p.type == rm.PUBLISH] == [b"m0", b"m1", b"m2"]
        assert any(p.type == rm.PINGRESP for p in got)
        c.send_frames(rm.disconnect_packet())
        assert c.wait_close().code == 1000
    finally:
        c.close()
    assert wait_until(lambda: b.stat("disconnects", "normal") == 1)


def test_a_text_frame_closes_the_connection(broker: Any, uid: str) -> None:
    b = broker(config=plain_listener("ws", "ws"))
    c = RawWs(port_of(b, "ws"))
    try:
        c.send_frames(rm.connect_packet(f"{uid}-t", version=4))
        assert c.packet().type == rm.CONNACK
        c.send_text("hello")
        assert c.wait_close().code == 1003
    finally:
        c.close()
    assert wait_until(lambda: b.stat("disconnects", "malformed_packet") == 1)


def test_raw_wss_client(broker: Any, pki: Pki, uid: str) -> None:
    b = broker(config=tls_listener(pki, "wss", kind="wss", path="/"))
    c = RawWs(port_of(b, "wss"), path="/", tls=client_context(pki))
    try:
        c.send_frames(rm.connect_packet(f"{uid}-w", version=4) + rm.publish_packet("x", b"y", version=4))
        assert c.packet().type == rm.CONNACK
    finally:
        c.close()


# -- limits ------------------------------------------------------------------------------------------


# paho reports 3.1.1's CONNACK return code 3 (server unavailable) as reason code 0x88; the raw client
# below reads the byte itself.
@pytest.mark.parametrize("protocol,code", [(mqtt.MQTTv5, 0x97), (mqtt.MQTTv311, 0x88)], ids=["v5", "v311"])
def test_per_listener_max_connections(
    broker: Any, pki: Pki, pahos: list[Paho], uid: str, protocol: int, code: int
) -> None:
    b = broker(config=plain_listener("ws", "ws", max_connections=1) + plain_listener("tcp2", "tcp", max_connections=2))
    ws_port = port_of(b, "ws")
    first = Paho(ws_port, f"{uid}-1", transport="websockets", protocol=protocol)
    pahos.append(first)
    second = Paho(ws_port, f"{uid}-2", transport="websockets", protocol=protocol, expect_rc=None)
    pahos.append(second)
    assert second.rc == code
    ls = listeners(b)
    assert ls["ws"]["refused"]["max_connections"] == 1 and ls["ws"]["max_connections"] == 1
    assert b.stat("connects", "quota_exceeded") == 1
    # other listeners are not concerned
    pahos.append(Paho(b.mqtt_port, f"{uid}-3", protocol=protocol))
    pahos.append(Paho(port_of(b, "tcp2"), f"{uid}-4", protocol=protocol))
    pahos.append(Paho(port_of(b, "tcp2"), f"{uid}-5", protocol=protocol))
    version = 5 if protocol == mqtt.MQTTv5 else 4
    with rm.RawClient("127.0.0.1", port_of(b, "tcp2"), version=version) as sixth:
        sixth.send(rm.connect_packet(f"{uid}-6", version=version))
        connack = rm.parse_connack(sixth.expect(rm.CONNACK), version)
        assert connack.rc == (0x97 if version == 5 else 3), connack
        sixth.wait_closed()
    assert listeners(b)["tcp2"]["refused"]["max_connections"] == 1
    # a place freed is a place taken
    first.close()
    assert wait_until(lambda: listeners(b)["ws"]["connections"] == 0, timeout=WAIT)
    pahos.append(Paho(ws_port, f"{uid}-7", transport="websockets", protocol=protocol))


def test_listener_metrics(broker: Any) -> None:
    b = broker(config=plain_listener("ws-1", "ws", max_connections=5))
    status, body = b.http_get("/metrics")
    assert status == 200
    text = body.decode()
    assert 'mqhook_listener_max_connections{listener="ws-1"} 5.0' in text
    assert 'mqhook_listener_connections{listener="default"} 0.0' in text
    assert 'mqhook_listener_refused_total{listener="ws-1",reason="ws_upgrade"} 0.0' in text


def test_ws_backpressure_a_subscriber_that_does_not_read(broker: Any, uid: str) -> None:
    """A ws subscriber that stops reading: the broker's write buffer for it fills and it counts as
    saturated (``pause_writing`` reached the connection through the WebSocket protocol), then it is
    relieved (``resume_writing``) once the client reads again; the publisher is served throughout."""
    b = broker(config=plain_listener("ws", "ws"))
    sub = RawWs(port_of(b, "ws"))
    try:
        sub.send_frames(rm.connect_packet(f"{uid}-s", version=5))
        assert sub.packet().type == rm.CONNACK
        sub.send_frames(rm.subscribe_packet(1, [(f"{uid}/#", 0)]))
        assert sub.packet().type == rm.SUBACK
        with rm.RawClient("127.0.0.1", b.mqtt_port) as pub:
            pub.send(rm.connect_packet(f"{uid}-p"))
            pub.expect(rm.CONNACK)
            for i in range(2000):  # up to 32 MB at a client that reads nothing (the kernel holds a few MB)
                pub.send(rm.publish_packet(f"{uid}/t", b"x" * 16384))
                if i % 50 == 49 and b.stat("paused_write_buffer_full") >= 1:
                    break
            assert b.wait_stat(("paused_write_buffer_full",), lambda v: v >= 1) >= 1
            pub.send(b"\xc0\x00")  # PINGREQ: the publisher is served meanwhile
            pub.expect(rm.PINGRESP)
            # the subscriber reads again: it is relieved
            sub.sock.settimeout(0.2)
            read = 0

            def drained() -> bool:
                nonlocal read
                chunk = 1
                for _ in range(64):  # up to 64 MB per look at the gauge
                    try:
                        chunk = len(sub.sock.recv(1 << 20))
                    except TimeoutError:
                        break
                    read += chunk
                return b.stat("paused_write_buffer_full") == 0

            assert wait_until(drained, timeout=20.0), read
            assert read > 262144  # at least the write buffer's high-water mark came through
    finally:
        sub.close()


def test_peer_cert_as_username_authenticates_by_certificate(broker: Any, pki: Pki, uid: str, tmp_path: Path) -> None:
    """With peer_cert_as_username the verified certificate's CN is the user name: anonymous access
    is off, no password is sent, and the ACL (users/${username}/#) sees the certificate's name."""
    acl = tmp_path / "acl.toml"
    acl.write_text('[[rules]]\npermission = "allow"\naction = "all"\ntopics = ["users/${username}/#"]\n')
    r = Receiver().start()
    try:
        config = (
            f'[authn]\nallow_anonymous = false\n[authz]\nacl_file = "{acl}"\nno_match = "deny"\n'
            f'[[webhooks]]\nname = "wh"\nurl = "{r.url()}"\nevents = ["client.check_authn_complete"]\n'
            + tls_listener(pki, "mtls", verify="verify_peer", fail_if_no_peer_cert=True, cacertfile=str(pki.ca),
                           peer_cert_as_username="cn")
        )  # fmt: skip
        b = broker(config=config)
        port = port_of(b, "mtls")
        cert = ["--cafile", str(pki.ca), "--cert", str(pki.client_cert), "--key", str(pki.client_key)]
        ok = _mosq("mosquitto_pub", port, *cert, "-i", uid, "-q", "1", "-t", "users/client-1/t", "-m", "mine")
        assert ok.returncode == 0, ok.stderr
        ev = r.wait_event("client.check_authn_complete", clientid=uid)
        assert ev["username"] == "client-1" and ev["reason_code"] == "success" and ev["is_anonymous"] is False
        # The name is the certificate's, whatever the client says: another user's tree is denied.
        _mosq("mosquitto_pub", port, *cert, "-u", "alice", "-V", "mqttv5", "-q", "1", "-t", "users/alice/t",
              "-m", "not mine")  # fmt: skip
        assert wait_until(lambda: b.stat("authorization", "publish", "deny") == 1)
        assert b.stat("authorization", "publish", "allow") == 1
        # On the plain listener, without a certificate, anonymous clients are refused.
        refused = _mosq("mosquitto_pub", b.mqtt_port, "-t", "x", "-m", "anon")
        assert refused.returncode != 0
    finally:
        broker.stop_all()  # before the receiver, which would be left with the webhook's open connections
        r.stop()


def test_peer_cert_as_username_needs_verify_peer(pki: Pki, tmp_path: Path) -> None:
    out = _run_config(tmp_path, tls_listener(pki, "t", peer_cert_as_username="dn"))
    assert out.returncode == 2
    assert "$.listeners[0].peer_cert_as_username: 'dn' is invalid with verify = \"verify_none\"" in out.stderr
