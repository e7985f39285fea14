"""Events layer: EMQX 5's events, built from the broker's hook points and routed to consumers.

Modules, bottom up: ``props`` (``*_props`` objects), ``model`` (one msgspec Struct per event: the
shapes), ``writer`` (the five message events, written straight to JSON), ``build`` (client and
session events), ``catalogue`` (the event table: one row per event), ``consumer`` (the contract
consumers meet) and ``router`` (``EventRouter``: hook points -> events -> consumers, backpressure).
"""

from __future__ import annotations

from mqhook.events.catalogue import EVENT_NAMES, EVENT_TYPES, EVENTS, MESSAGE_EVENTS, Event
from mqhook.events.consumer import EventConsumer
from mqhook.events.props import EMPTY_ATTRS, EMPTY_PROPS, FrozenDict, printable_props
from mqhook.events.router import EventRouter
from mqhook.events.writer import BASE64, PAYLOAD_ENCODINGS, PLAIN, MessageWriter, event_json

__all__ = [
    "BASE64",
    "EMPTY_ATTRS",
    "EMPTY_PROPS",
    "EVENTS",
    "EVENT_NAMES",
    "EVENT_TYPES",
    "MESSAGE_EVENTS",
    "PAYLOAD_ENCODINGS",
    "PLAIN",
    "Event",
    "EventConsumer",
    "EventRouter",
    "FrozenDict",
    "MessageWriter",
    "event_json",
    "printable_props",
]
