"""The reliability table of docs/reliability.md, from the counts of a test run.

The fault, fuzz and shutdown tests (tests/test_stream_faults.py, tests/test_ws_fuzz.py,
tests/test_shutdown.py, tests/test_reliability.py, tests/test_fuzz.py) each add a row to
the JSON file named by FAULT_TABLE, when it is set (tests write nowhere else but temporary
folders); this prints the Markdown:

    FAULT_TABLE=/tmp/faults.json .venv/bin/python -m pytest -q tests/test_stream_faults.py \
        tests/test_ws_fuzz.py tests/test_shutdown.py tests/test_reliability.py tests/test_fuzz.py
    .venv/bin/python -m tests.support.fault_table /tmp/faults.json   # paste into docs/reliability.md
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

_lock = threading.Lock()


def record(key: str, *, what: str, tried: str, outcome: str, **counts) -> None:
    """Add or replace one row (tests call this after their assertions passed); only with FAULT_TABLE set."""
    if not os.environ.get("FAULT_TABLE"):
        return
    results = Path(os.environ["FAULT_TABLE"])
    with _lock:
        results.parent.mkdir(parents=True, exist_ok=True)
        data = json.loads(results.read_text()) if results.is_file() else {}
        data[key] = {"what": what, "tried": tried, "outcome": outcome, "counts": counts,
                     "at": time.strftime("%Y-%m-%d %H:%M:%S")}
        tmp = results.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True))
        os.replace(tmp, results)


def table(data: dict) -> str:
    lines = ["| Fault or bad input | Tried | What happened | Counts (last run) |", "|---|---|---|---|"]
    for key in sorted(data):
        row = data[key]
        counts = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in sorted(row["counts"].items()))
        lines.append(f"| {row['what']} | {row['tried']} | {row['outcome']} | {counts} |")
    last = max((r["at"] for r in data.values()), default="never")
    lines.append("")
    lines.append(f"Last run: {last}. Regenerate: see \"Regenerating the table\" below.")
    return "\n".join(lines)


def main() -> int:
    results = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("FAULT_TABLE", ""))
    if not results.is_file():
        print(f"{results} not found: run the reliability tests with FAULT_TABLE set first (see this file's "
              "docstring)", file=sys.stderr)
        return 1
    print(table(json.loads(results.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
