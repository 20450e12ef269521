"""Capacity of one server under a realistic mix of calls: the inputs of docs/scaling.md.

The mix (shares of the calls in progress, MIX): callers who talk over media streams (Korean: they
speak at the open main-menu question, where the grammar and free-form recognition both run, then
give a directed yes/no answer: bench/callers.py, the turn-latency script), keypad callers (English:
webhooks only, a few seconds of listening between key presses), and callers who ask for a person and
wait in the queue (Twilio asks for the wait page every WAIT_ROUND seconds until an agent takes them).
Each kind is a set of lines kept busy for the level's length: a line places its next call as soon as
the last one ends, so the number of calls in progress stays at the level.

Measured per level, against `ivr serve` (gunicorn gthread, --workers 2 per core) and a private
redis-server (so its counters are this run's only):
- spoken turn latency (caller's last voiced frame -> first reply frame) p50/p95, webhook latency p95;
- server CPU (cores), and calls per core: the level divided by the machine's cores when the level is
  held (spoken p95 < 400 ms, webhook p95 < 400 ms, no call failed);
- memory per worker: RSS, PSS and its private and shared parts (smaps_rollup): the Korean model is
  loaded before gunicorn forks, so its pages are shared by the workers until written;
- Redis per call: commands (INFO commandstats), network bytes in/out (INFO stats) and memory kept
  (used_memory), differences over the level divided by the calls finished in it;
- webhooks per call and per call-second, by kind.

    .venv/bin/python -m bench.capacity                # levels 20, 40, 60, 80, 100, 60 s each (a quiet machine)
    .venv/bin/python -m bench.capacity --quick        # one level of 4 calls for 20 s (CI smoke)
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import redis as redis_lib

from bench.callers import CallerSwarm, Utterance
from bench.common import GunicornServer, cpu_seconds, percentile
from bench.machine import banner, describe
from bench.turn_latency import SCRIPT as TURN_SCRIPT
from ivr.agents import Agents
from ivr.server import free_port
from ivr.simulate.call import AGENT_NUMBER
from ivr.simulate.speaker import synthesize
from ivr.simulate.twilio_client import TwilioClient
from tests.support.procs import RedisProcess

RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).resolve().parent / "results")
TOKEN = "c" * 32
MIX = {"spoken": 0.5, "keypad": 0.3, "queued": 0.2}
SPOKEN_SCRIPT = [text for text, _ in TURN_SCRIPT]   # the menu question, then a directed yes/no answer
KEYPAD_SCRIPT = ["3", "2"]                  # opening hours, then "no, nothing else": the bot answers
TARGET_P95_MS = 400
WORKERS_PER_CORE = 2


# -- callers that only use webhooks ----------------------------------------------------------------
class Webhooks:
    """Twilio's side of keypad and queued calls: every request timed and counted by path."""

    def __init__(self, url):
        self.client = TwilioClient(url, TOKEN)
        self.lock = threading.Lock()
        self.latencies, self.counts, self.errors = [], {}, 0

    def post(self, url, params):
        t0 = time.perf_counter()
        status, body = self.client.post(url, params)
        took = time.perf_counter() - t0
        path = url.split("://", 1)[-1].split("/", 1)[-1].split("?")[0]
        with self.lock:
            self.latencies.append(took)
            self.counts[path] = self.counts.get(path, 0) + 1
            if status >= 400:
                self.errors += 1
        return status, body


def _base(kind, i):
    return {"CallSid": "CA" + secrets.token_hex(16), "AccountSid": "AC" + "0" * 32, "From": f"+1500556{i:04d}",
            "To": "+15005550100", "Direction": "inbound", "CallStatus": "in-progress"}


def keypad_call(hooks, i, think):
    """Listen to the greeting, press through KEYPAD_SCRIPT, hang up. True when the bot answered."""
    base = _base("keypad", i)
    _, body = hooks.post("/voice", base)
    for digits in KEYPAD_SCRIPT:
        gather = ET.fromstring(body).find("Gather")
        if gather is None:
            break
        time.sleep(think)
        _, body = hooks.post(gather.get("action"), dict(base, Digits=digits))
    hooks.post("/voice/status", dict(base, CallStatus="completed", CallDuration="40"))
    return "<Hangup" in body


def queued_call(hooks, i, think, hold, wait_round):
    """Ask for a person, wait in the queue (wait page every wait_round s) for `hold` s, then an agent."""
    base = _base("queued", i)
    _, body = hooks.post("/voice", base)
    time.sleep(think)
    gather = ET.fromstring(body).find("Gather")
    _, body = hooks.post(gather.get("action"), dict(base, Digits="0"))
    enqueue = ET.fromstring(body).find("Enqueue")
    if enqueue is None:
        return False
    t0 = time.monotonic()
    while time.monotonic() - t0 < hold:
        hooks.post(enqueue.get("waitUrl"), dict(base, QueuePosition="1", QueueTime=str(int(time.monotonic() - t0)),
                                                AvgQueueTime="30"))
        time.sleep(min(wait_round, max(0.0, hold - (time.monotonic() - t0))))
    waited = str(int(time.monotonic() - t0))
    agent = "CA" + secrets.token_hex(16)
    _, body = hooks.post("/voice/agent", {"CallSid": agent, "From": AGENT_NUMBER, "To": "+15005550001"})
    queue = ET.fromstring(body).find(".//Queue")
    if queue is not None:
        hooks.post(queue.get("url"), dict(base, QueueTime=waited, DequeingCallSid=agent))
    hooks.post(enqueue.get("action"), dict(base, QueueResult="bridged", QueueTime=waited))
    hooks.post("/voice/status", dict(base, CallStatus="completed", CallDuration="90"))
    return queue is not None


def webhook_lines(hooks, kind, n, until, think, hold, wait_round, done, failed):
    def line(k):
        time.sleep((think * 3 + hold) * k / max(1, n))          # lines start apart: unrelated moments
        i = 0
        while time.monotonic() < until:
            i += 1
            try:
                ok = (keypad_call(hooks, k * 1000 + i, think) if kind == "keypad"
                      else queued_call(hooks, k * 1000 + i, think, hold, wait_round))
            except Exception:  # noqa: BLE001 - counted, the line goes on
                ok = False
            with hooks.lock:
                done[kind] += 1
                failed[kind] += not ok
    threads = [threading.Thread(target=line, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    return threads


# -- measurements ------------------------------------------------------------------------------
def smaps(pid) -> dict:
    """MiB of one process: rss, pss, private and shared (clean + dirty), from /proc/<pid>/smaps_rollup."""
    kb = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        kb[name] = int(value.split()[0])
    mib = lambda v: round(v / 1024, 1)  # noqa: E731
    return {"rss_mib": mib(kb["Rss"]), "pss_mib": mib(kb["Pss"]),
            "private_mib": mib(kb["Private_Clean"] + kb["Private_Dirty"]),
            "shared_mib": mib(kb["Shared_Clean"] + kb["Shared_Dirty"])}


def workers(pid) -> list:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(k) for k in children.read_text().split()] if children.exists() else []


def redis_counters(r) -> dict:
    stats, mem = r.info("stats"), r.info("memory")
    cmds = {k.removeprefix("cmdstat_"): v["calls"] for k, v in r.info("commandstats").items()}
    return {"commands": stats["total_commands_processed"], "net_in": stats["total_net_input_bytes"],
            "net_out": stats["total_net_output_bytes"], "used_memory": mem["used_memory"], "by_command": cmds}


def redis_per_call(before, after, calls) -> dict:
    n = max(1, calls)
    by = {c: round((after["by_command"].get(c, 0) - before["by_command"].get(c, 0)) / n, 1)
          for c in after["by_command"]}
    return {"commands": round((after["commands"] - before["commands"]) / n, 1),
            "bytes_in": round((after["net_in"] - before["net_in"]) / n),
            "bytes_out": round((after["net_out"] - before["net_out"]) / n),
            "memory_bytes_kept": round((after["used_memory"] - before["used_memory"]) / n),
            "by_command": {c: v for c, v in sorted(by.items(), key=lambda kv: -kv[1]) if v > 0}}


def run_level(url, server, redis, n, seconds, think, hold, wait_round, utterances):
    shares = {k: int(round(n * s)) for k, s in MIX.items()}
    shares["spoken"] += n - sum(shares.values())
    hooks = Webhooks(url)
    done = {k: 0 for k in MIX}
    failed = {k: 0 for k in MIX}
    before = redis_counters(redis)
    cpu0, t0 = cpu_seconds(server.proc.pid), time.monotonic()
    until = t0 + seconds
    threads = []
    for kind in ("keypad", "queued"):
        threads += webhook_lines(hooks, kind, shares[kind], until, think, hold, wait_round, done, failed)
    swarm = CallerSwarm(url, TOKEN)
    spoken = []
    if shares["spoken"]:
        spoken = asyncio.run(swarm.sustain(utterances, shares["spoken"], seconds, call_seconds=12.0))
    for t in threads:
        t.join(timeout=seconds + hold + 60)
    wall = time.monotonic() - t0
    cpu = cpu_seconds(server.proc.pid) - cpu0
    memory = [smaps(w) for w in workers(server.proc.pid)]
    time.sleep(1.0)
    after = redis_counters(redis)
    done["spoken"] = len(spoken)
    failed["spoken"] = sum(1 for c in spoken if c.error or len(c.latencies) < len(SPOKEN_SCRIPT))
    lat = [x for c in spoken for x in c.latencies]
    calls = sum(done.values())
    hook_p95 = percentile(hooks.latencies, 95)
    cores = os.cpu_count() or 1
    spoken_p95 = percentile(lat, 95)
    held = (sum(failed.values()) == 0 and hooks.errors == 0 and (spoken_p95 or 0) * 1000 < TARGET_P95_MS
            and (hook_p95 or 0) * 1000 < TARGET_P95_MS)
    seconds_of_calls = wall * n
    return {
        "calls": n, "mix": shares, "seconds": round(wall, 1), "calls_done": done, "calls_failed": failed,
        "spoken_p50_ms": _ms(percentile(lat, 50)), "spoken_p95_ms": _ms(spoken_p95), "spoken_turns": len(lat),
        "webhook_p50_ms": _ms(percentile(hooks.latencies, 50)), "webhook_p95_ms": _ms(hook_p95),
        "webhook_errors": hooks.errors, "held": held,
        "server_cpu_cores": round(cpu / wall, 3), "server_cpu_core_per_call": round(cpu / wall / n, 4),
        "calls_per_machine_core": round(n / cores, 1) if held else None,
        "webhooks": dict(sorted(hooks.counts.items())),
        "webhooks_per_call": round(sum(hooks.counts.values()) / max(1, done["keypad"] + done["queued"]), 1),
        "webhooks_per_call_second": round(sum(hooks.counts.values()) / max(1.0, seconds_of_calls * (
            1 - shares["spoken"] / n)), 3) if n > shares["spoken"] else None,
        "workers": memory, "workers_pss_mib": round(sum(m["pss_mib"] for m in memory), 1),
        "redis_per_call": redis_per_call(before, after, calls),
        "redis_commands_per_second": round((after["commands"] - before["commands"]) / wall, 1),
    }


def _ms(v):
    return None if v is None else round(v * 1000, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one level of 4 calls for 20 s (CI smoke)")
    ap.add_argument("--levels", default="20,40,60,80,100")
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    levels = [4] if args.quick else [int(x) for x in args.levels.split(",")]
    seconds = 20.0 if args.quick else args.seconds
    think, hold, wait_round = (1.0, 6.0, 3.0) if args.quick else (6.0, 50.0, 15.0)
    print(banner(), flush=True)
    utterances = [Utterance(synthesize(text, "ko")) for text in SPOKEN_SCRIPT]
    rp = RedisProcess(Path(tempfile.mkdtemp(prefix="ivr-capacity-redis-"))).start()
    out = {"machine": describe(), "command": " ".join(["python -m bench.capacity"] + sys.argv[1:]),
           "workers": WORKERS_PER_CORE * cores, "mix": MIX, "target_p95_ms": TARGET_P95_MS, "levels": []}
    try:
        port = free_port()
        redis = redis_lib.Redis.from_url(rp.url, decode_responses=True)
        Agents(redis).add("bench", AGENT_NUMBER)            # the agent line admits registered agents only
        with GunicornServer(port, TOKEN, rp.url, threads=128, workers=WORKERS_PER_CORE * cores,
                            extra_env={"IVR_HANDOFF_MODE": "queue"}) as server:
            out["idle_workers"] = [smaps(w) for w in workers(server.proc.pid)]
            for n in levels:
                row = run_level(server.url, server, redis, n, seconds, think, hold, wait_round, utterances)
                out["levels"].append(row)
                print(f"{n:>4} calls  spoken p95 {row['spoken_p95_ms']} ms  webhook p95 {row['webhook_p95_ms']} ms  "
                      f"server {row['server_cpu_cores']} cores  held {row['held']}  "
                      f"redis {row['redis_per_call']['commands']} cmds/call", flush=True)
    finally:
        rp.stop()
    held = [r for r in out["levels"] if r["held"]]
    out["max_held_calls"] = max((r["calls"] for r in held), default=None)
    out["calls_per_core_at_target"] = round(out["max_held_calls"] / cores, 1) if held else None
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "capacity-quick.json" if args.quick else "capacity.json"
    (RESULTS / name).write_text(json.dumps(out, indent=2, ensure_ascii=False))
    print(f"wrote {RESULTS / name}")
    failed = sum(sum(r["calls_failed"].values()) + r["webhook_errors"] for r in out["levels"])
    return 1 if args.quick and failed else 0


if __name__ == "__main__":
    sys.exit(main())
