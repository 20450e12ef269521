"""Prometheus metrics at /metrics: counted where things happen, summed across worker processes.

Two kinds, and neither reads call records when scraped, so a scrape costs the same at 30 calls
or 30,000 (bench/metrics.py, BENCHMARKS.md):

- events (calls, handoffs by queue and reason, callbacks, waits, failures, refused streams, request
  and turn durations) are prometheus_client counters and histograms, observed by the code that
  makes them happen. Under `ivr serve` every worker writes them to files in a private folder
  (prometheus_client's multiprocess mode, PROMETHEUS_MULTIPROC_DIR set by the command before the
  workers fork; gunicorn's child_exit hook retires a dead worker's live gauges), and a scrape,
  whichever worker answers it, sums every worker. Counted per server: with several hosts,
  Prometheus sums the instances (`sum(rate(ivr_calls_total[5m]))`).
- the present state shared by every process (callers waiting per queue, calls in progress,
  callbacks waiting) is read from Redis at scrape time: three ZCARDs in one round trip.

The alternative considered, counters kept in Redis (HINCRBY in the turn scripts), would make every
host report the global total, which Prometheus then double counts across instances, and would add
Redis work to paths that only time themselves (request and turn durations). An observation
into the files costs a few microseconds (a mmap write under a lock); the scrape's cost is in
BENCHMARKS.md.

Names follow Prometheus conventions: unit last, `_total` for counters (added by the client),
`_seconds` for durations. docs/dashboard.md lists them for dashboards.
"""
from __future__ import annotations

import logging
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder
from prometheus_client.utils import floatToGoString

from . import keys
from .config import metrics_dir

log = logging.getLogger("ivr.metrics")

WAIT_BUCKETS = (5, 10, 20, 30, 60, 120, 300, 600, 1200)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
TURN_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5)


def multiprocess() -> bool:
    """True under `ivr serve` (set before this module was imported: prometheus_client reads it then)."""
    return metrics_dir() is not None


# `*_created` series (one per labelled child, the time it was first seen) double the output and no
# dashboard here uses them; multiprocess mode never has them.
disable_created_metrics()

# Process-local metrics live in their own registry so tests that build many apps and the
# default registry's own collectors never clash. In multiprocess mode the values live in files and
# the registry only names them.
PROCESS = CollectorRegistry(auto_describe=True)
if not multiprocess():
    ProcessCollector(registry=PROCESS)  # CPU, memory, open files: of one process, so only outside gunicorn

HTTP_DURATION = Histogram("ivr_http_request_duration_seconds", "Time to answer an HTTP request, per route "
                          "(Flask's rule; media streams and the dashboard's live stream are not timed)",
                          ["route", "method", "code"], buckets=HTTP_BUCKETS, registry=PROCESS)
TURN_LATENCY = Histogram("ivr_turn_latency_seconds", "Caller turn: speech, from the caller's last voiced frame to "
                         "the bot's first reply frame; keypad, the /voice/gather webhook", ["input"],
                         buckets=TURN_BUCKETS, registry=PROCESS)
RECOGNITION_LATENCY = Histogram(
    "ivr_recognition_latency_seconds",
    "Time from the end of the caller's utterance to the final recognition result",
    ["engine"], buckets=TURN_BUCKETS, registry=PROCESS)
ACTIVE_STREAMS = Gauge("ivr_media_streams_active", "Twilio media streams open", registry=PROCESS,
                       multiprocess_mode="livesum")
CALLS = Counter("ivr_calls", "Calls answered (POST /voice opened a record)", ["lang", "asr"], registry=PROCESS)
CALLS_ENDED = Counter("ivr_calls_ended", "Calls closed by Twilio's status callback, by outcome "
                      "(answered: the bot answered; handoff: reached the human path; hangup)", ["outcome"],
                      registry=PROCESS)
HANDOFFS = Counter("ivr_handoffs", "Callers the bot routed to a person, by queue and reason", ["queue", "reason"],
                   registry=PROCESS)
WAITS = Histogram("ivr_wait_seconds", "Wait from the bot's handoff until a person answered", ["queue"],
                  buckets=WAIT_BUCKETS, registry=PROCESS)
ABANDONED = Counter("ivr_queue_abandoned", "Callers who hung up while waiting for a person", ["queue"],
                    registry=PROCESS)
CALLBACKS = Counter("ivr_callbacks_requested", "Callers who chose to be called back, keeping their place",
                    registry=PROCESS)
FAILURES = Counter("ivr_failures", "Failures that sent a caller to the fallback (a person), by where they "
                   "happened: a webhook path, or stream:<recognizer|recognizer_slow|tts|step|dropped|server>",
                   ["where"], registry=PROCESS)
STREAMS_REFUSED = Counter("ivr_media_streams_refused", "Media streams closed at start without touching the call: "
                          "no or a bad credential, an unknown or ended call, a stream already live, a credential "
                          "used before, no start in time; or refused at the handshake, too many sockets waiting "
                          "for their start (busy)", ["reason"], registry=PROCESS)
SLOW_CLIENTS = Counter("ivr_slow_clients_closed", "Connections the server closed before their request was complete "
                       "(ivr/worker.py): header_timeout, body_timeout, client_limit, worker_limit, too_large, "
                       "chunked, malformed",
                       ["reason"], registry=PROCESS)


def count_refused_stream(reason: str) -> None:
    STREAMS_REFUSED.labels(reason=reason).inc()

UNREPLICATED = Counter("ivr_unreplicated_writes", "Writes that counted a transfer and were not acknowledged by "
                       "the configured number of replicas within REDIS_WAIT_MS (a failover now could lose them)",
                       registry=PROCESS)


AGENT_LINE_REFUSED = Counter("ivr_agent_line_refused", "Calls to the agent line refused: not a registered agent "
                             "number, wrong PINs, or the agent's PIN entry locked after wrong PINs", registry=PROCESS)


def count_failure(where: str) -> None:
    FAILURES.labels(where=where).inc()


def count_agent_refusal() -> None:
    AGENT_LINE_REFUSED.inc()


def count_slow_client(reason: str) -> None:
    SLOW_CLIENTS.labels(reason=reason).inc()


def observe_wait(queue: str, seconds) -> None:
    try:
        WAITS.labels(queue=queue or "normal").observe(max(0.0, float(seconds)))
    except (TypeError, ValueError):
        pass


def count_queue_result(queue: str, fields: dict) -> None:
    """A caller left the queue (ivr.web.queue.result, applied once): what it says about them."""
    status = fields.get("status")
    if status == "callback":
        CALLBACKS.inc()
    elif status == "abandoned":
        ABANDONED.labels(queue=queue).inc()
    elif "answered_at" in fields:
        observe_wait(queue, fields.get("wait_seconds"))


class RedisCollector:
    """The present state every process shares: O(1) reads, one round trip per scrape."""

    def __init__(self, redis):
        self.redis = redis

    def describe(self):
        return []  # collected live; nothing to check at registration

    def collect(self):
        up = GaugeMetricFamily("ivr_redis_up", "1 when Redis answered this scrape")
        try:
            pipe = self.redis.pipeline(transaction=False)
            for q in keys.QUEUES:
                pipe.zcard(keys.queue(q))
            pipe.zcard(keys.ACTIVE)
            pipe.zcard(keys.CALLBACKS)
            *sizes, active, callbacks = pipe.execute()
        except Exception as exc:  # noqa: BLE001 - a scrape reports Redis down, it does not fail
            log.warning("metrics: Redis unavailable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        queue = GaugeMetricFamily("ivr_queue_size", "Callers waiting for a person, per queue", labels=["queue"])
        for q, n in zip(keys.QUEUES, sizes):
            queue.add_metric([q], n)
        yield queue
        yield GaugeMetricFamily("ivr_calls_active", "Calls in progress (not yet closed by the status callback)",
                                value=active)
        yield GaugeMetricFamily("ivr_callbacks_waiting", "Callers waiting for a call back", value=callbacks)


class ScrapeCache:
    """The last scrape's answer, per format, for `seconds`: a flood of requests to /metrics costs one
    merge of the workers' files per period and worker, not one per request (Prometheus itself scrapes
    every 15 s or so and always gets a fresh answer at such periods)."""

    def __init__(self, seconds: float, clock=time.monotonic):
        self.seconds, self.clock = seconds, clock
        self._entries = {}
        self._lock = threading.Lock()

    def get(self, redis, accept: str = "") -> tuple:
        if self.seconds <= 0:
            return exposition(redis, accept)
        key = (accept or "").strip()
        now = self.clock()
        hit = self._entries.get(key)
        if hit is not None and now - hit[0] < self.seconds:
            return hit[1]
        with self._lock:                       # one thread computes; the others wait for its answer
            hit = self._entries.get(key)
            if hit is not None and self.clock() - hit[0] < self.seconds:
                return hit[1]
            answer = exposition(redis, accept)
            if len(self._entries) > 8:         # Accept headers are the client's: keep the cache small
                self._entries.clear()
            self._entries[key] = (self.clock(), answer)
            return answer


def exposition(redis, accept: str = "") -> tuple:
    """(body, content type) of a scrape: every worker's counted metrics, then the shared state from Redis.
    The format follows the scraper's Accept header (Prometheus text, or OpenMetrics)."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess():
        from prometheus_client import multiprocess as mp
        mp.MultiProcessCollector(registry)
    else:
        registry.register(_Registered(PROCESS))
    registry.register(RedisCollector(redis))
    encoder, content_type = choose_encoder(accept or "")
    if content_type == CONTENT_TYPE_PLAIN_0_0_4:
        return text_format(registry.collect()), content_type
    return encoder(registry), content_type


_TYPES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram", "gaugehistogram": "histogram",
          "summary": "summary", "info": "gauge", "stateset": "gauge"}


def _label_value(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def text_format(families) -> bytes:
    """Prometheus text format 0.0.4, as prometheus_client's generate_latest writes it, for the metric
    families ivr defines (label names checked once, when the metrics were declared).

    generate_latest validates every label name of every sample on every scrape: with ~200 samples
    it took 6-8 ms of a 12 ms scrape here (cProfile), more than reading the workers' files."""
    out = []
    for fam in families:
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        doc = fam.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {_TYPES.get(fam.type, 'untyped')}\n")
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            labels = ",".join(f'{k}="{_label_value(v)}"' for k, v in s.labels.items())
            out.append(f"{s.name}{{{labels}}} {floatToGoString(s.value)}\n" if labels
                       else f"{s.name} {floatToGoString(s.value)}\n")
    return "".join(out).encode()


class _Registered:
    """Another registry's metrics as one collector of this one."""

    def __init__(self, registry):
        self.registry = registry

    def describe(self):
        return []

    def collect(self):
        return self.registry.collect()


def mark_process_dead(pid: int) -> None:
    """gunicorn child_exit: a worker is gone; its live gauges (open streams) no longer count."""
    if multiprocess():
        from prometheus_client import multiprocess as mp
        mp.mark_process_dead(pid)
