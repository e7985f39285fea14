"""Authentication (password file) and authorization (ACL file) with real clients and a real
webhook receiver for the events: CONNACK codes in both versions, PUBACK/SUBACK refusals, the
decisions' events, superusers, placeholders, SIGHUP reloads, throttled logins, pipelined packets
during a slow hash, wills, client ids bound to users, and the start-up refusal."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from conftest import run_cli, wait_until

from .rawmqtt import (
    CONNACK,
    PUBACK,
    PUBLISH,
    SUBACK,
    RawClient,
    Will,
    connect_packet,
    parse_ack,
    parse_connack,
    parse_publish,
    parse_suback,
    publish_packet,
    subscribe_packet,
)
from .receiver import Receivers

RC_V5_BAD_CREDENTIALS = 0x86
RC_V5_NOT_AUTHORIZED = 0x87
RC_V3_BAD_CREDENTIALS = 4
RC_V3_NOT_AUTHORIZED = 5

ACL = """
[[rules]]
permission = "deny"
action = "all"
topics = ["secret/#"]

[[rules]]
permission = "allow"
action = "all"
topics = ["users/${username}/#"]

[[rules]]
permission = "allow"
action = "subscribe"
topics = ["eq open/#"]

[[rules]]
permission = "allow"
action = "publish"
topics = ["open/+"]
"""


@pytest.fixture
def rx():
    yield from Receivers.fixture()


def _passwd(path: Path, *users: tuple[str, str, bool]) -> None:
    for name, password, superuser in users:
        args = ["passwd", "--file", str(path), "add", name] + (["--superuser"] if superuser else [])
        out = run_cli(args, input=password + "\n", timeout=30)
        assert out.returncode == 0, out.stderr


@pytest.fixture
def secured(rx, broker, tmp_path):
    """A broker with a password file (alice, bob, root the superuser), the ACL above with
    no_match = deny, anonymous refused, and a webhook on the access events."""
    pw = tmp_path / "passwd"
    _passwd(pw, ("alice", "alice-pw", False), ("bob", "bob-pw", False), ("root", "root-pw", True))
    acl = tmp_path / "acl.toml"
    acl.write_text(ACL)
    r = rx()
    config = f"""
[authn]
allow_anonymous = false
password_file = "{pw}"
clientid_bound_to_username = true
[authz]
acl_file = "{acl}"
no_match = "deny"
[[webhooks]]
name = "wh"
url = "{r.url()}"
events = ["client.check_authn_complete", "client.check_authz_complete", "message.publish"]
"""
    return broker(config=config), r, acl


def _connect(
    raw, b, version: int, client_id: str, username: str | None, password: bytes | None
) -> tuple[RawClient, int]:
    c = raw(b, version=version)
    rc = c.connect(client_id, username=username, password=password).rc
    return c, rc


@pytest.mark.parametrize("version", [4, 5])
def test_connects_are_checked_against_the_password_file(secured, raw, version, uid):
    b, r, _ = secured
    bad, not_authorized = (
        (RC_V5_BAD_CREDENTIALS, RC_V5_NOT_AUTHORIZED) if version == 5 else (RC_V3_BAD_CREDENTIALS, RC_V3_NOT_AUTHORIZED)
    )
    c, rc = _connect(raw, b, version, f"{uid}-ok", "alice", b"alice-pw")
    assert rc == 0
    c.close()
    assert _connect(raw, b, version, f"{uid}-wrong", "alice", b"nope")[1] == bad
    assert _connect(raw, b, version, f"{uid}-who", "mallory", b"alice-pw")[1] == bad
    assert _connect(raw, b, version, f"{uid}-nopw", "alice", None)[1] == bad
    assert _connect(raw, b, version, f"{uid}-anon", None, None)[1] == not_authorized
    # Each decision is an event with EMQX's reason code, and the refusals are counted by reason.
    ok = r.wait_event("client.check_authn_complete", clientid=f"{uid}-ok")
    assert ok["reason_code"] == "success" and ok["is_anonymous"] is False and ok["is_superuser"] is False
    wrong = r.wait_event("client.check_authn_complete", clientid=f"{uid}-wrong")
    assert wrong["reason_code"] == "bad_username_or_password"
    anon = r.wait_event("client.check_authn_complete", clientid=f"{uid}-anon")
    assert anon["reason_code"] == "not_authorized" and anon["is_anonymous"] is True
    assert b.stat("connects", "bad_username_or_password") >= 3


def test_a_superuser_bypasses_the_acl(secured, raw, uid):
    b, r, _ = secured
    c, rc = _connect(raw, b, 5, uid, "root", b"root-pw")
    assert rc == 0
    assert c.subscribe("secret/#", qos=1) == [1]
    c.publish("secret/x", b"s", qos=0)
    assert parse_publish(c.expect(PUBLISH)).topic == "secret/x"
    ev = r.wait_event("client.check_authn_complete", clientid=uid)
    assert ev["is_superuser"] is True
    authz = r.wait_event("client.check_authz_complete", clientid=uid, action="subscribe")
    assert authz["result"] == "allow" and authz["authz_source"] == "superuser"


@pytest.mark.parametrize("version", [4, 5])
def test_the_acl_decides_publishes_and_subscriptions(secured, raw, version, uid):
    b, r, _ = secured
    sub, rc = _connect(raw, b, version, f"{uid}-sub", "alice", b"alice-pw")
    assert rc == 0
    refused = 0x87 if version == 5 else 0x80
    # ${username} fills in; the first matching rule wins (secret/# is denied though users/... allows).
    assert sub.subscribe([("users/alice/#", 1), ("users/bob/#", 1), ("secret/#", 1), ("open/#", 1)]) == [
        1,
        refused,
        refused,
        1,
    ]
    # "eq open/#" allows exactly that filter: a narrower one is not the literal, and no rule allows it.
    assert sub.subscribe([("open/a", 0)], pid=2) == [refused]
    pub, rc = _connect(raw, b, version, f"{uid}-pub", "bob", b"bob-pw")
    assert rc == 0
    pub.send(publish_packet("users/alice/x", b"not bob's", qos=1, pid=5, version=version))
    # PUBACK: v5 says 0x87 (not authorized); 3.1.1 has no negative PUBACK: acked and dropped
    assert parse_ack(pub.expect(PUBACK), version) == (5, 0x87 if version == 5 else 0)
    pub.publish("open/news", b"hello", qos=1, pid=6)
    got = parse_publish(sub.expect(PUBLISH), version)
    assert got.topic == "open/news" and got.payload == b"hello"  # bob's refused message never came
    # The decisions are events with the real result and where it came from.
    unmatched = r.wait_event("client.check_authz_complete", clientid=f"{uid}-pub", topic="users/alice/x")
    assert unmatched["result"] == "deny" and unmatched["authz_source"] == "default"
    assert unmatched["action"] == "publish"
    denied = r.wait_event("client.check_authz_complete", clientid=f"{uid}-sub", topic="secret/#")
    assert denied["result"] == "deny" and denied["authz_source"] == "file" and denied["action"] == "subscribe"
    allowed = r.wait_event("client.check_authz_complete", clientid=f"{uid}-pub", topic="open/news")
    assert allowed["result"] == "allow" and allowed["authz_source"] == "file"
    nomatch = r.wait_event("client.check_authz_complete", clientid=f"{uid}-sub", topic="open/a")
    assert nomatch["result"] == "deny" and nomatch["authz_source"] == "default"
    assert b.stat("authorization", "publish", "deny") >= 1


def test_sighup_reloads_the_acl_and_a_bad_file_keeps_the_old_one(secured, raw, uid):
    b, _, acl = secured
    c, rc = _connect(raw, b, 5, uid, "alice", b"alice-pw")
    assert rc == 0
    assert c.subscribe("lab/#", qos=0) == [0x87]
    acl.write_text(ACL + '\n[[rules]]\npermission = "allow"\naction = "subscribe"\ntopics = ["lab/#"]\n')
    b.send_signal(signal.SIGHUP)
    wait_until(lambda: "ACL file reloaded" in b.stderr_text(), timeout=10)
    assert c.subscribe("lab/#", qos=0, pid=2) == [0]  # a new decision: the connection's cache started again
    acl.write_text('[[rules]]\npermission = "alow"\n')
    b.send_signal(signal.SIGHUP)
    wait_until(lambda: "ACL file not reloaded" in b.stderr_text(), timeout=10)
    assert "$.rules[0].permission: 'alow' is invalid; expected one of allow, deny" in b.stderr_text()
    assert c.subscribe("lab/x", qos=0, pid=3) == [0]  # the old rules still decide


def test_failed_logins_are_slowed_per_address(secured, raw, uid):
    b, _, _ = secured
    for i in range(5):
        assert _connect(raw, b, 5, f"{uid}-{i}", "alice", b"wrong")[1] == RC_V5_BAD_CREDENTIALS
    # From now on this address is refused without a check, after a delay: even the right password.
    assert _connect(raw, b, 5, f"{uid}-late", "alice", b"alice-pw")[1] == RC_V5_BAD_CREDENTIALS
    assert b.stat("limits", "login_failures_per_address") == 1


def test_packets_sent_with_the_connect_wait_for_the_password_check(secured, raw, uid):
    b, _, _ = secured
    c = raw(b)
    # CONNECT, SUBSCRIBE and PUBLISH in one write, before any answer: the hash runs off the loop,
    # and what follows the CONNECT is handled once it succeeded, in order.
    c.send(
        connect_packet(uid, username="alice", password=b"alice-pw")
        + subscribe_packet(1, [("users/alice/#", 1)])
        + publish_packet("users/alice/t", b"pipelined", qos=0)
    )
    assert parse_connack(c.expect(CONNACK)).rc == 0
    assert parse_suback(c.expect(SUBACK))[1] == [1]
    got = parse_publish(c.expect(PUBLISH))
    assert got.topic == "users/alice/t" and got.payload == b"pipelined"


def test_a_will_on_a_denied_topic_is_not_published(secured, raw, uid):
    b, _, _ = secured
    watcher, rc = _connect(raw, b, 5, f"{uid}-w", "root", b"root-pw")
    assert rc == 0
    assert watcher.subscribe("#", qos=0) == [0]
    c = raw(b)
    will_denied = Will(topic="secret/will", payload=b"gone")
    assert c.connect(f"{uid}-a", username="alice", password=b"alice-pw", will=will_denied).rc == 0
    d = raw(b)
    will_ok = Will(topic="users/alice/will", payload=b"bye")
    assert d.connect(f"{uid}-b", username="alice", password=b"alice-pw", will=will_ok).rc == 0
    c.abort()
    d.abort()
    got = parse_publish(watcher.expect(PUBLISH))
    assert got.topic == "users/alice/will"  # only the allowed will; the denied one never arrives
    watcher.send(publish_packet("users/root/x", b"marker", version=5))
    assert parse_publish(watcher.expect(PUBLISH)).topic == "users/root/x"


def test_a_client_id_bound_to_its_user_cannot_be_taken_over(secured, raw, uid):
    b, _, _ = secured
    c = raw(b)
    assert c.connect(uid, username="alice", password=b"alice-pw", clean=False,
                     properties=[(0x11, 3600)]).rc == 0  # fmt: skip
    c.close()
    assert _connect(raw, b, 5, uid, "bob", b"bob-pw")[1] == RC_V5_NOT_AUTHORIZED
    again = raw(b)
    ack = again.connect(uid, username="alice", password=b"alice-pw", clean=False)
    assert ack.rc == 0 and ack.session_present


def test_a_listener_open_to_the_network_needs_allow_anonymous_said(broker):
    proc = broker.popen(["run", "--mqtt-bind", "0.0.0.0:0", "--admin-bind", "127.0.0.1:0"])
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "$.mqtt.bind: '0.0.0.0:0' is open to the network and $.authn.allow_anonymous is not set" in err


def test_acl_check_explains_a_decision(tmp_path):
    acl = tmp_path / "acl.toml"
    acl.write_text(ACL)
    out = run_cli(["acl", "check", "--file", str(acl), "--no-match", "deny", "--username", "bob", "publish",
                   "users/bob/t"])  # fmt: skip
    assert out.returncode == 0 and out.stdout.startswith("allow: rule 2 of")
    out = run_cli(["acl", "check", "--file", str(acl), "--no-match", "deny", "subscribe", "secret/+"])
    assert out.returncode == 1 and out.stdout.startswith("deny: rule 1 of")
    out = run_cli(["acl", "check", "--file", str(acl), "subscribe", "other/x"])
    assert out.returncode == 0 and "no rule matches" in out.stdout
    acl.write_text('[[rules]]\npermission = "allow"\naction = "all"\ntopics = ["a/#/b"]\n')
    out = run_cli(["acl", "check", "--file", str(acl), "publish", "a"])
    assert out.returncode == 2 and "$.rules[0].topics[0]: 'a/#/b' is invalid" in out.stderr


def test_retained_messages_respect_the_acl(secured, raw, uid):
    """A denied retained PUBLISH is not retained; a denied subscription gets no retained message."""
    b, _, _ = secured
    root, rc = _connect(raw, b, 5, f"{uid}-root", "root", b"root-pw")
    assert rc == 0
    root.publish(f"secret/{uid}", b"kept", qos=1, retain=True)  # a superuser may
    bob, rc = _connect(raw, b, 5, f"{uid}-bob", "bob", b"bob-pw")
    assert rc == 0
    bob.send(publish_packet(f"users/alice/{uid}", b"forged", qos=1, pid=3, retain=True))
    assert parse_ack(bob.expect(PUBACK)) == (3, 0x87)
    alice, rc = _connect(raw, b, 5, f"{uid}-alice", "alice", b"alice-pw")
    assert rc == 0
    assert alice.subscribe([(f"secret/{uid}", 1), (f"users/alice/{uid}", 1)]) == [0x87, 1]
    # Nothing retained arrives: the secret one is behind a denied subscription, bob's was never kept.
    alice.send(publish_packet(f"users/alice/{uid}", b"marker", version=5))
    got = parse_publish(alice.expect(PUBLISH))
    assert got.payload == b"marker" and not got.retain
    assert b.stats()["retained"] == 1
