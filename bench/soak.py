"""Soak: many calls for minutes against `ivr serve` (gunicorn) and a real Redis.

Checks what only time shows: memory that creeps, sockets or threads that
leak, records left incomplete. Loopback only; the loop is bounded in calls
and in time and stops by itself.

    .venv/bin/python -m bench.soak --minutes 10   # the long run
    .venv/bin/python -m bench.soak --seconds 30   # the short run CI does (tests/test_soak.py)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from pathlib import Path

import redis as redis_lib

from bench.common import VAR
from bench.machine import banner
from ivr import keys
from ivr.simulate.call import CallSimulator
from ivr.simulate.twilio_client import TwilioClient
from tests.support.procs import ServeProcess

# BENCH_RESULTS_DIR: where the JSON goes (tests use a temporary folder)
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).resolve().parent / "results")
SCRIPTS = [  # (inputs, expected outcome)
    ([("press", "3"), ("press", "2"), ("press", "5")], "answered"),
    ([("press", "1"), ("press", "100234#"), ("press", "2")], "answered"),
    ([("press", "0")], "handoff"),
    ([("say", "my charger is smoking")], "handoff"),
    ([("say", "where is my order"), ("press", "101377#"), ("press", "1"), ("press", "0")], "handoff"),
    ([("press", "8"), ("press", "8")], "handoff"),
]


def _children(pid):
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def process_usage(master_pid, pss=False) -> dict:
    """RSS (MiB), open fds and threads of the gunicorn worker(s); with pss=True also PSS.

    Workers fork after the speech model is loaded and share its pages: RSS counts them once per
    worker, PSS (proportional set size) once in all, which is what the server really uses. Reading
    PSS makes the kernel walk each worker's page tables (~14 ms a worker): not for sampling."""
    rss = pss_kib = fds = threads = 0
    for pid in _children(master_pid) or [master_pid]:
        status = Path(f"/proc/{pid}/status").read_text()
        rss += int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])
        threads += int(next(line for line in status.splitlines() if line.startswith("Threads")).split()[1])
        fds += len(os.listdir(f"/proc/{pid}/fd"))
        if pss:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            pss_kib += int(next(line for line in rollup.splitlines() if line.startswith("Pss:")).split()[1])
    out = {"rss_mib": round(rss / 1024, 1), "fds": fds, "threads": threads}
    if pss:
        out["pss_mib"] = round(pss_kib / 1024, 1)
    return out


def run(client, redis, master_pid, seconds, concurrency=8, max_calls=100_000):
    deadline = time.monotonic() + seconds
    results, errors, lock = [], [], threading.Lock()
    samples = []

    def worker(n):
        rnd = random.Random(n)
        while time.monotonic() < deadline:
            with lock:
                if len(results) + len(errors) >= max_calls:
                    return
            inputs, expected = rnd.choice(SCRIPTS)
            try:
                sim = CallSimulator(client, from_number=f"+1500{rnd.randrange(10**7):07d}",
                                    queue_wait=rnd.randrange(5, 90))
                report = sim.run(inputs)
                with lock:
                    results.append((report, expected))
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    start = time.monotonic()
    while any(t.is_alive() for t in threads):
        samples.append({"t": round(time.monotonic() - start, 1), **process_usage(master_pid)})
        time.sleep(1.0)
    for t in threads:
        t.join()
    incomplete, wrong = [], []
    for report, expected in results:
        rec = redis.hgetall(keys.call(report["call_sid"]))
        if not (rec.get("ended_at") and rec.get("outcome") and rec.get("started_at")):
            incomplete.append(report["call_sid"])
        if report["outcome"] != expected:
            wrong.append((report["call_sid"], report["outcome"], expected))
    warm = samples[min(len(samples) - 1, max(2, len(samples) // 5))]
    return {"calls": len(results), "errors": errors[:5], "error_count": len(errors), "incomplete": incomplete,
            "wrong_outcome": wrong[:5], "samples": samples, "warm": warm, "end": samples[-1],
            "calls_per_second": round(len(results) / max(1e-9, seconds), 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=0)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    args = ap.parse_args()
    seconds = args.minutes * 60 or args.seconds
    redis_url = args.redis_url
    if not redis_url:
        from ivr.redis_conn import start_embedded
        redis_url = start_embedded(VAR / "soak-redis")
    token = "s" * 32
    srv = ServeProcess({"TWILIO_AUTH_TOKEN": token, "REDIS_URL": redis_url, "PUBLIC_URL": "https://soak.example",
                        "IVR_DATA_DIR": str(VAR / "soak")}).start()
    try:
        client = TwilioClient(srv.url, token, public_url="https://soak.example")
        result = run(client, redis_lib.Redis.from_url(redis_url, decode_responses=True), srv.proc.pid, seconds,
                     args.concurrency)
    finally:
        srv.terminate()
    print(banner())
    print(f"{result['calls']} calls in {seconds:.0f} s ({result['calls_per_second']}/s), "
          f"{result['error_count']} errors, {len(result['incomplete'])} incomplete records")
    print(f"worker after warm-up: {result['warm']}  at the end: {result['end']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(result, indent=1))
    ok = not result["error_count"] and not result["incomplete"] and not result["wrong_outcome"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
