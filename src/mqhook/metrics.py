"""Prometheus metrics: every mqhook metric defined once, read from plain ints at scrape time.

The hot paths only bump plain integers (``stats.Stats``, ``webhook.counters.Counters``); nothing
here runs until Prometheus scrapes ``GET /metrics``. Then ``MqhookCollector.collect`` builds the
metric families from those integers, the broker's gauges and each webhook's counters and
histograms. The collector lives on its own ``CollectorRegistry`` (never the global one), next to
prometheus_client's ``ProcessCollector`` (``process_cpu_seconds_total``,
``process_resident_memory_bytes``, ``process_open_fds``...: the standard names, kept as they are).

Conventions (DESIGN.md habit 11): the ``mqhook_`` prefix, ``_total`` on counters, units as
suffixes (``_seconds``, ``_bytes``), and label values from closed sets only: packet type names,
QoS ``"0"``-``"2"``, the reason tuples of ``stats``, webhook names and the outcome names of
``webhook.counters``. Never a client id or a topic. Every series exists at zero from start-up:
reasons that only appear at runtime (a connect result, a disconnect reason) are pre-declared
here or in ``stats``.

Per node: every metric is the node's own (a ``--workers`` worker's are its own, on its own admin
port); ``mqhook_node_info{node}`` names the node, and Prometheus' ``instance`` label tells the
scrape targets apart, so sums across nodes are ``sum without (instance)``. No other metric has a
``node`` label. While clustered (``[cluster] nats_url``), ``mqhook_cluster_*`` are added: whether
NATS is connected, and the counters of the bridge and of each of its parts (``cluster_counters``:
the parts are iterated generically, named by their ``name`` attribute or their class).

``LoopLag`` measures event-loop lag: a timer armed every ``interval`` seconds, and how late it runs.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from mqhook import __version__
from mqhook.mqtt import reason as R
from mqhook.mqtt.packets import PACKET_NAMES
from mqhook.native import IMPLEMENTATIONS
from mqhook.webhook.counters import Histogram
from mqhook.webhook.redact import url_without_password

if TYPE_CHECKING:
    import asyncio

    from mqhook.broker.broker import Broker
    from mqhook.server.listeners import ListenerStats
    from mqhook.webhook.webhook import Webhook


class MetricDef(NamedTuple):
    """One metric: its full name, type (``counter``, ``gauge``, ``histogram``), help and labels."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...] = ()


def _c(name: str, help: str, *labels: str) -> MetricDef:
    return MetricDef(name, "counter", help, labels)


def _g(name: str, help: str, *labels: str) -> MetricDef:
    return MetricDef(name, "gauge", help, labels)


def _h(name: str, help: str, *labels: str) -> MetricDef:
    return MetricDef(name, "histogram", help, labels)


# -- broker ---------------------------------------------------------------------------------------
CONNECTIONS = _g("mqhook_connections", "MQTT connections that completed CONNECT and are open.")
SOCKETS = _g("mqhook_sockets", "MQTT connections open, connected or not (at most max_connections).")
MAX_CONNECTIONS = _g("mqhook_max_connections", "MQTT connections allowed at once (mqtt.max_connections, or auto).")
SESSIONS = _g("mqhook_sessions", "Sessions: connected, or kept for their expiry interval.")
SUBSCRIPTIONS = _g("mqhook_subscriptions", "Subscriptions of all sessions, shared ones included.")
RETAINED = _g("mqhook_retained_messages", "Retained messages stored.")
RETAINED_BYTES = _g(
    "mqhook_retained_bytes", "Bytes of the retained messages' topics and payloads (at most max_retained_bytes)."
)
PAUSED = _g(
    "mqhook_connections_paused",
    "Connections the broker does not read on: backpressure holds what they send, they do not read "
    "what they are sent (write_buffer_full), or they are over messages_rate or bytes_rate (rate_limit).",
    "reason",
)
SUBSCRIBERS_BEHIND = _g(
    "mqhook_subscribers_behind",
    "QoS 1/2 subscribers a window behind that make their publishers wait (at most flow_control_timeout).",
)
FLOW_TIMEOUTS = _c(
    "mqhook_flow_control_timeouts_total",
    "Times a subscriber was still behind after flow_control_timeout and was left to its queue.",
)
PACKETS_RECEIVED = _c("mqhook_packets_received_total", "MQTT packets received, by packet type.", "type")
PACKETS_SENT = _c("mqhook_packets_sent_total", "MQTT packets sent, by packet type.", "type")
MESSAGES_RECEIVED = _c("mqhook_messages_received_total", "PUBLISH messages received from clients, by QoS.", "qos")
MESSAGES_SENT = _c("mqhook_messages_sent_total", "PUBLISH messages sent to subscribers, by QoS.", "qos")
MESSAGES_DROPPED = _c(
    "mqhook_messages_dropped_total", "Messages that reached no subscriber or were refused on arrival.", "reason"
)
DELIVERIES_DROPPED = _c("mqhook_deliveries_dropped_total", "Copies of a message one subscriber did not get.", "reason")
RECEIVED_BYTES = _c("mqhook_received_bytes_total", "Bytes read from MQTT connections.")
SENT_BYTES = _c("mqhook_sent_bytes_total", "Bytes written to MQTT connections.")
CONNECTS = _c("mqhook_connects_total", "CONNECT packets handled, by result (CONNACK reason name).", "result")
DISCONNECTS = _c("mqhook_disconnects_total", "Closed client connections, by reason (EMQX names).", "reason")
CLOSED_BEFORE_CONNECT = _c(
    "mqhook_connections_closed_before_connect_total",
    "Connections closed before a CONNECT was accepted, by reason (a refused CONNECT counts in connects_total).",
    "reason",
)
AUTHORIZATIONS = _c(
    "mqhook_authorization_checks_total", "Authorization decisions, by action and result.", "action", "result"
)
LIMITS_EXCEEDED = _c(
    "mqhook_limits_exceeded_total",
    "Times a limit bit, by the setting's name: a connection closed before CONNECT, a client's reading paused, "
    "a subscription, topic, retained message or session refused, a connection closed (README Limits).",
    "limit",
)
BROKER_METRICS = (
    CONNECTIONS,
    SOCKETS,
    MAX_CONNECTIONS,
    SESSIONS,
    SUBSCRIPTIONS,
    RETAINED,
    RETAINED_BYTES,
    PAUSED,
    SUBSCRIBERS_BEHIND,
    FLOW_TIMEOUTS,
    PACKETS_RECEIVED,
    PACKETS_SENT,
    MESSAGES_RECEIVED,
    MESSAGES_SENT,
    MESSAGES_DROPPED,
    DELIVERIES_DROPPED,
    RECEIVED_BYTES,
    SENT_BYTES,
    CONNECTS,
    DISCONNECTS,
    CLOSED_BEFORE_CONNECT,
    AUTHORIZATIONS,
    LIMITS_EXCEEDED,
)

# -- listeners ------------------------------------------------------------------------------------
LS = "listener"
LISTENER_CONNECTIONS = _g(
    "mqhook_listener_connections", "MQTT connections open on the listener (past TLS and WebSocket set-up).", LS
)
LISTENER_MAX_CONNECTIONS = _g(
    "mqhook_listener_max_connections",
    "The listener's own max_connections; 0 = none (mqtt.max_connections applies).",
    LS,
)
LISTENER_ACCEPTED = _c("mqhook_listener_connections_accepted_total", "MQTT connections opened on the listener.", LS)
LISTENER_REFUSED = _c(
    "mqhook_listener_refused_total",
    "Connections the listener refused, by reason: max_connections (CONNACK 0x97), tls_handshake, ws_upgrade.",
    LS,
    "reason",
)
LISTENER_METRICS = (LISTENER_CONNECTIONS, LISTENER_MAX_CONNECTIONS, LISTENER_ACCEPTED, LISTENER_REFUSED)

# -- webhooks -------------------------------------------------------------------------------------
WH = "webhook"
WH_MATCHED = _c("mqhook_webhook_events_matched_total", "Events offered to the webhook (accepted or not).", WH)
WH_DELIVERED = _c("mqhook_webhook_events_delivered_total", "Events in a request answered 2xx.", WH)
WH_FAILED = _c("mqhook_webhook_events_failed_total", "Events in a request answered with a non-retried status.", WH)
WH_DROPPED = _c("mqhook_webhook_events_dropped_total", "Events given up, by reason.", WH, "reason")
WH_RETRIED = _c("mqhook_webhook_events_retried_total", "Events sent again: one per event per retry.", WH)
WH_REQUESTS = _c("mqhook_webhook_requests_total", "HTTP attempts (first tries and retries), by outcome.", WH, "outcome")
WH_QUEUE_EVENTS = _g("mqhook_webhook_queue_events", "Events waiting in the webhook's queue.", WH)
WH_QUEUE_BYTES = _g("mqhook_webhook_queue_bytes", "Bytes of event JSON waiting in the webhook's queue.", WH)
WH_INFLIGHT = _g("mqhook_webhook_inflight_requests", "Requests taken from the queue and not finished.", WH)
WH_INFLIGHT_EVENTS = _g("mqhook_webhook_inflight_events", "Events in the unfinished requests.", WH)
WH_SATURATED = _g("mqhook_webhook_saturated", "1 while backpressure pauses publishers for this webhook.", WH)
WH_LAST_ERROR = _g(
    "mqhook_webhook_last_error_timestamp_seconds", "Unix time of the last failed attempt; 0 if none.", WH
)
WH_SPOOL_BYTES = _g("mqhook_webhook_spool_bytes", "Bytes of records in a durable webhook's spool files.", WH)
WH_SPOOL_CORRUPT = _c(
    "mqhook_webhook_spool_corrupt_records_total", "Corrupt or cut spool records skipped at start-up.", WH
)
WH_DEAD_LETTERS = _g("mqhook_webhook_dead_letters", "Events kept in the webhook's dead-letter store.", WH)
WH_DEAD_LETTERED = _c("mqhook_webhook_dead_lettered_total", "Events given up and stored as dead letters.", WH)
WH_DEAD_REFUSED = _c(
    "mqhook_webhook_dead_letter_refused_total", "Events given up that the full dead-letter store refused.", WH
)
WH_REQUEST_SECONDS = _h("mqhook_webhook_request_duration_seconds", "Duration of one HTTP attempt.", WH)
WH_BATCH_EVENTS = _h("mqhook_webhook_batch_size_events", "Events per request.", WH)
WH_DELIVERY_SECONDS = _h(
    "mqhook_webhook_delivery_latency_seconds",
    "Event created -> receiver's 2xx, once per event (the age of the oldest event of its batch).",
    WH,
)
WEBHOOK_METRICS = (
    WH_MATCHED,
    WH_DELIVERED,
    WH_FAILED,
    WH_DROPPED,
    WH_RETRIED,
    WH_REQUESTS,
    WH_QUEUE_EVENTS,
    WH_QUEUE_BYTES,
    WH_INFLIGHT,
    WH_INFLIGHT_EVENTS,
    WH_SATURATED,
    WH_LAST_ERROR,
    WH_SPOOL_BYTES,
    WH_SPOOL_CORRUPT,
    WH_DEAD_LETTERS,
    WH_DEAD_LETTERED,
    WH_DEAD_REFUSED,
    WH_REQUEST_SECONDS,
    WH_BATCH_EVENTS,
    WH_DELIVERY_SECONDS,
)

# -- process --------------------------------------------------------------------------------------
NATIVE_MODULES = ("topic_trie", "msgid", "eventjson")  # keys of native.IMPLEMENTATIONS
LOOP_LAG = _g("mqhook_event_loop_lag_seconds", "How late the last periodic event-loop timer ran.")
LOOP_LAG_MAX = _g("mqhook_event_loop_lag_max_seconds", "The largest event-loop lag of the last minute.")
BUILD_INFO = _g(
    "mqhook_build_info",
    "Always 1; the mqhook version, and whether the topic trie, the message ids and the event JSON writer are "
    "compiled (cython) or not (python).",
    "version",
    *NATIVE_MODULES,
)
NODE_INFO = _g("mqhook_node_info", "Always 1; the node's name (NODE/wK for a --workers worker).", "node")
PROCESS_METRICS = (LOOP_LAG, LOOP_LAG_MAX, BUILD_INFO, NODE_INFO)

ALL_METRICS = BROKER_METRICS + LISTENER_METRICS + WEBHOOK_METRICS + PROCESS_METRICS

# -- cluster (only while clustered: [cluster] nats_url, or --workers) --------------------------------
CLUSTER_CONNECTED = _g("mqhook_cluster_connected", "1 while both of the node's NATS connections are up, else 0.")
CLUSTER_COUNTS = _c(
    "mqhook_cluster_counts_total",
    "The cluster's counters on this node, by part (bridge: messages published to NATS, received, delivered "
    "to local subscribers, too_long, errors; each other part its own) and counter name.",
    "part",
    "counter",
)
CLUSTER_METRICS = (CLUSTER_CONNECTED, CLUSTER_COUNTS)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def cluster_counters(bridge: Any) -> dict[str, dict[str, float]]:
    """The bridge's counters (``bridge``) and each part's, by part name: its ``name`` attribute if it
    is a string, else its class name in snake case (a second part of one name gets ``_2``...)."""
    out: dict[str, dict[str, float]] = {"bridge": dict(bridge.counters)}
    for part in getattr(bridge, "parts", ()):
        name = getattr(part, "name", None)
        base = name if isinstance(name, str) and name else _snake(type(part).__name__)
        key, n = base, 1
        while key in out:
            n += 1
            key = f"{base}_{n}"
        counters = getattr(part, "counters", None) or {}
        out[key] = {k: v for k, v in counters.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return out


def cluster_connected(bridge: Any) -> bool:
    clients = [getattr(bridge, "nc", None), getattr(bridge, "qc", None)]
    return all(c is not None and c.is_connected for c in clients)


def cluster_snapshot(bridge: Any) -> dict[str, Any]:
    """The ``cluster`` section of ``/api/v1/stats``."""
    urls = [url_without_password(u.strip()) for u in str(bridge.nats_url).split(",")]
    return {
        "node": bridge.node,
        "nats_url": ",".join(urls),
        "connected": cluster_connected(bridge),
        "counters": cluster_counters(bridge),
    }


# CONNECT results the broker can produce (connect.py), so each series exists before it happens.
CONNECT_RESULTS = tuple(
    R.NAMES[code]
    for code in (
        R.SUCCESS,
        R.CLIENT_IDENTIFIER_NOT_VALID,
        R.BAD_AUTHENTICATION_METHOD,
        R.TOPIC_NAME_INVALID,
        R.QOS_NOT_SUPPORTED,
        R.RETAIN_NOT_SUPPORTED,
        R.UNSUPPORTED_PROTOCOL_VERSION,
        R.QUOTA_EXCEEDED,
    )
)
QOS_LABELS = ("0", "1", "2")


class LoopLag:
    """Event-loop lag, sampled every ``interval`` seconds with one timer (no task).

    ``last`` is how late the latest timer ran; ``max`` the largest of the last ``window`` samples.
    """

    def __init__(self, interval: float = 0.5, window: int = 120) -> None:
        self.interval = interval
        self.last = 0.0
        self._recent: deque[float] = deque(maxlen=window)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._arm()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    @property
    def max(self) -> float:
        return max(self._recent, default=0.0)

    def _arm(self) -> None:
        assert self._loop is not None
        self._due = self._loop.time() + self.interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        # A timer may run up to the loop's clock resolution early: that is no lag.
        self.last = max(0.0, self._loop.time() - self._due)
        self._recent.append(self.last)
        self._arm()


def _family(d: MetricDef) -> Metric:
    if d.kind == "counter":
        return CounterMetricFamily(d.name, d.help, labels=d.labels)
    if d.kind == "gauge":
        return GaugeMetricFamily(d.name, d.help, labels=d.labels)
    return HistogramMetricFamily(d.name, d.help, labels=d.labels)


def _simple(d: MetricDef, samples: Iterable[tuple[tuple[str, ...], float]]) -> Metric:
    fam = _family(d)
    for labels, value in samples:
        fam.add_metric(labels, value)  # type: ignore[attr-defined]
    return fam


_LE_CACHE: dict[tuple[float, ...], list[str]] = {}


def _buckets(h: Histogram) -> list[tuple[str, float]]:
    """Cumulative ``(le, count)`` pairs, ``+Inf`` last."""
    les = _LE_CACHE.get(h.bounds)
    if les is None:
        les = _LE_CACHE[h.bounds] = [floatToGoString(b) for b in h.bounds] + ["+Inf"]
    out: list[tuple[str, float]] = []
    acc = 0
    for le, n in zip(les, h.counts, strict=True):
        acc += n
        out.append((le, acc))
    return out


class MqhookCollector(Collector):
    """Reads the broker's ``Stats`` and gauges and every webhook's counters at scrape time."""

    def __init__(
        self,
        broker: Broker,
        webhooks: Iterable[Webhook],
        loop_lag: LoopLag | None = None,
        listeners: Iterable[ListenerStats] = (),
        node: str = "",
        cluster: Callable[[], Any] | None = None,
    ) -> None:
        self.broker = broker
        self.webhooks = webhooks
        self.loop_lag = loop_lag
        self.listeners = listeners
        self.node = node
        self.cluster = cluster  # -> the ClusterBridge, or None when not clustered

    def collect(self) -> Iterator[Metric]:
        yield from self._broker()
        yield from self._listeners()
        yield from self._webhooks()
        lag = self.loop_lag
        yield _simple(LOOP_LAG, [((), lag.last if lag else 0.0)])
        yield _simple(LOOP_LAG_MAX, [((), lag.max if lag else 0.0)])
        native = tuple(IMPLEMENTATIONS.get(key, "not_loaded") for key in NATIVE_MODULES)
        yield _simple(BUILD_INFO, [((__version__, *native), 1)])
        yield _simple(NODE_INFO, [((self.node,), 1)])
        bridge = self.cluster() if self.cluster is not None else None
        if bridge is not None:
            yield _simple(CLUSTER_CONNECTED, [((), 1 if cluster_connected(bridge) else 0)])
            counts = cluster_counters(bridge)
            yield _simple(CLUSTER_COUNTS, [((part, k), v) for part, c in counts.items() for k, v in c.items()])

    def _broker(self) -> Iterator[Metric]:
        s = self.broker.stats
        gauges = self.broker.gauges()
        yield _simple(CONNECTIONS, [((), gauges["connections"])])
        yield _simple(SOCKETS, [((), gauges["sockets"])])
        yield _simple(MAX_CONNECTIONS, [((), gauges["max_connections"])])
        yield _simple(SESSIONS, [((), gauges["sessions"])])
        yield _simple(SUBSCRIPTIONS, [((), gauges["subscriptions"])])
        yield _simple(RETAINED, [((), gauges["retained"])])
        yield _simple(RETAINED_BYTES, [((), gauges["retained_bytes"])])
        flow = self.broker.flow_gauges
        yield _simple(
            PAUSED, [((reason,), flow[reason]) for reason in ("backpressure", "write_buffer_full", "rate_limit")]
        )
        yield _simple(SUBSCRIBERS_BEHIND, [((), flow["subscribers_behind"])])
        yield _simple(FLOW_TIMEOUTS, [((), s.flow_control_timeouts)])
        yield _simple(PACKETS_RECEIVED, [((name,), s.packets_received[t]) for t, name in PACKET_NAMES.items()])
        yield _simple(PACKETS_SENT, [((name,), s.packets_sent[t]) for t, name in PACKET_NAMES.items()])
        yield _simple(MESSAGES_RECEIVED, zip([(q,) for q in QOS_LABELS], s.messages_received, strict=True))
        yield _simple(MESSAGES_SENT, zip([(q,) for q in QOS_LABELS], s.messages_sent, strict=True))
        yield _simple(MESSAGES_DROPPED, [((r,), n) for r, n in s.messages_dropped.items()])
        yield _simple(DELIVERIES_DROPPED, [((r,), n) for r, n in s.deliveries_dropped.items()])
        yield _simple(RECEIVED_BYTES, [((), s.bytes_received)])
        yield _simple(SENT_BYTES, [((), s.bytes_sent)])
        connects = dict.fromkeys(CONNECT_RESULTS, 0)
        connects.update(s.connects)
        yield _simple(CONNECTS, [((r,), n) for r, n in connects.items()])
        yield _simple(DISCONNECTS, [((r,), n) for r, n in s.disconnects.items()])
        yield _simple(CLOSED_BEFORE_CONNECT, [((r,), n) for r, n in s.closed_before_connect.items()])
        authz = [((action, "allow"), n[1]) for action, n in s.authz.items()]
        authz += [((action, "deny"), n[0]) for action, n in s.authz.items()]
        yield _simple(AUTHORIZATIONS, authz)
        yield _simple(LIMITS_EXCEEDED, [((limit,), n) for limit, n in s.limits.items()])

    def _listeners(self) -> Iterator[Metric]:
        listeners = list(self.listeners)
        yield _simple(LISTENER_CONNECTIONS, [((ls.name,), ls.connections) for ls in listeners])
        yield _simple(LISTENER_MAX_CONNECTIONS, [((ls.name,), ls.max_connections) for ls in listeners])
        yield _simple(LISTENER_ACCEPTED, [((ls.name,), ls.accepted) for ls in listeners])
        yield _simple(LISTENER_REFUSED, [((ls.name, r), n) for ls in listeners for r, n in ls.refused.items()])

    def _webhooks(self) -> Iterator[Metric]:
        hooks = list(self.webhooks)
        names = [(h.name,) for h in hooks]
        pairs = list(zip(names, hooks, strict=True))
        yield _simple(WH_MATCHED, [(k, h.matched) for k, h in pairs])
        yield _simple(WH_DELIVERED, [(k, h.success) for k, h in pairs])
        yield _simple(WH_FAILED, [(k, h.failed) for k, h in pairs])
        yield _simple(WH_DROPPED, [((h.name, r), n) for h in hooks for r, n in h.dropped.items()])
        yield _simple(WH_RETRIED, [(k, h.retried) for k, h in pairs])
        yield _simple(WH_REQUESTS, [((h.name, o), n) for h in hooks for o, n in h.outcomes.items()])
        yield _simple(WH_QUEUE_EVENTS, [(k, h.queuing) for k, h in pairs])
        yield _simple(WH_QUEUE_BYTES, [(k, h.queuing_bytes) for k, h in pairs])
        yield _simple(WH_INFLIGHT, [(k, h.inflight) for k, h in pairs])
        yield _simple(WH_INFLIGHT_EVENTS, [(k, h.inflight_events) for k, h in pairs])
        yield _simple(WH_SATURATED, [(k, 1 if h.saturated else 0) for k, h in pairs])
        yield _simple(WH_LAST_ERROR, [(k, h.last_error_at or 0.0) for k, h in pairs])
        stores = [(k, h.stats()) for k, h in pairs]
        yield _simple(WH_SPOOL_BYTES, [(k, st["spool_bytes"]) for k, st in stores])
        yield _simple(WH_SPOOL_CORRUPT, [(k, st["spool_corrupt"]) for k, st in stores])
        yield _simple(WH_DEAD_LETTERS, [(k, st["dead_letters"]) for k, st in stores])
        yield _simple(WH_DEAD_LETTERED, [(k, h.dead_lettered) for k, h in pairs])
        yield _simple(WH_DEAD_REFUSED, [(k, h.dead_letter_refused) for k, h in pairs])
        for d, attr in (
            (WH_REQUEST_SECONDS, "request_seconds"),
            (WH_BATCH_EVENTS, "batch_events"),
            (WH_DELIVERY_SECONDS, "delivery_seconds"),
        ):
            fam = HistogramMetricFamily(d.name, d.help, labels=d.labels)
            for k, h in pairs:
                hist: Histogram = getattr(h, attr)
                fam.add_metric(list(k), _buckets(hist), sum_value=hist.sum)
            yield fam


def build_registry(
    broker: Broker,
    webhooks: Iterable[Webhook],
    loop_lag: LoopLag | None = None,
    process: bool = True,
    listeners: Iterable[ListenerStats] = (),
    node: str = "",
    cluster: Callable[[], Any] | None = None,
) -> CollectorRegistry:
    """A registry of its own: the mqhook collector, plus the standard process metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MqhookCollector(broker, webhooks, loop_lag, listeners, node, cluster))
    if process:
        ProcessCollector(registry=registry)
    return registry
