"""[cluster] across a NATS cluster (issue 14, multi-machine mode): three nats-servers on 127.0.0.1
with routes between them (JetStream on, ``replicas = 3``) and one mqhook node on each, connected to
its own server only; the servers carry the messages and the interest between the nodes.

The nodes and servers are started once for the module; each test uses its own topics (``uid``)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from itertools import permutations

import pytest

from conftest import Broker

from .natsserver import NATS_SERVER, SKIP_REASON, NatsServer, free_port, start_cluster
from .pahoc import V5, V311, Client
from .test_cluster import await_interest
from .util import wait_until

pytestmark = pytest.mark.skipif(NATS_SERVER is None, reason=SKIP_REASON)

NODE_CFG = 'node = "mqhook@{name}"\n[cluster]\nnats_url = "{url}"\nreplicas = 3\n'


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NatsServer]]:
    """Three nats-servers with routes between them."""
    servers = start_cluster(tmp_path_factory.mktemp("nats3"), 3)
    try:
        yield servers
    finally:
        for server in servers:
            server.terminate()


@pytest.fixture(scope="module")
def trio(servers: list[NatsServer], tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Broker]]:
    """Nodes a, b, c, each on its own nats-server of the three."""
    nodes: list[Broker] = []
    try:
        tmp = tmp_path_factory.mktemp("nodes")
        for name, server in zip("abc", servers, strict=True):
            nodes.append(Broker(tmp, config=NODE_CFG.format(name=name, url=server.url)))
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def test_round_trips_between_every_pair_qos_012_v311_and_v5(trio, clients, uid):
    """Each ordered pair of nodes, QoS 0/1/2, MQTT 3.1.1 and 5: exactly once, payload and QoS kept."""
    protos = {"v3": V311, "v5": V5}
    subs = {(j, v): clients(trio[j], f"{uid}-s{j}{v}", protocol=p) for j in range(3) for v, p in protos.items()}
    pubs = {(i, v): clients(trio[i], f"{uid}-p{i}{v}", protocol=p) for i in range(3) for v, p in protos.items()}
    for (j, v), sub in subs.items():
        assert sub.subscribe(f"{uid}/to{j}/{v}/#", qos=2) == [2]
    for i, j in permutations(range(3), 2):
        for v in protos:
            await_interest(pubs[i, v], subs[j, v], f"{uid}/to{j}/{v}/from{i}/probe", timeout=10.0)
    for i, j in permutations(range(3), 2):
        for v in protos:
            for q in (0, 1, 2):
                pubs[i, v].publish(f"{uid}/to{j}/{v}/from{i}/q{q}", f"{i}{j}{v}{q}".encode(), qos=q)
    # Barrier: one publisher's messages stay in order through NATS, so once its marker is in,
    # everything it sent before (and any copy of it) has arrived too.
    for i, j in permutations(range(3), 2):
        for v in protos:
            pubs[i, v].publish(f"{uid}/to{j}/{v}/from{i}/end", b"end", qos=1)
    for (j, v), sub in subs.items():
        sub.wait_for(lambda s=sub: sum(m.payload == b"end" for m in s.messages) == 2, what="both markers")
        got = [(m.topic, m.payload, m.qos) for m in sub.received() if m.payload != b"end"]
        want = [
            (f"{uid}/to{j}/{v}/from{i}/q{q}", f"{i}{j}{v}{q}".encode(), q)
            for i in range(3)
            if i != j
            for q in (0, 1, 2)
        ]
        assert sorted(got) == sorted(want), (j, v)  # each exactly once, with its QoS
        # and in order per publisher
        for i in range(3):
            mine = [p for _, p, _ in got if p.startswith(f"{i}{j}".encode())]
            assert mine == sorted(mine), (i, j, v)


# Topics and filters with every character NATS gives a meaning to, empty levels, UTF-8, `$` topics.
HOSTILE_TOPICS = [
    "{u}/a/b/c",
    "{u}/a/*/c",
    "{u}/a/>/c",
    "{u}/a//c",
    "{u}/a/b/c/d",
    "{u}/a",
    "{u}/a/",
    "{u}/",
    "{u}//",
    "/{u}",
    "{u}/x.y",
    "{u}/x..y",
    "{u}/.",
    "{u}/*",
    "{u}/>",
    "{u}/=",
    "{u}/=2E",
    "{u}/=3D",
    "{u}/sp ace",
    "{u}/ ",
    "{u}/é/€/日本",
    "{u}/$x",
    "{u}/a.*.>",
    "$SYS/{u}",
    "$SYS/{u}/y",
    "${u}/z",
]
HOSTILE_FILTERS = [
    "#",
    "+",
    "+/+",
    "+/#",
    "/+",
    "/#",
    "{u}/#",
    "{u}/+",
    "{u}/+/",
    "{u}/a/+/c",
    "{u}/a/#",
    "{u}/+/+/+",
    "{u}/a/",
    "{u}//",
    "{u}/x.y",
    "{u}/.",
    "{u}/*",
    "{u}/>",
    "{u}/=",
    "{u}/=2E",
    "{u}/sp ace",
    "{u}/é/#",
    "{u}/é/+/日本",
    "$SYS/#",
    "$SYS/+",
    "$SYS/{u}/+",
    "+/{u}/y",
    "${u}/+",
]


def _marker(flt: str) -> str:
    """A topic ``flt`` matches, made of its levels with each wildcard replaced by ``mk``."""
    return "/".join("mk" if lvl in ("+", "#") else lvl for lvl in flt.split("/"))


def test_hostile_topics_across_nodes_match_as_on_one_node(trio, clients, uid):
    """Node a's own subscribers (its local trie) are the oracle: subscribers on b and c, with the same
    filters, get the same messages, each the same number of times."""
    topics = [t.format(u=uid) for t in HOSTILE_TOPICS]
    filters = [f.format(u=uid) for f in HOSTILE_FILTERS]
    markers = [_marker(f) for f in filters]  # an exact filter's marker is a topic too: told apart by payload
    watchers: list[Client] = []
    for n, node in enumerate(trio):
        w = clients(node, f"{uid}-w{n}", protocol=V5)
        for k, flt in enumerate(filters):  # one SUBSCRIBE each: its subscription identifier names it
            assert w.subscribe(flt, qos=1, sub_id=k + 1) == [1], flt
        watchers.append(w)
    pub = clients(trio[0], f"{uid}-p", protocol=V5)

    def seen(w: Client, payload: bytes) -> set[int]:
        return {sid for m in w.received() if m.payload == payload for sid in m.props.get("SubscriptionIdentifier", [])}

    # Interest: publish every filter's marker until every watcher has one for each of its filters.
    every = set(range(1, len(filters) + 1))
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline and not all(seen(w, b"probe") == every for w in watchers):
        for t in markers:
            pub.publish(t, b"probe", qos=0)
        wait_until(lambda: all(seen(w, b"probe") == every for w in watchers), timeout=0.3)
    assert [sorted(every - seen(w, b"probe")) for w in watchers] == [[], [], []], "no interest"
    for w in watchers:
        w.clear()  # a late probe may still come: probes are not counted below

    for t in topics:
        pub.publish(t, t.encode(), qos=1)
    for t in markers:
        pub.publish(t, b"final", qos=1)
    for w in watchers:
        w.wait_for(lambda w=w: seen(w, b"final") == every, timeout=10.0, what="every filter's final marker")

    def deliveries(w: Client) -> Counter[tuple[str, str]]:
        out: Counter[tuple[str, str]] = Counter()
        for m in w.received():
            if m.topic in topics and m.payload not in (b"probe", b"final"):
                assert m.payload == m.topic.encode()
                for sid in m.props.get("SubscriptionIdentifier", []):
                    out[filters[sid - 1], m.topic] += 1
        return out

    oracle = deliveries(watchers[0])
    # The oracle itself is right where it is easy to say: `$` topics are not matched by `#`, `+`,
    # `+/+`, `+/#`; wildcards do not match across levels; `.`, `*`, `>` are plain characters.
    assert {t for (f, t) in oracle if f == "#"} == {t for t in topics if not t.startswith("$")}
    assert {t for (f, t) in oracle if f == "$SYS/#"} == {f"$SYS/{uid}", f"$SYS/{uid}/y"}
    assert {t for (f, t) in oracle if f == f"{uid}/a/+/c"} == {f"{uid}/a/{x}/c" for x in ("b", "*", ">", "")}
    assert {t for (f, t) in oracle if f == f"{uid}/*"} == {f"{uid}/*"}
    assert {t for (f, t) in oracle if f == "+/+"} == {f"{uid}/{x}" for x in ("a", "", ".", "*", ">")} | {
        f"/{uid}",
        f"{uid}/x.y",
        f"{uid}/x..y",
        f"{uid}/=",
        f"{uid}/=2E",
        f"{uid}/=3D",
        f"{uid}/sp ace",
        f"{uid}/ ",
        f"{uid}/$x",
        f"{uid}/a.*.>",
    }
    assert set(oracle.values()) == {1}
    for n in (1, 2):
        # (one filter's messages may come through two NATS subscriptions, `a` and `a.>`, so the final
        # marker is not a strict barrier for all of them: wait a little for the rest)
        wait_until(lambda n=n: deliveries(watchers[n]) == oracle, timeout=5.0)
        remote = deliveries(watchers[n])
        assert remote == oracle, (
            f"node {'abc'[n]}: missing {sorted(set(oracle) - set(remote))}, "
            f"extra {sorted(set(remote) - set(oracle))}, "
            f"counts {sorted((k, v) for k, v in remote.items() if oracle.get(k) not in (None, v))}"
        )


def test_shared_groups_once_in_total_with_a_member_on_each_node(trio, clients, uid):
    """``$share/g/F`` with one member on each node: every message exactly once in the group, from
    publishers on every node; the same group name with another filter is another group (it gets
    every message too, once), and so is another group name with the same filter."""
    groups = {
        "g#": f"$share/g/{uid}/t/#",
        "g+": f"$share/g/{uid}/t/+",  # same group, different filter
        "h#": f"$share/h/{uid}/t/#",  # different group, same filter
    }
    members = {key: [clients(node, f"{uid}-m{gi}-{n}") for n, node in enumerate(trio)] for gi, key in enumerate(groups)}
    for key, flt in groups.items():
        for m in members[key]:
            m.subscribe(flt, qos=1)
    pubs = [clients(node, f"{uid}-p{n}", protocol=V311) for n, node in enumerate(trio)]

    # Interest: probes from every node until every member has had one (nats-server picks a member
    # at random, so each member's turn comes within a few probes once its subscription is known).
    def probed(m: Client) -> bool:
        return any(x.payload == b"probe" for x in m.received())

    everyone = [m for ms in members.values() for m in ms]
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline and not all(map(probed, everyone)):
        for p in pubs:
            p.publish(f"{uid}/t/probe", b"probe", qos=0)
        wait_until(lambda: all(map(probed, everyone)), timeout=0.1)
    assert all(map(probed, everyone)), [m.client_id for m in everyone if not probed(m)]

    n_each = 30
    sent = []
    for k in range(n_each):
        for i, p in enumerate(pubs):
            payload = f"{i}-{k}".encode()
            p.publish(f"{uid}/t/{i}", payload, qos=1)
            sent.append(payload)
    for key, ms in members.items():

        def total(ms: list[Client] = ms) -> int:
            return sum(x.payload != b"probe" for m in ms for x in m.received())

        assert wait_until(lambda: total() >= len(sent), timeout=10.0), (key, total())
    for m in everyone:
        m.assert_no_message(0.3)  # no second copy comes later
    for key, ms in members.items():
        got = [x.payload for m in ms for x in m.received() if x.payload != b"probe"]
        assert sorted(got) == sorted(sent), key  # exactly once in the group
        assert all(any(x.payload != b"probe" for x in m.received()) for m in ms), f"{key}: a member had no turn"


def test_interest_nothing_before_the_subscription_everything_after(trio, clients, uid):
    """A subscription on c: what a and b published before it existed never arrives; once its
    interest reached their servers, everything they publish does, in order; after the
    UNSUBSCRIBE nothing does."""
    a, b, c = trio
    pubs = [clients(a, f"{uid}-pa"), clients(b, f"{uid}-pb", protocol=V311)]
    early = clients(c, f"{uid}-e")
    early.subscribe(f"{uid}/other", qos=1)
    for n, p in enumerate(pubs):
        await_interest(p, early, f"{uid}/other", timeout=10.0)
        p.publish(f"{uid}/t", f"before-{n}".encode(), qos=1)
        p.publish(f"{uid}/other", f"marker-{n}".encode(), qos=1)
        early.wait_payload(f"marker-{n}".encode())  # "before" from this publisher has been and gone
    sub = clients(c, f"{uid}-s", protocol=V5)
    t0 = time.monotonic()
    sub.subscribe(f"{uid}/t", qos=1)
    for p in pubs:
        await_interest(p, sub, f"{uid}/t", timeout=10.0)
    print(f"interest of a new subscription on c reached a's and b's servers within {time.monotonic() - t0:.3f}s")
    n = 50
    for k in range(n):
        for i, p in enumerate(pubs):
            p.publish(f"{uid}/t", f"after-{i}-{k:03d}".encode(), qos=1 if k % 2 else 0)
    got = [m.payload for m in sub.wait_messages(2 * n, timeout=10.0)]
    assert not [x for x in got if x.startswith(b"before") or x.startswith(b"probe")], got
    for i in range(2):
        assert [x for x in got if x.startswith(f"after-{i}-".encode())] == [
            f"after-{i}-{k:03d}".encode() for k in range(n)
        ]
    sub.unsubscribe(f"{uid}/t")
    for n_, p in enumerate(pubs):
        p.publish(f"{uid}/t", b"gone", qos=1)
        p.publish(f"{uid}/other", f"marker2-{n_}".encode(), qos=1)
    for n_ in range(2):
        early.wait_payload(f"marker2-{n_}".encode())
    assert b"gone" not in [m.payload for m in sub.received()]
    assert len(sub.received()) == 2 * n


def test_nats_url_with_several_servers_comma_separated(servers, trio, broker, clients, uid):
    """``nats_url = "URL1, URL2"``: a node given a dead server and a live one joins through the live
    one and routes both ways."""
    live = servers[1].url
    dead = f"nats://127.0.0.1:{free_port()}"
    d = broker(config=NODE_CFG.format(name="d", url=f"{dead}, {live}"))
    sub_d = clients(d, f"{uid}-sd")
    sub_d.subscribe(f"{uid}/d/#", qos=1)
    sub_a = clients(trio[0], f"{uid}-sa")
    sub_a.subscribe(f"{uid}/a/#", qos=1)
    pub_a = clients(trio[0], f"{uid}-pa")
    pub_d = clients(d, f"{uid}-pd", protocol=V311)
    await_interest(pub_a, sub_d, f"{uid}/d/probe", timeout=10.0)
    await_interest(pub_d, sub_a, f"{uid}/a/probe", timeout=10.0)
    pub_a.publish(f"{uid}/d/x", b"to-d", qos=1)
    pub_d.publish(f"{uid}/a/x", b"to-a", qos=1)
    assert sub_d.wait_payload(b"to-d").topic == f"{uid}/d/x"
    assert sub_a.wait_payload(b"to-a").topic == f"{uid}/a/x"
