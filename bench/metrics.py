"""/metrics scrape cost with 30 and with 30,000 call records in Redis: it must not grow with them.

Starts `ivr serve` (gunicorn, the production configuration: multiprocess metrics, 2 workers)
against its own redis-server, writes the call records (1% still active, a few callers waiting,
ratings and transcripts like real calls), places some real signed calls so the counters have
values, then scrapes /metrics back to back over loopback and reports percentiles.

    .venv/bin/python -m bench.metrics            # 30 and 30,000 records, 400 scrapes each, cache off and on
    .venv/bin/python -m bench.metrics --quick    # smoke: 30 and 3,000 records, 50 scrapes, cache off
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import redis as redis_lib

from bench.machine import banner, describe
from ivr import keys
from ivr.simulate.twilio_client import TwilioClient
from ivr.stats import percentile
from tests.support.procs import RedisProcess, ServeProcess, wait_for

RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).resolve().parent / "results")
TOKEN = "b" * 32
PUBLIC = "https://bench.example"
TARGET_P95_MS = 20.0


def write_records(r, n: int, now: float):
    """n call records as the webhooks leave them (record, transcript, recent/active sets, queues)."""
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        sid = f"CA{i:032x}"
        started = now - (i % 86_000)
        active = i % 100 == 0
        rec = {"sid": sid, "from": f"+1500555{i % 10_000:04d}", "to": "+15005550100", "flow": "hotline", "lang": "en",
               "asr": "dtmf", "started_at": started, "transfers": i % 3 // 2, "status": "queued" if active else "ended",
               "outcome": "" if active else ("handoff" if i % 3 == 2 else "answered"), "step": "main",
               "state": json.dumps({"flow": "hotline", "lang": "en", "step": "main", "misses": 0})}
        pipe.hset(keys.call(sid), mapping={k: str(v) for k, v in rec.items()})
        pipe.rpush(keys.turns(sid), json.dumps({"who": "caller", "input": "dtmf", "text": "3"}),
                   json.dumps({"who": "bot", "text": "We are open from nine to six."}))
        pipe.expire(keys.call(sid), 7 * 86400)
        pipe.zadd(keys.RECENT, {sid: started})
        if active:
            pipe.zadd(keys.ACTIVE, {sid: started})
            pipe.zadd(keys.queue("urgent" if i % 200 == 0 else "normal"), {sid: started})
        if i % 500 == 499:
            pipe.execute()
    pipe.execute()


def scrape_times(url: str, n: int) -> list:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
            resp.read()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def run(records: int, scrapes: int, workers: int, cache: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="ivr-bench-metrics-"))
    redis_srv = RedisProcess(tmp / "redis").start()
    srv = None
    try:
        r = redis_lib.Redis.from_url(redis_srv.url, decode_responses=True)
        t0 = time.perf_counter()
        write_records(r, records, time.time())
        filled = time.perf_counter() - t0
        srv = ServeProcess({"TWILIO_AUTH_TOKEN": TOKEN, "PUBLIC_URL": PUBLIC, "REDIS_URL": redis_srv.url,
                            "IVR_SPEECH": "off", "IVR_DATA_DIR": str(tmp / "var"),
                            "IVR_METRICS_CACHE_SECONDS": str(cache)}, threads=8, workers=workers)
        srv.proc = subprocess.Popen([sys.executable, "-m", "ivr.cli", "serve", "--host", "127.0.0.1", "--port",
                                     str(srv.port), "--threads", "8", "--workers", str(workers)],
                                    env=srv.env, stdout=srv.log, stderr=subprocess.STDOUT, text=True)
        wait_for(srv._healthy, "ivr serve", timeout=90)
        twilio = TwilioClient(srv.url, TOKEN, public_url=PUBLIC)
        for _ in range(20):                      # counters and histograms with values in every worker
            sid = "CA" + secrets.token_hex(16)
            twilio.post("/voice", {"CallSid": sid, "From": f"+1555{secrets.randbelow(10**7):07d}"})
            twilio.post("/voice/gather?turn=1", {"CallSid": sid, "Digits": "0"})
        scrape_times(srv.url, 10)                # warm up every worker's connection pool
        times = scrape_times(srv.url, scrapes)
        with urllib.request.urlopen(srv.url + "/metrics", timeout=10) as resp:
            size = len(resp.read())
        return {"records": records, "cache_seconds": cache, "scrapes": scrapes, "workers": workers,
                "fill_seconds": round(filled, 1),
                "p50_ms": round(percentile(times, 50), 2), "p95_ms": round(percentile(times, 95), 2),
                "p99_ms": round(percentile(times, 99), 2), "max_ms": round(max(times), 2), "body_bytes": size,
                "redis_keys": r.dbsize()}
    finally:
        if srv is not None and srv.proc is not None:
            srv.kill()
        redis_srv.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    sizes, scrapes = ((30, 3_000), 50) if args.quick else ((30, 30_000), 400)
    print(banner())
    # cache 0: every scrape computed (what Prometheus gets every 15 s); 2: the default, under a flood
    caches = (0,) if args.quick else (0, 2)
    results = [run(n, scrapes, args.workers, cache) for cache in caches for n in sizes]
    print(f"{'records':>8} {'cache s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}  body")
    for res in results:
        print(f"{res['records']:>8} {res['cache_seconds']:>8} {res['p50_ms']:>8} {res['p95_ms']:>8} "
              f"{res['p99_ms']:>8} {res['max_ms']:>8}  {res['body_bytes']} B")
    worst = max(res["p95_ms"] for res in results)
    print(f"p95 target {TARGET_P95_MS} ms: {'met' if worst < TARGET_P95_MS else 'MISSED'}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"metrics{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps({"machine": describe(), "target_p95_ms": TARGET_P95_MS, "results": results}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
