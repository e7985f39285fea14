"""Config errors name the field, the value and what was expected; layers apply in order."""

from __future__ import annotations

import pytest

from mqhook import config
from mqhook.errors import ConfigError


@pytest.mark.parametrize(
    ("tree", "expected"),
    [
        ({"mqtt": {"max_packet_size": "big"}}, "$.mqtt.max_packet_size: 'big' is invalid: Expected `int`"),
        ({"mqtt": {"max_qos": 3}}, "$.mqtt.max_qos: 3 is out of range; expected an integer from 0 to 2"),
        ({"mqtt": {"bind": "nonsense"}}, "$.mqtt.bind: 'nonsense' is not a valid bind address; expected HOST:PORT"),
        ({"mqtt": {"foo": 1}}, "$.mqtt.foo: unknown setting; expected one of: bind, max_packet_size"),
        ({"bar": 1}, "$.bar: unknown setting; expected one of: node, mqtt, admin, log, webhooks"),
        (
            {"webhooks": [{"name": "a", "url": "http://127.0.0.1/", "overflow": "drop"}]},
            "$.webhooks[0].overflow: 'drop' is invalid; expected one of drop_oldest, drop_new, backpressure",
        ),
        (
            {"webhooks": [{"name": "a", "url": "http://127.0.0.1/", "pool_size": "x"}]},
            "$.webhooks[0].pool_size: 'x' is invalid: Expected `int`",
        ),
        (
            {"webhooks": [{"name": "a", "url": "http://127.0.0.1/", "bogus": 1}]},
            "$.webhooks[0].bogus: unknown setting; expected one of: name, url,",
        ),
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
