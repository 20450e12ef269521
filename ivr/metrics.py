"""Prometheus metrics at /metrics.

Two kinds, because ivr may run as several processes:
- facts that live in Redis (calls by outcome, queue sizes, waits, transfers, callbacks) are
  read from Redis at scrape time by RedisCollector, so every process reports the same truth;
- facts that only a process knows (how long its recognizer took, how many media streams it
  holds) are ordinary process-local metrics defined here, for other modules to observe into:

    from ivr.metrics import RECOGNITION_LATENCY, ACTIVE_STREAMS
    with RECOGNITION_LATENCY.labels(engine="vosk").time(): ...
    ACTIVE_STREAMS.inc() / ACTIVE_STREAMS.dec()

The Redis-derived figures cover a rolling window (WINDOW_SECONDS) rather than counting up
forever: records expire after the retention period, so a Redis-derived "total" would fall,
which Prometheus would mistake for a restart. They are therefore gauges (and gauge
histograms), to be read as "in the last 24 hours".
"""
from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily

log = logging.getLogger("ivr.metrics")

WINDOW_SECONDS = 24 * 3600
WAIT_BUCKETS = (5, 10, 20, 30, 60, 120, 300, 600)
TRANSFER_BUCKETS = (0, 1, 2, 3, 5)

# Process-local metrics live in their own registry so tests that build many apps and the
# default registry's own collectors never clash.
PROCESS = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=PROCESS)  # CPU, memory, open files of this process

RECOGNITION_LATENCY = Histogram(
    "ivr_recognition_latency_seconds",
    "Time from the end of the caller's utterance to the final recognition result",
    ["engine"], buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5), registry=PROCESS)
ACTIVE_STREAMS = Gauge("ivr_media_streams_active", "Twilio media streams open in this process",
                       registry=PROCESS)
FAILURES = Counter("ivr_failures", "Failures that sent a caller to the fallback (a person), by where they "
                   "happened: a webhook path, or stream:<recognizer|recognizer_slow|tts|step|dropped|server>",
                   ["where"], registry=PROCESS)


AGENT_LINE_REFUSED = Counter("ivr_agent_line_refused", "Calls to the agent line refused: not a registered agent "
                             "number, or a wrong PIN", registry=PROCESS)


def count_failure(where: str) -> None:
    FAILURES.labels(where=where).inc()


def count_agent_refusal() -> None:
    AGENT_LINE_REFUSED.inc()


class RedisCollector:
    """Reads the call state shared by all processes, once per scrape."""

    def __init__(self, redis, clock, queries_factory=None):
        self.redis = redis
        self.clock = clock
        self._queries = queries_factory

    def queries(self):
        if self._queries:
            return self._queries(self.redis)
        from .dashboard.queries import Queries
        return Queries(self.redis)

    def describe(self):
        return []  # collected live; nothing to check at registration

    def collect(self):
        from .dashboard import kpi

        q = self.queries()
        up = GaugeMetricFamily("ivr_redis_up", "1 when Redis answered this scrape")
        try:
            now = self.clock()
            sizes = q.queue_sizes()
            live = q.live(now, 0, last_said=False)
            inputs = q.kpi_inputs(now - WINDOW_SECONDS, now)
        except Exception as exc:  # noqa: BLE001 - a scrape reports Redis down, it does not fail
            log.warning("metrics: Redis unavailable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        queue = GaugeMetricFamily("ivr_queue_size", "Callers waiting for a person, per queue", labels=["queue"])
        for row in live["queues"]:
            # The queue zsets are authoritative once they exist; until then, records in handoff.
            queue.add_metric([row["name"]], max(sizes.get(row["name"], 0), len(row["calls"])))
        yield queue

        active = GaugeMetricFamily("ivr_calls_active", "Calls in progress, by where they are", labels=["state"])
        active.add_metric(["in_bot"], len(live["in_bot"]))
        active.add_metric(["waiting"], sum(len(r["calls"]) for r in live["queues"]))
        active.add_metric(["with_agent"], len(live["with_agent"]))
        yield active
        cb = GaugeMetricFamily("ivr_callbacks_waiting", "Callers waiting for a call back")
        cb.add_metric([], sum(1 for row in live["callbacks"] if row["state"] != "failed"))
        yield cb

        facts = [kpi.facts(r, inputs["waits"], inputs["abandoned"], inputs["callbacks"]) for r in inputs["records"]]
        outcomes = GaugeMetricFamily("ivr_calls_last_24h", "Calls started in the last 24 hours, by outcome "
                                     "(in_progress: not ended yet)", labels=["outcome"])
        counts = {"answered": 0, "handoff": 0, "hangup": 0, "in_progress": 0}
        for f in facts:
            key = f.outcome if f.ended and f.outcome else "in_progress"
            counts[key] = counts.get(key, 0) + 1
        for outcome, n in sorted(counts.items()):
            outcomes.add_metric([outcome], n)
        yield outcomes

        results = GaugeMetricFamily("ivr_handoffs_last_24h", "Handoffs to a person in the last 24 hours, "
                                    "by how the wait ended", labels=["result"])
        results.add_metric(["reached_person"], sum(f.reached_person for f in facts))
        results.add_metric(["abandoned"], sum(f.abandoned for f in facts))
        results.add_metric(["overflowed"], sum(f.overflowed for f in facts))
        results.add_metric(["waiting"], sum(f.handed_off and not (f.reached_person or f.abandoned or f.overflowed)
                                            for f in facts))
        yield results

        waits = [f.wait for f in facts if f.reached_person and f.wait is not None]
        yield _gauge_histogram("ivr_wait_seconds_last_24h",
                               "Wait from handoff to an agent answering, callers who reached a person "
                               "in the last 24 hours", waits, WAIT_BUCKETS)
        yield _gauge_histogram("ivr_transfers_per_call_last_24h",
                               "Transfers per call, calls started in the last 24 hours",
                               [f.transfers for f in facts], TRANSFER_BUCKETS)


def _gauge_histogram(name, doc, values, buckets):
    fam = GaugeHistogramMetricFamily(name, doc)
    cumulative = [(str(b), sum(1 for v in values if v <= b)) for b in buckets]
    cumulative.append(("+Inf", len(values)))
    fam.add_metric([], cumulative, gsum_value=float(sum(values)))
    return fam


def exposition(redis, clock) -> bytes:
    """The text a scrape gets: this process's metrics, then the shared ones read from Redis."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(redis, clock))
    return generate_latest(PROCESS) + generate_latest(registry)
