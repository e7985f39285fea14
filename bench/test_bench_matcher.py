"""Micro benchmarks of the topic tries, Cython beside pure Python (pytest-benchmark groups).

Run: ``.venv/bin/pytest bench/test_bench_matcher.py --benchmark-only -q``

Workload: filters of 4 to 6 levels shaped like ``t<tenant>/d<device>/<kind>/c<channel>[/x<n>...]``:
70% exact, 20% with one '+' (never the first level), 10% ending in '#'. The number of tenants grows
with the number of filters (100 filters per tenant), so a topic meets about the same number of
candidate branches at 1k as at 1M filters and any slowdown comes from the trie's size alone.
Half the topics are made from a stored filter (so they match), half at random (most match nothing).

One round = one match() call per distinct topic (1000, or 100 000 for the cache-unfriendly case), or
``BATCH`` inserts plus ``BATCH`` removes: multiply the OPS column by the "calls per round" in the group
name for calls per second.

Flatness: the 1000-topic case runs at 1k, 10k, 100k and 1M filters, so lookups/s at 1M over 1k (same run)
shows how much the trie's size alone costs. The 1M-filter cases run the compiled trie only: the Python
one would take most of the file's time budget just to build.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import Any

import pytest

from mqhook.matcher import PyTopicTrie


def _compiled_trie() -> type | None:
    try:
        from mqhook._topic_trie import TopicTrie
    except ImportError:
        return None
    return TopicTrie


CTopicTrie = _compiled_trie()

BATCH = 1000
_KINDS = ("temp", "hum", "state", "cmd", "evt")

IMPLEMENTATIONS = [
    pytest.param("cython", id="cython", marks=pytest.mark.skipif(CTopicTrie is None, reason="extension not built")),
    pytest.param("python", id="python"),
]
PYTHON_MAX_FILTERS = 100_000  # larger tries: compiled only


def _concrete_levels(rng: random.Random, tenants: int) -> list[str]:
    levels = [f"t{rng.randrange(tenants)}", f"d{rng.randrange(50)}", rng.choice(_KINDS), f"c{rng.randrange(4)}"]
    return levels + [f"x{rng.randrange(8)}" for _ in range(rng.choice((0, 1, 2)))]


def make_filters(n: int, seed: int = 1) -> list[str]:
    """``n`` distinct filters (see the module docstring for their shape)."""
    rng = random.Random(seed)
    tenants = max(1, n // 100)
    found: set[str] = set()
    while len(found) < n:
        levels = _concrete_levels(rng, tenants)
        draw = rng.random()
        if draw < 0.2:
            levels[rng.randrange(1, len(levels))] = "+"
        elif draw < 0.3:
            levels = [*levels[: rng.randrange(1, len(levels))], "#"]
        found.add("/".join(levels))
    return sorted(found)


def make_topics(n: int, filters: list[str], count: int = BATCH, seed: int = 2) -> list[str]:
    rng = random.Random(seed)
    tenants = max(1, n // 100)
    topics = []
    for i in range(count):
        if i % 2:
            topics.append("/".join(_concrete_levels(rng, tenants)))
            continue
        levels = rng.choice(filters).split("/")
        if levels[-1] == "#":
            levels[-1] = f"y{rng.randrange(3)}"
        topics.append("/".join("w" if level == "+" else level for level in levels))
    return topics


@functools.cache
def _filters(n: int) -> list[str]:
    return make_filters(n)


@functools.cache
def _topics(n: int, count: int) -> list[str]:
    return make_topics(n, _filters(n), count)


@functools.cache
def _trie(impl: str, n: int) -> Any:
    """One trie per (implementation, size), shared by the benchmarks (they leave it as they found it)."""
    cls = CTopicTrie if impl == "cython" else PyTopicTrie
    assert cls is not None
    trie = cls()
    for i, topic_filter in enumerate(_filters(n)):
        trie.insert(topic_filter, i, None)
    return trie


@pytest.mark.parametrize(
    ("n", "distinct_topics"),
    [
        pytest.param(1_000, BATCH, id="1k-filters"),
        pytest.param(10_000, BATCH, id="10k-filters"),
        pytest.param(100_000, BATCH, id="100k-filters"),
        pytest.param(1_000_000, BATCH, id="1M-filters"),
        # 100x more distinct topics: the trie's hot part no longer fits in the CPU caches.
        pytest.param(100_000, 100 * BATCH, id="100k-filters-100k-topics"),
        pytest.param(1_000_000, 100 * BATCH, id="1M-filters-100k-topics"),
    ],
)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_match(benchmark: Any, impl: str, n: int, distinct_topics: int) -> None:
    if impl == "python" and n > PYTHON_MAX_FILTERS:
        pytest.skip(f"the Python trie is benchmarked up to {PYTHON_MAX_FILTERS} filters")
    trie = _trie(impl, n)
    topics = _topics(n, distinct_topics)
    match = trie.match

    def run() -> int:
        found = 0
        for topic in topics:
            found += len(match(topic))
        return found

    benchmark.group = f"match, {n} filters, {distinct_topics} distinct topics ({distinct_topics} calls per round)"
    benchmark.extra_info["calls_per_round"] = distinct_topics
    assert benchmark(run) > distinct_topics // 2  # the stored-filter half matches


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_insert_remove(benchmark: Any, impl: str) -> None:
    """Subscribe then unsubscribe ``BATCH`` new filters (new trie branches) in a 100k-filter trie."""
    trie = _trie(impl, 100_000)
    size = len(trie)
    new_filters = [f.replace("t", "new", 1) for f in make_filters(BATCH, seed=3)]
    insert: Callable[[str, object, object], bool] = trie.insert
    remove: Callable[[str, object], bool] = trie.remove

    def run() -> None:
        for topic_filter in new_filters:
            insert(topic_filter, "client", None)
        for topic_filter in new_filters:
            remove(topic_filter, "client")

    benchmark.group = f"insert+remove, 100000 filters ({2 * BATCH} calls per round)"
    benchmark.extra_info["calls_per_round"] = 2 * BATCH
    benchmark(run)
    assert len(trie) == size
