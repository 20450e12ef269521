"""What waiting for a replica costs a write that counts a transfer (CallStore: WAIT after the turn script).

A real master and replica (Debian's redis-server, loopback), the real turn script (CallStore.apply_turn
with a transfer and a queue entry), timed from the client: without WAIT, with WAIT 1 <REDIS_WAIT_MS>,
and with the master set to min-replicas-to-write 1 (no WAIT). docs/scaling.md takes its decision from
these figures. A few seconds; safe on a shared machine.

    .venv/bin/python -m bench.redis_wait [--writes 500]
"""
from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

import redis as redis_lib

from bench.common import percentile
from bench.machine import banner, describe
from ivr.calls import CallStore
from ivr.queues import Queues
from tests.support.procs import wait_for
from tests.support.redis_ha import Node


def timed_writes(store, queues, n):
    out = []
    for _ in range(n):
        sid = "CA" + secrets.token_hex(16)
        store.open_call(sid, "+15005550100", {"flow": "hotline", "lang": "en"})
        t0 = time.perf_counter()
        store.apply_turn(sid, "+15005550100", 1, "<Response/>", {"status": "queued", "handoff_at": 1},
                         turns=[{"who": "bot", "text": "x"}], transfer=True, event="handoff",
                         ops=queues.join_ops("normal", sid, time.time()))
        out.append((time.perf_counter() - t0) * 1000)
    return out


def summary(ms):
    return {"p50_ms": round(percentile(ms, 50), 3), "p95_ms": round(percentile(ms, 95), 3),
            "p99_ms": round(percentile(ms, 99), 3), "max_ms": round(max(ms), 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--writes", type=int, default=500)
    ap.add_argument("--wait-ms", type=int, default=50)
    args = ap.parse_args()
    print(banner())
    work = Path(tempfile.mkdtemp(prefix="ivr-wait-"))
    master, replica = Node(work, "master"), Node(work, "replica")
    try:
        master.start([])
        replica.start([f"replicaof 127.0.0.1 {master.port}"])
        wait_for(lambda: master.client().info("replication")["connected_slaves"] == 1, what="replication")
        r = redis_lib.Redis("127.0.0.1", master.port, decode_responses=True)
        queues = Queues(r, 3600)
        results = {}
        for name, wait in (("no_wait", 0), ("wait_1", 1)):
            store = CallStore(r, 3600, wait_replicas=wait, wait_ms=args.wait_ms)
            timed_writes(store, queues, 50)                       # warm: scripts loaded, connections open
            results[name] = summary(timed_writes(store, queues, args.writes))
        r.config_set("min-replicas-to-write", 1)
        r.config_set("min-replicas-max-lag", 10)
        results["min_replicas_to_write_1"] = summary(timed_writes(CallStore(r, 3600), queues, args.writes))
    finally:
        replica.kill()
        master.kill()
    out = {"machine": describe(), "writes": args.writes, "wait_ms": args.wait_ms, "results": results}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
