"""``mqhook bench``: a load-test harness for MQTT brokers (and a counting webhook receiver).

It speaks MQTT 3.1.1 itself, on uvloop, with hand-built packets: it shares no code with the
broker it measures. The harness API::

    from mqhook.loadtest import Scenario, Target, run

    result = run(Scenario(pubs=4, subs=1, qos=1, count=100_000), [Target("mqhook", "127.0.0.1", 1883, pid)])
    result["runs"][0]["msgs_out_per_s"], result["runs"][0]["lost"]

Modules: ``packets`` (bytes on the wire, payload format), ``client`` (the protocol), ``worker``
(one process's clients), ``runner`` (orchestration), ``merge`` (figures), ``stats`` (histogram,
bitmaps, /proc), ``report`` (table, JSON, plot), ``sink`` (webhook receiver), ``brokers``
(starting mqhook and mosquitto), ``rpc`` (worker processes), ``cli``. See README.md here.
"""

from __future__ import annotations

from mqhook.loadtest.runner import Target, run, run_async
from mqhook.loadtest.scenario import Scenario

__all__ = ["Scenario", "Target", "run", "run_async"]
