"""Webhook path: requests per second and latency of POST /voice and the queue waitUrl.

Starts `ivr serve` (gunicorn, gthread: the production configuration) against a
real Redis, and drives it open-loop at a fixed rate over loopback, signed as
Twilio signs. Also counts Redis round trips per webhook in-process.

    python bench/webhooks.py               # 200 req/s for 20 s per endpoint
    python bench/webhooks.py --quick       # smoke: 50 req/s for 3 s
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import secrets
import sys
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from twilio.request_validator import RequestValidator  # noqa: E402

from bench.machine import banner, describe  # noqa: E402
from ivr.stats import percentile  # noqa: E402

PUBLIC = "https://bench.example"
TOKEN = "b" * 32


def _request_factory(kind, validator):
    def make():
        sid = "CA" + secrets.token_hex(16)
        if kind == "voice":
            path, params = "/voice", {"CallSid": sid, "From": "+1500555" + sid[-4:].replace("a", "1"),
                                      "To": "+15005550100"}
        else:
            path = f"/voice/queue/wait?sid={sid}&queue=normal"
            params = {"CallSid": sid, "QueuePosition": "3", "QueueTime": "40", "AvgQueueTime": "75"}
        sig = validator.compute_signature(PUBLIC + path, params)
        return path, urllib.parse.urlencode(params), {"X-Twilio-Signature": sig,
                                                      "Content-Type": "application/x-www-form-urlencoded"}
    return make


def drive(port, kind, rate, seconds, clients=32):
    """Open loop: requests are due at fixed times whatever the server does, so a
    slow server shows up as latency rather than as a politely lower rate."""
    validator = RequestValidator(TOKEN)
    make = _request_factory(kind, validator)
    due = queue.Queue()
    latencies, errors, lock = [], [], threading.Lock()
    total = int(rate * seconds)
    start = time.perf_counter() + 0.2
    for i in range(total):
        due.put(start + i / rate)

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        while True:
            try:
                at = due.get_nowait()
            except queue.Empty:
                break
            delay = at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            path, body, headers = make()
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body, headers)
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
            except (OSError, http.client.HTTPException) as exc:
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
                with lock:
                    errors.append(repr(exc))
            # Latency from when the request was due: queueing in the client counts against us too.
            elapsed = time.perf_counter() - min(t0, max(at, t0 - 0.5))
            with lock:
                latencies.append(elapsed * 1000)
                if not ok:
                    errors.append("status")
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t_begin = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_begin
    return {"endpoint": kind, "target_rps": rate, "requests": len(latencies), "achieved_rps": round(len(latencies) / wall, 1),
            "p50_ms": round(percentile(latencies, 50), 2), "p95_ms": round(percentile(latencies, 95), 2),
            "p99_ms": round(percentile(latencies, 99), 2), "max_ms": round(max(latencies), 2),
            "errors": len(errors)}


def round_trips():
    """Redis round trips per webhook, counted by an instrumented client in this process."""
    import redis as redis_lib  # noqa: F401

    from ivr import create_app
    from ivr.config import Config
    from ivr.redis_conn import start_embedded
    from ivr.redis_count import CountingRedis

    url = os.environ.get("REDIS_URL") or start_embedded(ROOT / "var" / "bench-redis")
    cfg = Config.from_env({}, public_url=PUBLIC, twilio_auth_token=TOKEN, redis_url=url)
    conn = CountingRedis.from_url(url, decode_responses=True)
    client = create_app(cfg, redis=conn).test_client()
    v = RequestValidator(TOKEN)

    def post(path, params):
        conn.round_trips.take()
        client.post(path, data=params, headers={"X-Twilio-Signature": v.compute_signature(PUBLIC + path, params)})
        return conn.round_trips.take()

    out = {}
    for i in range(2):  # the first pass loads the Lua scripts
        call = {"CallSid": "CA" + secrets.token_hex(16), "From": "+15005550100"}
        out = {"POST /voice": post("/voice", call),
               "POST /voice/gather": post("/voice/gather?turn=1", dict(call, Digits="0")),
               "POST /voice/queue/wait": post(f"/voice/queue/wait?sid={call['CallSid']}&queue=normal",
                                              dict(call, QueuePosition="1", QueueTime="5")),
               "POST /voice/status": post("/voice/status", dict(call, CallStatus="completed"))}
    return out


def main():
    from procs import ServeProcess

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    rate, seconds = (50, 3) if args.quick else (args.rate, args.seconds)
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        from ivr.redis_conn import start_embedded
        redis_url = start_embedded(ROOT / "var" / "bench-redis")
    env = {"TWILIO_AUTH_TOKEN": TOKEN, "PUBLIC_URL": PUBLIC, "REDIS_URL": redis_url, "IVR_DATA_DIR": "var/bench"}
    srv = ServeProcess(env, threads=32)
    srv_cmd_workers = args.workers
    srv.env["IVR_BENCH"] = "1"
    import subprocess
    srv.proc = subprocess.Popen([sys.executable, "-m", "ivr.cli", "serve", "--host", "127.0.0.1", "--port",
                                 str(srv.port), "--threads", "32", "--workers", str(srv_cmd_workers)],
                                env=srv.env, stdout=srv.log, stderr=subprocess.STDOUT, text=True)
    from procs import wait_for
    wait_for(srv._healthy, "ivr serve", timeout=90)
    try:
        drive(srv.port, "voice", min(rate, 50), 2)  # warm-up: connections, scripts, caches
        results = [drive(srv.port, kind, rate, seconds) for kind in ("voice", "wait")]
    finally:
        srv.terminate()
    trips = round_trips()
    print(banner())
    print(f"server: ivr serve --workers {srv_cmd_workers} --threads 32 (gunicorn gthread), Redis {redis_url.split('@')[-1]}")
    print(f"{'endpoint':<22}{'target/s':>9}{'got/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}")
    for r in results:
        name = "POST /voice" if r["endpoint"] == "voice" else "POST /voice/queue/wait"
        print(f"{name:<22}{r['target_rps']:>9}{r['achieved_rps']:>8}{r['p50_ms']:>9}{r['p95_ms']:>9}"
              f"{r['p99_ms']:>9}{r['max_ms']:>9}{r['errors']:>8}")
    print("Redis round trips per webhook: " + ", ".join(f"{k} {v}" for k, v in trips.items()))
    out = {"machine": describe(), "workers": srv_cmd_workers, "results": results, "redis_round_trips": trips}
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / ("webhooks-quick.json" if args.quick else "webhooks.json")).write_text(
        json.dumps(out, indent=1))
    return 0 if all(r["errors"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
