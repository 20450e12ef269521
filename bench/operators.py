"""What the operators' features cost as the lists grow: the agent line's "next caller" and the live view.

With call backs, the agent line's claim (ivr.queues.Queues.claim_next, one Lua script) weighs every
waiting call back against the queue heads, and the dashboard's snapshot (Queries.live, sent to every
open dashboard after each batch of call events) reads the call backs, voicemails and agents as well.
This measures both against a real Redis (an embedded redis-server of its own) with N callers
waiting and M call backs and voicemails, all put there by the same scripts the webhooks run
(CallStore.open_call, record_once with the queues' and callbacks' ops). Each claim is released
again after it is timed, so every sample sees the same lists.

    .venv/bin/python -m bench.operators [--repeat 300] [--json]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import redis as redis_lib

from bench.machine import banner, describe
from ivr import callbacks, keys, voicemail
from ivr.calls import CallStore
from ivr.dashboard.queries import Queries
from ivr.queues import Queues
from ivr.redis_conn import start_embedded
from ivr.stats import percentile

LEVELS = [(10, 10), (100, 100), (1000, 300)]
TTL = 7 * 86400


def populate(r, waiting: int, called: int) -> None:
    r.flushdb()
    store, queues = CallStore(r, TTL), Queues(r, TTL)
    now = time.time() - 3600
    for i in range(waiting + called):
        sid = f"CA{i:032x}"
        store.open_call(sid, f"+1415555{i:04d}", {"from": f"+1415555{i:04d}", "flow": "hotline", "lang": "en"})
        queue = "urgent" if i % 5 == 0 else "normal"
        at = now + i
        if i < waiting:
            store.record_once(sid, "queued", {"status": "queued", "queue": queue, "enqueued_at": at}, "queued",
                              ops=queues.join_ops(queue, sid, at))
        else:
            fields, ops = callbacks.request(sid, place=at, queue=queue, now=at + 60, ttl=TTL)
            vm_fields, vm_ops = voicemail.left(sid, "https://api.twilio.com/x", "9", at + 70, TTL)
            store.record_once(sid, "callback", dict(fields, **vm_fields, status="callback"), "callback",
                              ops=ops + vm_ops)


def measure(r, repeat: int) -> dict:
    queues, queries = Queues(r, TTL), Queries(r)
    claim, live = [], []
    for n in range(repeat):
        t0 = time.perf_counter()
        found = queues.claim_next(f"CAagent{n}", time.time())
        claim.append(time.perf_counter() - t0)
        if found:
            r.hdel(keys.call(found[2]), "claimed_at")       # released: every sample sees the same lists
        t0 = time.perf_counter()
        queries.live(time.time(), 20)
        live.append(time.perf_counter() - t0)
    ms = lambda xs, p: round(percentile(xs, p) * 1000, 2)   # noqa: E731 - a local shorthand
    return {"claim_ms": {p: ms(claim, p) for p in (50, 95, 99)}, "live_ms": {p: ms(live, p) for p in (50, 95, 99)}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=300)
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args()
    # Its own embedded Redis (a real redis-server) in a temporary folder: nothing shared is flushed.
    r = redis_lib.Redis.from_url(start_embedded(tempfile.mkdtemp(prefix="ivr-bench-ops-")), decode_responses=True)
    rows = []
    for waiting, called in LEVELS:
        populate(r, waiting, called)
        rows.append({"waiting": waiting, "callbacks": called, **measure(r, args.repeat)})
    r.flushdb()
    if args.json:
        print(json.dumps({"machine": describe(), "rows": rows}))
        return
    print(banner())
    print("waiting  call backs  claim p50/p95/p99 ms   live view p50/p95/p99 ms")
    for row in rows:
        c, v = row["claim_ms"], row["live_ms"]
        print(f"{row['waiting']:>7}  {row['callbacks']:>10}  {c[50]:>5} / {c[95]:>5} / {c[99]:>5}    "
              f"{v[50]:>6} / {v[95]:>6} / {v[99]:>6}")


if __name__ == "__main__":
    main()
