"""Interop with the Debian mosquitto_pub / mosquitto_sub command line clients."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .util import wait_until

MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
MOSQUITTO_SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"

pytestmark = pytest.mark.skipif(
    not (shutil.which("mosquitto_pub") and shutil.which("mosquitto_sub")),
    reason="mosquitto_pub / mosquitto_sub not installed (apt-get install mosquitto-clients)",
)


@pytest.fixture
def b(broker):
    """A fresh broker per test: Sub waits on its subscription count, which must start from zero."""
    return broker()


class Sub:
    """A running mosquitto_sub; started only once the broker shows its subscription."""

    def __init__(self, broker, args: list[str]) -> None:
        self.broker = broker
        before = broker.stat("subscriptions")
        self.proc = subprocess.Popen(
            [MOSQUITTO_SUB, "-h", broker.host, "-p", str(broker.mqtt_port), "-W", "15", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        ok = wait_until(lambda: broker.stat("subscriptions") > before or self.proc.poll() is not None, timeout=5)
        if not ok or self.proc.poll() is not None:
            out, err = self.finish()
            pytest.fail(f"mosquitto_sub did not subscribe: rc={self.proc.returncode} out={out!r} err={err!r}")

    def finish(self, timeout: float = 10) -> tuple[str, str]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"mosquitto_sub did not finish: out={out!r} err={err!r}")
        return out, err


def pub(broker, args: list[str]) -> None:
    r = subprocess.run(
        [MOSQUITTO_PUB, "-h", broker.host, "-p", str(broker.mqtt_port), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert r.returncode == 0, f"mosquitto_pub failed: {r.returncode} {r.stderr!r}"


@pytest.mark.parametrize("version", ["mqttv5", "mqttv311", "mqttv31"])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_pub_to_sub(b, uid, version, qos):
    sub = Sub(b, ["-V", version, "-q", str(qos), "-t", f"{uid}/#", "-C", "1", "-i", uid + "-s"])
    pub(b, ["-V", version, "-q", str(qos), "-t", f"{uid}/1", "-m", "hi", "-i", uid + "-p"])
    out, err = sub.finish()
    assert sub.proc.returncode == 0, err
    assert out == "hi\n"


def test_retained_with_mosquitto(b, uid):
    pub(b, ["-V", "mqttv5", "-q", "1", "-r", "-t", f"{uid}/r", "-m", "kept"])
    r = subprocess.run(
        [
            MOSQUITTO_SUB,
            "-h",
            b.host,
            "-p",
            str(b.mqtt_port),
            "-V",
            "mqttv311",
            "-t",
            f"{uid}/#",
            "-C",
            "1",
            "-v",
            "-W",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{uid}/r kept\n"
    # --retained-only with the retain flag shown: the retained copy is flagged
    r = subprocess.run(
        [
            MOSQUITTO_SUB,
            "-h",
            b.host,
            "-p",
            str(b.mqtt_port),
            "-t",
            f"{uid}/#",
            "-C",
            "1",
            "-F",
            "%r %p",
            "--retained-only",
            "-W",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "1 kept\n"


def test_clear_retained_with_mosquitto(b, uid, clients):
    pub(b, ["-r", "-t", f"{uid}/r", "-m", "kept"])
    pub(b, ["-r", "-t", f"{uid}/r", "-n"])
    pub(b, ["-r", "-t", f"{uid}/z", "-m", "other"])
    c = clients(b, uid + "-s")
    c.subscribe(f"{uid}/#", qos=0)
    c.wait_payload(b"other")
    c.assert_no_message(0.3)
    assert [m.topic for m in c.received()] == [f"{uid}/z"]


def test_v5_user_properties_with_mosquitto(b, uid):
    sub = Sub(b, ["-V", "mqttv5", "-t", f"{uid}/#", "-C", "1", "-F", "%t|%p|%P"])
    pub(
        b,
        [
            "-V",
            "mqttv5",
            "-t",
            f"{uid}/p",
            "-m",
            "body",
            "-D",
            "publish",
            "user-property",
            "k1",
            "v1",
            "-D",
            "publish",
            "user-property",
            "k2",
            "v2",
        ],
    )
    out, err = sub.finish()
    assert sub.proc.returncode == 0, err
    assert out == f"{uid}/p|body|k1:v1 k2:v2\n"


def test_many_lines_in_order(b, uid):
    n = 100
    sub = Sub(b, ["-V", "mqttv5", "-q", "1", "-t", f"{uid}/l", "-C", str(n)])
    lines = "".join(f"line{i}\n" for i in range(n))
    r = subprocess.run(
        [
            MOSQUITTO_PUB,
            "-h",
            b.host,
            "-p",
            str(b.mqtt_port),
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-t",
            f"{uid}/l",
            "-l",
        ],
        input=lines,
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    out, err = sub.finish()
    assert sub.proc.returncode == 0, err
    assert out == lines


def test_mosquitto_sub_receives_paho_qos2(b, uid, clients):
    sub = Sub(b, ["-V", "mqttv5", "-q", "2", "-t", f"{uid}/x", "-C", "2", "-F", "%q %p"])
    p = clients(b, uid + "-p")
    p.publish(f"{uid}/x", b"two", qos=2)
    p.publish(f"{uid}/x", b"one", qos=1)
    out, _ = sub.finish()
    assert out == "2 two\n1 one\n"
