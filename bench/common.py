"""Shared helpers for benchmarks: a server under test, CPU time, percentiles (the machine: bench/machine.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Where benchmarks keep server data (an embedded Redis, each server's IVR_DATA_DIR): the repository's
# var/ unless IVR_DATA_DIR names another folder (the test that runs the benchmarks gives a temporary one).
VAR = Path(os.environ.get("IVR_DATA_DIR") or ROOT / "var")


def cpu_seconds(pid=None) -> float:
    """User+system CPU seconds of a process (this one by default), from /proc."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = children.read_text().split() if children.exists() else []
    if kids:   # gunicorn: the worker does the work, the master only watches it
        return sum(cpu_seconds(int(k)) for k in kids)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_url() -> str:
    """REDIS_URL, else the local Redis on 6379 (db 12) if one answers, else an embedded redis-server."""
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"]
    import socket
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return "redis://127.0.0.1:6379/12"
    except OSError:
        pass
    from ivr.redis_conn import start_embedded
    return start_embedded(VAR / "bench-redis")


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


class GunicornServer:
    """`ivr serve` (gunicorn, gthread) in a subprocess, as in production."""

    def __init__(self, port, token, redis_url, threads=96, workers=1, extra_env=None, nice=0, design="design"):
        self.port, self.url = port, f"http://127.0.0.1:{port}"
        # IVR_HOURS=open: figures must not depend on the time of day the benchmark runs at.
        env = dict(os.environ, TWILIO_AUTH_TOKEN=token, PUBLIC_URL=self.url, IVR_FEEDBACK="off",
                   IVR_HANDOFF_MODE="dial", IVR_HOURS="open")
        env.update(extra_env or {})
        if redis_url:
            env["REDIS_URL"] = redis_url
        self.log_path = Path(tempfile.gettempdir()) / f"ivr-bench-server-{port}.log"
        self.log = open(self.log_path, "w")
        # The production command for ivr's own design; bench/designs.py for the ones it is compared with.
        serve = ["ivr.cli", "serve"] if design == "design" else ["bench.designs", "--design", design]
        cmd = [sys.executable, "-m", *serve, "--host", "127.0.0.1", "--port", str(port),
               "--threads", str(threads), "--workers", str(workers)]
        if nice:   # the load generator shares the cores: see turn_latency.SERVER_NICE
            cmd = ["nice", "-n", str(nice)] + cmd
        self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
