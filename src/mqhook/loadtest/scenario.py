"""What ``mqhook bench`` runs: the ``Scenario`` (picklable, validated) and how it is split.

Topologies (publisher ``p`` always publishes to ``<prefix>/<token>/<p>``):

- ``fan-in`` / ``fan-out``: every subscriber subscribes to ``<prefix>/<token>/+`` and so gets
  every message of every publisher (N:1 and 1:M are the same rule with different counts);
- ``1:1``: subscriber ``i`` subscribes to publisher ``i``'s topic only (needs N = M);
- ``shared``: every subscriber subscribes to ``$share/<group>/<prefix>/<token>/+``: each message
  reaches exactly one of them.

``token`` is fresh for every run, so runs (and concurrent benches) never see each other's messages.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from mqhook.loadtest.packets import MAX_PUBLISHERS, MIN_PAYLOAD

MODES = ("pubsub", "conn-storm", "idle")
TOPOLOGIES = ("fan-in", "fan-out", "1:1", "shared")
DEFAULT_COUNT = 100_000
WINDOW_QOS0 = 10_000
# Below both brokers' per-session queue (mqhook mqtt.max_queued_messages and mosquitto
# max_queued_messages are 1000 by default): a closed loop that never makes them drop.
WINDOW_QOS12 = 1_000


@dataclass(frozen=True)
class Scenario:
    """One load scenario; see ``mqhook bench --help`` for each field's meaning."""

    mode: str = "pubsub"
    pubs: int = 1
    subs: int = 1
    topology: str = "fan-in"
    qos: int = 0
    payload: int = 64
    rate: float = 0.0  # messages/s, all publishers together; 0 = as fast as possible
    count: int | None = DEFAULT_COUNT  # messages, all publishers together
    duration: float | None = None  # seconds of publishing
    window: int | None = None  # None = automatic (WINDOW_QOS0 / WINDOW_QOS12); 0 = open loop
    inflight: int = 32  # unacknowledged QoS 1/2 PUBLISHes per publisher
    chunk: int = 100  # PUBLISHes per transport.write at most
    procs: int = 1
    stall: float = 5.0  # seconds without progress that end a wait
    timeout: float | None = None  # hard cap of one run; None = automatic
    connections: int = 1000  # conn-storm and idle
    connect_rate: float = 0.0  # conn-storm: connects/s, 0 = as fast as the concurrency allows
    concurrency: int = 100  # connection attempts in progress at once
    hold: bool = False  # conn-storm: keep every connection open until the end
    hold_seconds: float = 2.0  # idle: wait this long with all connections open, then read RSS
    keepalive: int = 60
    connect_timeout: float = 10.0
    topic_prefix: str = "mqhook-bench"
    share_group: str = "bench"
    # Test-only fault injection, publisher 0: skip these sequence numbers (count them as sent
    # but never write them), or write these twice. What is tested is the detection.
    inject_skip: tuple[int, ...] = field(default=())
    inject_dup: tuple[int, ...] = field(default=())

    def validate(self) -> Scenario:
        """Raise ValueError naming the bad field; returns self."""
        checks = [
            (self.mode in MODES, f"mode must be one of {', '.join(MODES)}"),
            (self.topology in TOPOLOGIES, f"topology must be one of {', '.join(TOPOLOGIES)}"),
            (self.qos in (0, 1, 2), "qos must be 0, 1 or 2"),
            (self.payload >= MIN_PAYLOAD, f"payload must be at least {MIN_PAYLOAD} bytes (id, sequence, time)"),
            (self.rate >= 0, "rate must be >= 0"),
            (self.count is None or self.count >= 1, "count must be >= 1"),
            (self.duration is None or self.duration > 0, "duration must be > 0"),
            (self.count is not None or self.duration is not None, "give a count or a duration"),
            (self.window is None or self.window >= 0, "window must be >= 0"),
            (1 <= self.inflight <= 65000, "inflight must be 1..65000"),
            (self.chunk >= 1, "chunk must be >= 1"),
            (1 <= self.procs <= 64, "procs must be 1..64"),
            (self.stall > 0, "stall must be > 0"),
            (self.timeout is None or self.timeout > 0, "timeout must be > 0"),
            (self.connections >= 1, "connections must be >= 1"),
            (self.connect_rate >= 0, "connect-rate must be >= 0"),
            (self.concurrency >= 1, "concurrency must be >= 1"),
            (self.hold_seconds >= 0, "hold-seconds must be >= 0"),
            (0 <= self.keepalive <= 65535, "keepalive must be 0..65535"),
        ]
        if self.mode == "pubsub":
            checks += [
                (1 <= self.pubs <= MAX_PUBLISHERS, f"pubs must be 1..{MAX_PUBLISHERS}"),
                (self.subs >= 0, "subs must be >= 0"),
                (self.topology != "1:1" or self.pubs == self.subs, "topology 1:1 needs as many subs as pubs"),
            ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self

    def replace(self, **changes: object) -> Scenario:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    # -- derived figures ---------------------------------------------------------------------
    @property
    def effective_window(self) -> int:
        if self.window is not None:
            return self.window
        return WINDOW_QOS0 if self.qos == 0 else WINDOW_QOS12

    @property
    def fan(self) -> int:
        """Deliveries expected per published message."""
        return self.subs if self.topology in ("fan-in", "fan-out") else (1 if self.subs else 0)

    def run_timeout(self) -> float:
        """The hard cap of one run: given, or the expected length plus a margin."""
        if self.timeout is not None:
            return self.timeout
        expected = 0.0
        if self.mode == "pubsub":
            if self.duration is not None:
                expected = self.duration
            elif self.count is not None and self.rate:
                expected = self.count / self.rate
        elif self.connect_rate:
            expected = self.connections / self.connect_rate
        return expected + self.hold_seconds + 120.0

    def pub_counts(self) -> list[int | None]:
        """Messages per publisher (None: until the duration ends)."""
        if self.count is None:
            return [None] * self.pubs
        base, extra = divmod(self.count, self.pubs)
        return [base + (1 if p < extra else 0) for p in range(self.pubs)]

    def pub_topic(self, token: str, pub: int) -> str:
        return f"{self.topic_prefix}/{token}/{pub}"

    def sub_filter(self, token: str, sub: int) -> str:
        if self.topology == "1:1":
            return self.pub_topic(token, sub)
        flt = f"{self.topic_prefix}/{token}/+"
        return f"$share/{self.share_group}/{flt}" if self.topology == "shared" else flt

    def sub_sources(self, sub: int) -> list[int] | None:
        """Publishers subscriber ``sub`` should hear from (None: all)."""
        return [sub] if self.topology == "1:1" else None

    def describe(self) -> str:
        """One line for the report header."""
        if self.mode == "conn-storm":
            rate = f"{self.connect_rate:g}/s" if self.connect_rate else "as fast as possible"
            return (
                f"connection storm: {self.connections:,} connects, {rate}, concurrency {self.concurrency}, "
                f"{'held open' if self.hold else 'each closed after CONNACK'}, {self.procs} generator process(es)"
            )
        if self.mode == "idle":
            each = f"one QoS {self.qos} subscription each"
            return f"idle connections: {self.connections:,}, {each}, hold {self.hold_seconds:g}s"
        rate = f"{self.rate:,.0f} msg/s" if self.rate else "as fast as possible"
        amount = []
        if self.count is not None:
            amount.append(f"{self.count:,} msgs")
        if self.duration is not None:
            amount.append(f"{self.duration:g}s")
        window = self.effective_window
        return (
            f"{self.pubs} pub -> {self.subs} sub ({self.topology}), QoS {self.qos}, {self.payload} B payload, {rate}, "
            f"{' or '.join(amount)}, window {window if window else 'open loop'}"
            f"{f', inflight {self.inflight}' if self.qos else ''}, {self.procs} generator process(es)"
        )


@dataclass(frozen=True)
class Assignment:
    """The share of one worker process: publisher and subscriber indices, connection range."""

    worker: int
    token: str
    pubs: tuple[int, ...] = ()
    subs: tuple[int, ...] = ()
    conn_start: int = 0
    conn_stop: int = 0


def assignments(sc: Scenario, token: str) -> list[Assignment]:
    """Split the clients over ``sc.procs`` workers: subscribers round-robin from worker 0,
    publishers continuing the round-robin, connections in contiguous equal ranges."""
    n = sc.procs
    pubs: list[list[int]] = [[] for _ in range(n)]
    subs: list[list[int]] = [[] for _ in range(n)]
    if sc.mode == "pubsub":
        for s in range(sc.subs):
            subs[s % n].append(s)
        for p in range(sc.pubs):
            pubs[(p + sc.subs) % n].append(p)
    out = []
    for w in range(n):
        start = sc.connections * w // n
        stop = sc.connections * (w + 1) // n
        out.append(Assignment(w, token, tuple(pubs[w]), tuple(subs[w]), start, stop))
    return out
