"""Webhook path: requests per second and latency of POST /voice and the queue waitUrl.

Starts `ivr serve` (gunicorn, gthread: the production configuration) against a
real Redis, and drives it open-loop at a fixed rate over loopback, signed as
Twilio signs. Also counts Redis round trips per webhook in-process.

    .venv/bin/python -m bench.webhooks             # 200 req/s for 15 s per endpoint, 3 runs each
    .venv/bin/python -m bench.webhooks --quick     # smoke: 50 req/s for 3 s
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from twilio.request_validator import RequestValidator

from bench.common import VAR
from bench.common import redis_url as bench_redis
from bench.machine import banner, describe
from ivr.stats import percentile
from tests.support.procs import ServeProcess, wait_for
from tests.support.redis_count import CountingRedis

# BENCH_RESULTS_DIR: where the JSON goes (tests use a temporary folder)
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).resolve().parent / "results")
PUBLIC = "https://bench.example"
THREADS = 4          # gthread threads per worker: a webhook is ~2 ms of CPU, more threads only queue on the GIL
NAMES = {"voice": "POST /voice", "wait": "POST /voice/queue/wait"}
TOKEN = "b" * 32


def _requests(kind, n, validator, port):
    """n distinct pre-signed raw HTTP requests (the signature covers the params, so each call differs)."""
    out = []
    for _ in range(n):
        sid = "CA" + secrets.token_hex(16)
        if kind == "voice":
            path, params = "/voice", {"CallSid": sid, "From": "+1500555" + sid[-4:].replace("a", "1"),
                                      "To": "+15005550100"}
        else:
            path = f"/voice/queue/wait?sid={sid}&queue=normal"
            params = {"CallSid": sid, "QueuePosition": "3", "QueueTime": "40", "AvgQueueTime": "75"}
        sig = validator.compute_signature(PUBLIC + path, params)
        body = urllib.parse.urlencode(params)
        out.append((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Twilio-Signature: {sig}\r\n"
                    f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
                    f"{body}").encode())
    return out


async def _exchange(conn, raw):
    reader, writer = conn
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _drive(port, kind, rate, seconds):
    """Open loop from one asyncio thread: request i is due at start + i/rate whatever the server
    does (a slow server shows up as latency, not as a politely lower rate). Keep-alive connections
    are reused when idle; a new one is opened when all are busy (as many clients would)."""
    total = int(rate * seconds)
    reqs = _requests(kind, total, RequestValidator(TOKEN), port)
    idle, latencies, errors = [], [], []
    start = time.perf_counter() + 0.2

    async def one(i, due):
        for attempt in (1, 2):
            # The retry always takes a fresh connection: another idle one may be just as stale.
            reused = bool(idle) and attempt == 1
            conn = idle.pop() if reused else await asyncio.open_connection("127.0.0.1", port)
            try:
                status = await asyncio.wait_for(_exchange(conn, reqs[i]), 15)
                idle.append(conn)
                if status != 200:
                    errors.append(status)
                break
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                conn[1].close()
                # The server closes idle keep-alive connections (gunicorn keepalive): like any HTTP
                # client, send again on a new connection; the time lost still counts in the latency.
                if not (reused and attempt == 1 and isinstance(exc, (asyncio.IncompleteReadError, OSError))):
                    errors.append(repr(exc))
                    break
        latencies.append((time.perf_counter() - due) * 1000)

    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    for _, w in idle:
        w.close()
    return latencies, errors, wall


def drive(port, kind, rate, seconds):
    cpu0 = os.times()
    latencies, errors, wall = asyncio.run(_drive(port, kind, rate, seconds))
    cpu1 = os.times()
    return {"endpoint": kind, "target_rps": rate, "requests": len(latencies),
            "achieved_rps": round(len(latencies) / wall, 1),
            "p50_ms": round(percentile(latencies, 50), 2), "p95_ms": round(percentile(latencies, 95), 2),
            "p99_ms": round(percentile(latencies, 99), 2), "max_ms": round(max(latencies), 2),
            "errors": len(errors), "error_samples": [str(e) for e in errors[:3]],
            "generator_cpu_cores": round((cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall, 2)}


def round_trips():
    """Redis round trips per webhook, counted by an instrumented client in this process."""
    from ivr import create_app
    from ivr.config import Config

    url = bench_redis()
    cfg = Config.from_env({}, public_url=PUBLIC, twilio_auth_token=TOKEN, redis_url=url, hours="open",
                          data_dir=VAR / "bench")
    conn = CountingRedis.from_url(url, decode_responses=True)
    client = create_app(cfg, redis=conn).test_client()
    v = RequestValidator(TOKEN)

    def post(path, params):
        conn.round_trips.take()
        client.post(path, data=params, headers={"X-Twilio-Signature": v.compute_signature(PUBLIC + path, params)})
        return conn.round_trips.take()

    out = {}
    for _ in range(2):  # the first pass loads the Lua scripts
        call = {"CallSid": "CA" + secrets.token_hex(16), "From": "+15005550100"}
        out = {"POST /voice": post("/voice", call),
               "POST /voice/gather": post("/voice/gather?turn=1", dict(call, Digits="0")),
               "POST /voice/queue/wait": post(f"/voice/queue/wait?sid={call['CallSid']}&queue=normal",
                                              dict(call, QueuePosition="1", QueueTime="5")),
               "POST /voice/status": post("/voice/status", dict(call, CallStatus="completed"))}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--repeat", type=int, default=3, help="runs per endpoint (the spread is reported)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=THREADS)
    args = ap.parse_args()
    rate, seconds, repeat = (50, 3, 1) if args.quick else (args.rate, args.seconds, args.repeat)
    redis_url = bench_redis()
    env = {"TWILIO_AUTH_TOKEN": TOKEN, "PUBLIC_URL": PUBLIC, "REDIS_URL": redis_url, "IVR_DATA_DIR": str(VAR / "bench"),
           "IVR_HOURS": "open"}
    srv = ServeProcess(env, threads=args.threads)
    srv.proc = subprocess.Popen([sys.executable, "-m", "ivr.cli", "serve", "--host", "127.0.0.1", "--port",
                                 str(srv.port), "--threads", str(args.threads), "--workers", str(args.workers)],
                                env=srv.env, stdout=srv.log, stderr=subprocess.STDOUT, text=True)
    wait_for(srv._healthy, "ivr serve", timeout=90)
    results = []
    try:
        drive(srv.port, "voice", min(rate, 50), 2)  # warm-up: connections, scripts, caches
        for k in range(repeat):
            for kind in ("voice", "wait"):
                results.append(dict(drive(srv.port, kind, rate, seconds), run=k + 1))
    finally:
        srv.terminate()
    trips = round_trips()
    print(banner())
    print(f"server: ivr serve --workers {args.workers} --threads {args.threads} (gunicorn gthread), "
          f"Redis {redis_url.split('@')[-1]}; load: open loop, one asyncio thread, pre-signed requests")
    print(f"{'endpoint':<24}{'run':>4}{'target/s':>9}{'got/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
          f"{'max ms':>9}{'errors':>8}{'gen cpu':>8}")
    for r in results:
        print(f"{NAMES[r['endpoint']]:<24}{r['run']:>4}{r['target_rps']:>9}{r['achieved_rps']:>8}{r['p50_ms']:>9}"
              f"{r['p95_ms']:>9}{r['p99_ms']:>9}{r['max_ms']:>9}{r['errors']:>8}{r['generator_cpu_cores']:>8}")
    summary = {}
    for kind in ("voice", "wait"):
        p99 = [r["p99_ms"] for r in results if r["endpoint"] == kind]
        p50 = [r["p50_ms"] for r in results if r["endpoint"] == kind]
        summary[kind] = {"p50_ms_median": sorted(p50)[len(p50) // 2], "p99_ms_median": sorted(p99)[len(p99) // 2],
                         "p99_ms_min": min(p99), "p99_ms_max": max(p99)}
        print(f"{NAMES[kind]}: p50 {summary[kind]['p50_ms_median']} ms, p99 median "
              f"{summary[kind]['p99_ms_median']} ms (min {min(p99)}, max {max(p99)}) over {len(p99)} run(s)")
    print("Redis round trips per webhook: " + ", ".join(f"{k} {v}" for k, v in trips.items()))
    verdict = {"voice_p99_under_20ms": summary["voice"]["p99_ms_max"] < 20,
               "round_trips_at_most_2": max(trips.values()) <= 2}
    print(f"targets (at {rate:g} req/s): {verdict}")
    out = {"machine": describe(), "workers": args.workers, "threads": args.threads, "rate": rate,
           "seconds": seconds, "quick": args.quick, "results": results, "summary": summary,
           "redis_round_trips": trips, "verdict": verdict}
    (RESULTS).mkdir(parents=True, exist_ok=True)
    path = RESULTS / ("webhooks-quick.json" if args.quick else "webhooks.json")
    path.write_text(json.dumps(out, indent=1))
    print(f"written {path}")
    return 0 if all(r["errors"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
