"""mqhook: an MQTT 3.1.1 / 5.0 broker on uvloop with EMQX-compatible webhooks."""

__version__ = "0.1.0"
