"""Cost of understanding one caller turn: latency per turn and memory per worker process.

Every item of every labelled set (the tuned sets and both held-out halves, EN and KO) is
decided as a first turn by the flow engine (global rules, intent matching, routing), which is
what a webhook or a media stream does per caller utterance. Each item runs `--repeat` times;
p50/p95/p99 are over all runs, per language. Only timings are printed, never sentences (the
held-out test halves are scored, never read).

Memory, measured two ways because both apply to some deployment:

* one process on its own (`ivr serve` with one worker, or a worker that loaded the flows itself):
  two fresh processes with the same imports and flow loading, one of them also builds the engines
  (training the classifiers) and decides one turn; the difference in RSS and PSS, plus what
  importing numpy and scipy costs a bare interpreter (the flow loader imports them either way),
  is what understanding costs a worker;
* gunicorn's way (`ivr serve --workers N`): the app, flows and engines are built in the master
  before it forks, `gc.freeze()` as ivr.server does, then each of N forked workers decides turns
  and reports its PSS (its share of pages shared with the master and the other workers) and USS
  (pages only it has). Compared with the same run without engines, that is the cost per worker
  when the trained classifiers are shared.

    .venv/bin/python -m bench.intents [--repeat 5] [--json]

Engine build is the flow's start-up cost in a process: matchers, concept lookups and training
the classifier (a flow loaded again unchanged reuses the trained classifier).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.machine import banner, describe
from ivr.stats import percentile

ROOT = Path(__file__).resolve().parent.parent

SETS = ["tests/data/hotline_en_labelled.yaml", "eval/hotline_ko.yaml",
        "eval/heldout/hotline_en_dev.yaml", "eval/heldout/hotline_en_test.yaml",
        "eval/heldout/hotline_ko_dev.yaml", "eval/heldout/hotline_ko_test.yaml",
        "eval/hotline_en_val.yaml", "eval/hotline_ko_val.yaml"]

# How both memory probes end: the probe's own RSS and PSS, as one JSON line.
REPORT_MEMORY = r"""
def kb(path, key):
    for line in open(path):
        if line.startswith(key):
            return int(line.split()[1])
print(json.dumps({"rss_mb": kb("/proc/self/status", "VmRSS:") / 1024,
                  "pss_mb": kb("/proc/self/smaps_rollup", "Pss:") / 1024}))
"""

MEMORY_PROBE = r"""
import json, sys
sys.path.insert(0, %(root)r)
from ivr.config import ROOT
from ivr.flows.loader import load_flows
from ivr.flows.engine import Conversation, Engine, Input
flows = load_flows(ROOT / "flows")
if %(build)r:
    for flow in flows.values():
        engine = Engine(flow)
        for lang in flow.languages:
            conv = Conversation(flow.id, lang)
            engine.start(conv)
            engine.handle(conv, Input("speech", "where is my order" if lang == "en" else "주문한 물건이 안 왔어요"))
""" + REPORT_MEMORY


IMPORT_PROBE = r"""
import json
%(imports)s
""" + REPORT_MEMORY

FORK_PROBE = r"""
import gc, json, os, sys
sys.path.insert(0, %(root)r)
from ivr.config import ROOT
from ivr.flows.loader import load_flows
from ivr.flows.engine import Conversation, Engine, Input
flows = load_flows(ROOT / "flows")
engines = {fid: Engine(flow) for fid, flow in flows.items()} if %(build)r else {}
SAY = {"en": ["where is my order", "there is a charge on my card i did not make", "can i talk to a person"],
       "ko": ["주문한 물건이 안 왔어요", "모르는 결제가 있어요", "상담원 연결해 주세요"]}
gc.collect()
gc.freeze()
def kb(key):
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith(key):
            return int(line.split()[1])
    return 0
pipes = []
for _ in range(%(workers)d):
    r, w = os.pipe()
    if os.fork() == 0:
        os.close(r)
        for _ in range(50):
            for fid, engine in engines.items():
                for lang in engine.flow.languages:
                    for text in SAY[lang]:
                        conv = Conversation(fid, lang)
                        engine.start(conv)
                        engine.handle(conv, Input("speech", text))
        out = {"pss_mb": kb("Pss:") / 1024, "uss_mb": (kb("Private_Clean:") + kb("Private_Dirty:")) / 1024}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    pipes.append(r)
import time
time.sleep(0.5)
results = [json.loads(os.read(r, 4096)) for r in pipes]
for _ in pipes:
    os.wait()
print(json.dumps({"workers": results, "master_pss_mb": kb("Pss:") / 1024}))
"""


def forked(workers: int = 2) -> dict:
    """PSS and USS per forked worker, with and without engines built in the master (best of 3)."""
    out = {}
    for name, build in (("without", False), ("with", True)):
        runs = []
        for _ in range(3):
            r = json.loads(subprocess.run([sys.executable, "-c", FORK_PROBE % {"root": str(ROOT), "build": build,
                                                                               "workers": workers}],
                                          capture_output=True, text=True, check=True).stdout)
            runs.append({k: max(w[k] for w in r["workers"]) for k in ("pss_mb", "uss_mb")})
        out[name] = {k: round(min(r[k] for r in runs), 1) for k in ("pss_mb", "uss_mb")}
    out["workers"] = workers
    out["extra_pss_mb"] = round(out["with"]["pss_mb"] - out["without"]["pss_mb"], 1)
    out["extra_uss_mb"] = round(out["with"]["uss_mb"] - out["without"]["uss_mb"], 1)
    return out


def import_cost() -> dict:
    """What importing numpy, scipy (sparse, optimize) and threadpoolctl costs a bare interpreter."""
    def probe(imports):
        runs = [json.loads(subprocess.run([sys.executable, "-c", IMPORT_PROBE % {"imports": imports}],
                                          capture_output=True, text=True, check=True).stdout) for _ in range(3)]
        return {k: min(r[k] for r in runs) for k in ("rss_mb", "pss_mb")}
    bare = probe("")
    libs = probe("import numpy, scipy.sparse, scipy.optimize, threadpoolctl")
    return {k: round(libs[k] - bare[k], 1) for k in ("rss_mb", "pss_mb")}


def memory() -> dict:
    out = {}
    for name, build in (("without", False), ("with", True)):
        runs = [json.loads(subprocess.run([sys.executable, "-c", MEMORY_PROBE % {"root": str(ROOT), "build": build}],
                                          capture_output=True, text=True, check=True).stdout) for _ in range(3)]
        out[name] = {k: round(min(r[k] for r in runs), 1) for k in ("rss_mb", "pss_mb")}
    out["extra_rss_mb"] = round(out["with"]["rss_mb"] - out["without"]["rss_mb"], 1)
    out["extra_pss_mb"] = round(out["with"]["pss_mb"] - out["without"]["pss_mb"], 1)
    out["libraries"] = import_cost()
    out["total_rss_mb"] = round(out["extra_rss_mb"] + out["libraries"]["rss_mb"], 1)
    out["total_pss_mb"] = round(out["extra_pss_mb"] + out["libraries"]["pss_mb"], 1)
    out["forked"] = forked()
    return out


def latency(repeat: int) -> dict:
    from ivr.eval import load_set
    from ivr.flows.engine import Conversation, Engine, Input
    from ivr.flows.loader import load_flow

    engines, build = {}, {}
    times, best = {}, {}   # best: (lang, set, item) -> fastest of the repeats
    for path in SETS:
        s = load_set(ROOT / path)
        flow_id = s.flow or "hotline"
        if flow_id not in engines:
            t = time.perf_counter()
            engines[flow_id] = Engine(load_flow(ROOT / "flows" / f"{flow_id}.yaml"))
            build[flow_id] = round((time.perf_counter() - t) * 1000, 1)
        engine, lang = engines[flow_id], s.lang or "en"
        for _ in range(repeat):
            for n, item in enumerate(s.items):
                conv = Conversation(flow_id, lang)
                engine.start(conv)
                if item.step:
                    conv.step = item.step
                t = time.perf_counter()
                engine.handle(conv, Input("speech", item.text))
                ms = (time.perf_counter() - t) * 1000
                times.setdefault(lang, []).append(ms)
                key = (lang, path, n)
                best[key] = min(best.get(key, ms), ms)
    out = {"engine_build_ms": build, "load_average": round(os.getloadavg()[0], 1)}
    for lang, values in sorted(times.items()):
        # On a shared host the percentiles over every run include the time the process waited for
        # a core; the fastest run of each sentence is what understanding it costs.
        fastest = [v for (lng, _, _), v in best.items() if lng == lang]
        out[lang] = {"turns": len(values), "p50_ms": round(percentile(values, 50), 3),
                     "p95_ms": round(percentile(values, 95), 3), "p99_ms": round(percentile(values, 99), 3),
                     "max_ms": round(max(values), 3),
                     "best_p50_ms": round(percentile(fastest, 50), 3), "best_p95_ms": round(percentile(fastest, 95), 3),
                     "best_p99_ms": round(percentile(fastest, 99), 3)}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = {"machine": describe(), "latency": latency(args.repeat), "memory": memory()}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(banner())
    lat = result["latency"]
    print(f"engine build (flow load to ready): {lat['engine_build_ms']} ms; load average {lat['load_average']}")
    for lang in ("en", "ko"):
        r = lat[lang]
        print(f"{lang}: {r['turns']} turns  p50 {r['p50_ms']:.2f} ms  p95 {r['p95_ms']:.2f} ms  "
              f"p99 {r['p99_ms']:.2f} ms  max {r['max_ms']:.2f} ms; fastest run of each sentence: "
              f"p50 {r['best_p50_ms']:.2f}  p95 {r['best_p95_ms']:.2f}  p99 {r['best_p99_ms']:.2f} ms")
    m = result["memory"]
    print(f"one process: without matchers RSS {m['without']['rss_mb']} MB / PSS {m['without']['pss_mb']} MB, "
          f"with RSS {m['with']['rss_mb']} MB / PSS {m['with']['pss_mb']} MB: "
          f"+{m['extra_rss_mb']} MB RSS, +{m['extra_pss_mb']} MB PSS; numpy + scipy imports "
          f"+{m['libraries']['rss_mb']} MB RSS / +{m['libraries']['pss_mb']} MB PSS; "
          f"total +{m['total_rss_mb']} MB RSS / +{m['total_pss_mb']} MB PSS")
    f = m["forked"]
    print(f"{f['workers']} workers forked after the master built the engines: per worker PSS "
          f"{f['without']['pss_mb']} -> {f['with']['pss_mb']} MB (+{f['extra_pss_mb']}), "
          f"USS {f['without']['uss_mb']} -> {f['with']['uss_mb']} MB (+{f['extra_uss_mb']})")


if __name__ == "__main__":
    main()
