"""Run every benchmark, one after the other (they would compete for the cores otherwise).

    .venv/bin/python -m bench.run_all           # full: figures for BENCHMARKS.md (about 20 minutes)
    .venv/bin/python -m bench.run_all --quick   # smoke, as CI runs it (tests/test_bench_smoke.py)

Each benchmark starts `ivr serve` (gunicorn gthread) against a real Redis, prints
its table and writes JSON under bench/results/. Exit status: non-zero if any
benchmark failed to run (errors, failed calls), not when a latency target is missed.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHES = {
    "webhooks": ["bench.webhooks"],
    "turn_latency": ["bench.turn_latency"],
    "soak": ["bench.soak", "--seconds", "60"],
    "metrics": ["bench.metrics"],
    "capacity": ["bench.capacity"],
}
QUICK = {"webhooks": ["--quick"], "turn_latency": ["--quick"], "soak": ["--seconds", "8"], "metrics": ["--quick"],
         "capacity": ["--quick"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke version of every benchmark (~2.5 min)")
    ap.add_argument("--only", default="", help="comma-separated subset: " + ",".join(BENCHES))
    args = ap.parse_args()
    names = [n for n in BENCHES if not args.only or n in args.only.split(",")]
    status = {}
    t_all = time.monotonic()
    for name in names:
        cmd = [sys.executable, "-m"] + (BENCHES[name][:1] + QUICK[name] if args.quick else BENCHES[name])
        print(f"\n=== {name}: {' '.join(cmd[2:])}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.call(cmd, cwd=ROOT, timeout=900)
        status[name] = (rc, round(time.monotonic() - t0, 1))
    print("\n" + "\n".join(f"{n:<14} exit {rc}  {s} s" for n, (rc, s) in status.items()))
    print(f"total {time.monotonic() - t_all:.0f} s")
    return 0 if all(rc == 0 for rc, _ in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
