"""The benchmarks run (quick mode) and write sane JSON, so they cannot rot. Not a timing test.

They run against this session's Redis, and write their results, server data and prompt audio
under its temporary folders (IVR_DATA_DIR, IVR_AUDIO_DIR: tests/conftest.py)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = None
# Real servers, Korean callers decoded by Vosk, a couple of minutes.
pytestmark = [pytest.mark.bench, pytest.mark.slow, pytest.mark.speech]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, redis_url):
    global RESULTS
    RESULTS = tmp_path_factory.mktemp("bench-results")
    env = dict(os.environ, BENCH_RESULTS_DIR=str(RESULTS), REDIS_URL=redis_url)
    return subprocess.run([sys.executable, "-m", "bench.run_all", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=env)


def test_run_all_quick_exits_zero(quick_run):
    assert quick_run.returncode == 0, quick_run.stdout[-3000:] + quick_run.stderr[-3000:]


def test_webhooks_json(quick_run):
    data = json.loads((RESULTS / "webhooks-quick.json").read_text())
    assert data["machine"]["cores"] >= 1
    kinds = {r["endpoint"] for r in data["results"]}
    assert kinds == {"voice", "wait"}
    for r in data["results"]:
        assert r["requests"] > 0 and r["errors"] == 0
        assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert data["redis_round_trips"]["POST /voice"] <= 2


def test_turn_latency_json(quick_run):
    data = json.loads((RESULTS / "turn_latency-quick.json").read_text())
    design = [r for r in data["results"] if r["variant"] == "design"]
    assert [(r["mode"], r["calls"]) for r in design] == [("burst", 1), ("burst", 3), ("sustained", 2)]
    sustained = design[-1]
    # Two lines for 20 s of ~7 s calls: each line placed its next call as the last hung up.
    assert sustained["calls_placed"] >= 4 and sustained["failed"] == 0
    for r in data["results"]:
        # A shared CI machine may starve a call; the bench must still run and time turns.
        # (the alternatives may mishear the script and so time fewer turns: that is what they show)
        assert 0 < r["turns_timed"] <= 2 * r.get("calls_placed", r["calls"])
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["max_ms"]
    assert all(r["failed"] < r["calls"] for r in design)
    for r in design:   # the server's split of each turn was recorded and read back
        assert all(v is not None and v >= 0 for v in r["split_p50_ms"].values())
    assert {"design", "free-form", "naive"} <= set(data["comparison_p95_ms"]["1"])


def test_soak_json(quick_run):
    data = json.loads((RESULTS / "soak.json").read_text())
    assert data["calls"] > 0 and data["error_count"] == 0 and not data["incomplete"]


def test_metrics_json(quick_run):
    data = json.loads((RESULTS / "metrics-quick.json").read_text())
    assert [r["records"] for r in data["results"]] == [30, 3000]
    for r in data["results"]:
        assert r["cache_seconds"] == 0 and 0 < r["p50_ms"] <= r["p95_ms"] <= r["max_ms"] and r["body_bytes"] > 1000


@pytest.mark.bench
def test_matchers_table_scores_the_chosen_design_on_the_readable_sets():
    run = subprocess.run([sys.executable, "-m", "bench.matchers", "--design", "chosen", "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    chosen = json.loads(run.stdout)["chosen"]
    assert {"en val", "en dev", "ko val", "ko dev"} <= set(chosen)
    assert not any("test" in name for name in chosen)          # the test halves only with --test
    assert all(0.0 <= chosen[s]["routing_accuracy"] <= 1.0 for s in ("en val", "ko val"))


def test_capacity_json(quick_run):
    data = json.loads((RESULTS / "capacity-quick.json").read_text())
    assert data["machine"]["cores"] >= 1 and data["workers"] >= 2
    (level,) = data["levels"]
    assert set(level["mix"]) == {"spoken", "keypad", "queued"} and sum(level["mix"].values()) == level["calls"]
    assert all(level["calls_done"][k] > 0 for k in level["mix"])
    assert sum(level["calls_failed"].values()) == 0 and level["webhook_errors"] == 0
    assert level["spoken_turns"] > 0 and 0 < level["spoken_p50_ms"] <= level["spoken_p95_ms"]
    assert 0 < level["webhook_p50_ms"] <= level["webhook_p95_ms"]
    assert level["server_cpu_cores"] > 0 and level["webhooks_per_call"] >= 4
    assert level["webhooks"]["voice/queue/wait"] > 0
    # Memory per worker from smaps_rollup: PSS no more than RSS, shared pages counted (the model).
    assert len(level["workers"]) == data["workers"]
    assert all(0 < w["pss_mib"] <= w["rss_mib"] and w["shared_mib"] > 0 for w in level["workers"])
    redis = level["redis_per_call"]
    assert redis["commands"] > 10 and redis["bytes_in"] > 0 and redis["bytes_out"] > 0
    assert redis["by_command"]["evalsha"] >= 1
