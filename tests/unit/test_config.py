"""Config errors name the field, the value and what was expected; layers apply in order."""

from __future__ import annotations

from typing import Any

import pytest

from mqhook import config
from mqhook.errors import ConfigError


@pytest.mark.parametrize(
    ("tree", "expected"),
    [
        ({"mqtt": {"max_packet_size": "big"}}, "$.mqtt.max_packet_size: 'big' is invalid; expected `int`, got `str`"),
        ({"mqtt": {"max_qos": 3}}, "$.mqtt.max_qos: 3 is invalid; expected an integer from 0 to 2"),
        ({"mqtt": {"bind": "nonsense"}}, "$.mqtt.bind: 'nonsense' is not a valid bind address; expected HOST:PORT"),
        ({"mqtt": {"foo": 1}}, "$.mqtt.foo: unknown setting; expected one of: bind, max_packet_size"),
        (
            {"bar": 1},
            "$.bar: unknown setting; expected one of: node, data_dir, mqtt, admin, authn, authz, log, webhooks, "
            "listeners",
        ),
        (
            {"log": {"level": "verbose"}},
            "$.log.level: 'verbose' is invalid; expected one of debug, info, warning, error",
        ),
        ({"log": {"level": 5}}, "$.log.level: 5 is invalid; expected `str`, got `int`"),
        ({"node": "nohost"}, "$.node: 'nohost' is invalid; expected NAME@HOST"),
        (
            {"webhooks": [{"name": "a", "url": "http://127.0.0.1/", "overflow": "drop"}]},
            "$.webhooks[0].overflow: 'drop' is invalid; expected one of drop_oldest, drop_new, backpressure",
        ),
        (
            {"webhooks": [{"name": "a", "url": "http://127.0.0.1/", "pool_size": "x"}]},
            "$.webhooks[0].pool_size: 'x' is invalid; expected `int`, got `str`",
        ),
        (
            {"webhooks": [{"name": "a", "url": "http://127.0.0.1/", "pool_size": 0}]},
            "$.webhooks[0].pool_size: 0 is invalid; expected an integer from 1 to 1024",
        ),
        (
            {"webhooks": [{"name": "a", "url": "http://127.0.0.1/", "batch_time": "2h"}]},
            "$.webhooks[0].batch_time: '2h' is invalid; expected a duration <= 1h",
        ),
        (
            {"webhooks": [{"name": "a", "url": "http://127.0.0.1/", "events": ["x"]}]},
            "$.webhooks[0].events[0]: 'x' is invalid; expected one of message.publish",
        ),
        (
            {"webhooks": [{"name": "a", "url": "http://127.0.0.1/", "bogus": 1}]},
            "$.webhooks[0].bogus: unknown setting; expected one of: name, url,",
        ),
        ({"webhooks": [{"name": "a"}]}, "$.webhooks[0].url: missing; this setting is required"),
        (
            {"webhooks": [{"name": "a", "url": "http://127.0.0.1/"}, {"name": "a", "url": "http://127.0.0.1/"}]},
            "$.webhooks[1].name: 'a' is already the name of $.webhooks[0]",
        ),
    ],
)
def test_errors_name_field_value_and_expectation(tree: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(environ={}, overrides=tree)
    assert str(info.value).startswith(expected), str(info.value)


# -- [mqtt] bounds: msgspec constraints, checked just inside and just outside each limit ------

MQTT_INT_BOUNDS = [
    ("max_packet_size", 16, 268435455),
    ("receive_maximum", 1, 65535),
    ("max_inflight", 1, 65535),
    ("max_queued_messages", 0, 10_000_000),
    ("max_session_expiry_interval", 0, 0xFFFFFFFF),
    ("max_keepalive", 1, 65535),
    ("topic_alias_maximum", 0, 65535),
    ("max_qos", 0, 2),
    ("max_clientid_len", 23, 65535),
    ("write_buffer_high", 1024, 1 << 30),
]


@pytest.mark.parametrize(("field", "low", "high"), MQTT_INT_BOUNDS)
def test_mqtt_integer_bounds(field: str, low: int, high: int) -> None:
    for ok in (low, high):
        assert getattr(config.load(environ={}, overrides={"mqtt": {field: ok}}).mqtt, field) == ok
    for bad in (low - 1, high + 1):
        with pytest.raises(ConfigError) as info:
            config.load(environ={}, overrides={"mqtt": {field: bad}})
        assert str(info.value) == f"$.mqtt.{field}: {bad} is invalid; expected an integer from {low} to {high}"


def test_mqtt_idle_timeout_bounds() -> None:
    for ok in (0.1, 15, 3600):
        assert config.load(environ={}, overrides={"mqtt": {"idle_timeout": ok}}).mqtt.idle_timeout == ok
    for bad in (0.09, 3600.5):
        with pytest.raises(ConfigError) as info:
            config.load(environ={}, overrides={"mqtt": {"idle_timeout": bad}})
        assert str(info.value) == f"$.mqtt.idle_timeout: {bad} is invalid; expected a number from 0.1 to 3600"


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
def test_log_level_choices(level: str) -> None:
    assert config.load(environ={}, overrides={"log": {"level": level}}).log.level == level


def test_log_level_is_case_sensitive() -> None:
    with pytest.raises(ConfigError, match=r"\$\.log\.level: 'INFO' is invalid; expected one of debug"):
        config.load(environ={}, overrides={"log": {"level": "INFO"}})


# -- layers -------------------------------------------------------------------------------------


def test_layers_defaults_file_env_flags(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[mqtt]\nmax_packet_size = 1000\nmax_inflight = 7\n[log]\nlevel = "debug"\n')
    env = {"MQHOOK_MQTT__MAX_PACKET_SIZE": "2000", "MQHOOK_LOG__LEVEL": "warning", "OTHER": "x"}
    cfg = config.load(str(path), environ=env, overrides={"log": {"level": "error"}})
    assert cfg.mqtt.max_packet_size == 2000  # env beats file
    assert cfg.mqtt.max_inflight == 7  # file beats default
    assert cfg.log.level == "error"  # flag beats env
    assert cfg.mqtt.receive_maximum == 32  # default
    assert cfg.node.startswith("mqhook@")


def test_bad_toml_and_missing_file_are_config_errors(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        config.load(str(bad), environ={})
    with pytest.raises(ConfigError, match="No such file"):
        config.load(str(tmp_path / "missing.toml"), environ={})


# -- environment variables that name no setting: a warning, not an error -------------------------


def _load_env(env: dict[str, str], path: str | None = None) -> tuple[config.Config, list[str]]:
    warnings: list[str] = []
    return config.load(path, environ=env, warn=warnings.append), warnings


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        (
            "MQHOOK_BIN",
            "$.bin is not a setting; expected one of: node, data_dir, mqtt, admin, authn, authz, log, webhooks, "
            "listeners",
        ),
        ("MQHOOK_MQTT__MAX_PAKCET_SIZE", "$.mqtt.max_pakcet_size is not a setting; expected one of: bind,"),
        ("MQHOOK_MQTT__BIND__PORT", "$.mqtt.bind has no settings under it"),
        ("MQHOOK_", "$. is not a setting"),
    ],
)
def test_env_var_naming_no_setting_is_a_warning(name: str, problem: str) -> None:
    cfg, warnings = _load_env({name: "/opt/mqhook/bin", "MQHOOK_MQTT__MAX_INFLIGHT": "7"})
    assert cfg.mqtt.max_inflight == 7  # the rest of the environment still applies
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"environment variable {name} ignored: {problem}"), warnings[0]


@pytest.mark.parametrize("name", ["MQHOOK_PURE_PYTHON", "MQHOOK_NO_EXT", "MQHOOK_REQUIRE_NATIVE"])
def test_switches_are_skipped_silently(name: str) -> None:
    cfg, warnings = _load_env({name: "1"})
    assert warnings == []
    assert cfg == config.load(environ={})


def test_env_warning_defaults_to_a_config_warning() -> None:
    with pytest.warns(config.ConfigWarning, match="environment variable MQHOOK_BIN ignored"):
        config.load(environ={"MQHOOK_BIN": "x"})


def test_env_var_naming_a_setting_with_a_bad_value_is_fatal() -> None:
    with pytest.raises(ConfigError, match=r"^\$\.mqtt\.max_packet_size: 'lots' is invalid; expected `int`"):
        _load_env({"MQHOOK_MQTT__MAX_PACKET_SIZE": "lots", "MQHOOK_BIN": "x"})
    with pytest.raises(ConfigError, match=r"^\$\.mqtt\.max_qos: 7 is invalid; expected an integer from 0 to 2"):
        _load_env({"MQHOOK_MQTT__MAX_QOS": "7"})


def test_typo_in_the_file_stays_fatal(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[mqtt]\nmax_pakcet_size = 1000\n")
    with pytest.raises(ConfigError, match=r"^\$\.mqtt\.max_pakcet_size: unknown setting"):
        _load_env({}, str(path))


def test_env_sets_nested_tables_and_lists() -> None:
    env: dict[str, Any] = {
        "MQHOOK_WEBHOOKS": '[{name = "a", url = "http://127.0.0.1:5000/", connect_timeout = "500ms"}]',
        "MQHOOK_NODE": "n@h",
    }
    cfg, warnings = _load_env(env)
    assert warnings == []
    assert cfg.node == "n@h"
    assert [(w.name, w.connect_timeout_s) for w in cfg.webhooks] == [("a", 0.5)]
