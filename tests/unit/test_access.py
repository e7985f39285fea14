"""The ACL's matching rules and the password file's formats, without a broker."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import pytest

from mqhook.access.acl import Acl, Rule, covers
from mqhook.access.passwd import PasswordFile, verify
from mqhook.errors import ConfigError


@pytest.mark.parametrize(
    ("rule", "subject", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a/+", True),  # a subscription to a/+ is covered by a/+
        ("a/+", "a/#", False),  # a/# is wider than a/+
        ("a/#", "a/b/c", True),
        ("a/#", "a", True),  # '#' includes the parent level
        ("a/#", "a/#", True),
        ("a/b", "a/+", False),
        ("#", "$SYS/x", False),  # [MQTT-4.7.2-1]
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/x", True),
        ("a/b", "a/b/c", False),
        ("a//b", "a//b", True),
    ],
)
def test_covers(rule: str, subject: str, expected: bool) -> None:
    assert covers(rule, subject) is expected


def _acl(*rules: dict) -> Acl:
    return Acl([Rule(**r) for r in rules])


def test_first_match_wins_and_who_narrows_a_rule() -> None:
    acl = _acl(
        {"permission": "deny", "action": "publish", "topics": ["x/#"], "username": "eve"},
        {"permission": "allow", "action": "all", "topics": ["x/#"], "ipaddr": "10.0.0.0/8"},
        {"permission": "allow", "action": "subscribe", "topics": ["c/${clientid}/#"], "clientid": "c1"},
    )
    assert acl.decide("eve", "e", "10.1.2.3", "publish", "x/1") == 0
    assert acl.decide("bob", "b", "10.1.2.3", "publish", "x/1") == 1
    assert acl.decide("bob", "b", "192.168.0.1", "publish", "x/1") is None
    assert acl.decide("bob", "b", "[::1]", "publish", "x/1") is None
    assert acl.decide(None, "c1", "127.0.0.1", "subscribe", "c/c1/#") == 2
    assert acl.decide(None, "c2", "127.0.0.1", "subscribe", "c/c2/#") is None


def test_placeholders_that_cannot_be_filled_safely_do_not_match() -> None:
    acl = _acl({"permission": "allow", "action": "all", "topics": ["u/${username}/#"]})
    assert acl.decide("alice", "c", "127.0.0.1", "publish", "u/alice/x") == 0
    assert acl.decide(None, "c", "127.0.0.1", "publish", "u//x") is None  # no user name
    assert acl.decide("+", "c", "127.0.0.1", "subscribe", "u/+/x") is None  # a wildcard user name
    assert acl.decide("a/b", "c", "127.0.0.1", "publish", "u/a/b/x") is None


def test_shared_subscriptions_are_checked_by_their_filter_and_eq_is_literal() -> None:
    acl = _acl(
        {"permission": "allow", "action": "subscribe", "topics": ["eq jobs/#"]},
        {"permission": "allow", "action": "subscribe", "topics": ["work/+"]},
    )
    assert acl.decide(None, "c", "h", "subscribe", "jobs/#") == 0
    assert acl.decide(None, "c", "h", "subscribe", "jobs/a") is None
    assert acl.decide(None, "c", "h", "subscribe", "$share/g/work/a") == 1


def test_a_bad_acl_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "acl.toml"
    path.write_text('[[rules]]\npermission = "allow"\naction = "all"\ntopics = ["ok/#"]\nipaddr = "10.0.0.300/8"\n')
    with pytest.raises(ConfigError, match=r"\$\.rules\[0\]\.ipaddr: '10\.0\.0\.300/8' is invalid; expected an IP"):
        Acl.load(str(path))
    path.write_text('[[rules]]\npermission = "allow"\naction = "pub"\ntopics = ["x"]\n')
    with pytest.raises(ConfigError, match=r"\$\.rules\[0\]\.action: 'pub' is invalid; expected one of"):
        Acl.load(str(path))
    path.write_text("[[rules]\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        Acl.load(str(path))


def test_password_file_round_trip_and_mosquitto_hashes(tmp_path: Path) -> None:
    pf = PasswordFile()
    pf.set("alice", "pw-alice")
    pf.set("root", "pw-root", superuser=True)
    path = tmp_path / "passwd"
    pf.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    back = PasswordFile.load(path)
    assert back.users["root"][1] is True and back.users["alice"][1] is False
    assert verify("pw-alice", back.users["alice"][0]) and not verify("pw-root", back.users["alice"][0])
    # mosquitto 1.x: $6$ salted SHA-512
    salt = b"0123456789ab"
    six = (
        "$6$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(hashlib.sha512(b"m6" + salt).digest()).decode()
    )
    assert verify("m6", six) and not verify("x", six)
    with pytest.raises(ConfigError, match="line 1 is invalid"):
        (tmp_path / "bad").write_text("no-colon-here\n")
        PasswordFile.load(tmp_path / "bad")


def test_mosquitto_passwd_files_are_read(tmp_path: Path) -> None:
    path = tmp_path / "mosquitto.passwd"
    try:
        subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "carol", "pw-carol"], check=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("mosquitto_passwd is not installed (Debian: mosquitto)")
    stored = PasswordFile.load(path).users["carol"][0]
    assert stored.startswith("$7$") and verify("pw-carol", stored) and not verify("pw-dave", stored)
