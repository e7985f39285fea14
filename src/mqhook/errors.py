"""The one root error of mqhook and its families.

Protocol errors carry the MQTT 5 reason code that closes the connection; the
code is chosen where the violation is detected, so the edge never guesses.
"""

from __future__ import annotations


class MqhookError(Exception):
    """Root of every error mqhook raises on purpose."""


class ConfigError(MqhookError):
    """A configuration value is wrong; the message names the field, the value and what was expected."""


class ProtocolError(MqhookError):
    """An MQTT rule was broken by the peer. ``reason_code`` is the MQTT 5 code to close with."""

    def __init__(self, reason_code: int, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class MalformedPacket(ProtocolError):
    """The bytes cannot be parsed as an MQTT packet [MQTT-4.13.1-1]: reason code 0x81."""

    def __init__(self, message: str) -> None:
        super().__init__(0x81, message)
