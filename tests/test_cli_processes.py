"""No `ivr` command leaves a process behind, and `ivr simulate` keeps off the server's Redis.

Every command that may start the embedded Redis runs as a real process in a folder of its own
(IVR_DATA_DIR and TMPDIR, where simulate's throw-away Redis goes); the redis-server processes
counted are those working in that folder (/proc/PID/cwd: redis-server moves into its data folder),
so servers of other test runs on the machine do not count. A control first shows the count sees
an orphan when there is one.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_lib

from ivr.config import ROOT
from tests.support.procs import RedisProcess, ServeProcess

pytestmark = pytest.mark.slow


def redis_servers(scope: Path) -> list:
    """pids of redis-server processes working under `scope` (a deleted folder still shows its path)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "comm").read_text().strip() != "redis-server":
                continue
            where = os.readlink(proc / "cwd")
        except OSError:
            continue
        if where.startswith(str(scope)):
            found.append(int(proc.name))
    return found


def _env(scope: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "PYTEST_"))}
    # Empty, not absent: ServeProcess lays its env over os.environ, where CI's REDIS_URL would win.
    env.update(REDIS_URL="", REDIS_SENTINELS="")
    (scope / "tmp").mkdir(parents=True, exist_ok=True)
    env.update(IVR_DATA_DIR=str(scope / "var"), TMPDIR=str(scope / "tmp"), IVR_HOURS="open",
               PYTHONPATH=str(ROOT), **extra)
    return env


def ivr(scope: Path, *args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "ivr.cli", *args], env=env or _env(scope), cwd=scope,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def scope(tmp_path):
    folder = tmp_path / "cli"
    folder.mkdir()
    yield folder
    for pid in redis_servers(folder):        # a failing test must not leave its orphans either
        os.kill(pid, signal.SIGKILL)


def test_the_count_sees_an_orphan(scope):
    """Control: a process that starts the embedded Redis and dies without its exit hooks leaves one."""
    code = ("import os, sys; from ivr.redis_conn import start_embedded; start_embedded(sys.argv[1]); "
            "os._exit(0)")
    subprocess.run([sys.executable, "-c", code, str(scope / "var")], env=_env(scope), check=True, timeout=60)
    assert len(redis_servers(scope)) == 1


EMBEDDED_COMMANDS = [
    ("agents", "list"),
    ("operators", "list"),
    ("unanswered",),
    ("check-flows",),
    ("simulate", "--press", "1"),
    ("simulate", "--server-redis", "--press", "1"),
    ("eval", "--set", str(ROOT / "tests" / "data" / "hotline_en_labelled.yaml"), "--asr", "text", "--limit", "2"),
]


@pytest.mark.parametrize("args", EMBEDDED_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_no_command_leaves_a_redis_server_behind(scope, args):
    assert redis_servers(scope) == []
    if args[0] != "simulate":
        # The command finds data from an earlier run: the Redis it starts has something to load and save.
        assert ivr(scope, "agents", "add", "ann", "+15551230001").returncode == 0
        assert redis_servers(scope) == []
    run = ivr(scope, *args)
    assert run.returncode == 0, run.stdout + run.stderr
    assert redis_servers(scope) == [], f"{' '.join(args)} left redis-server running"
    assert "Traceback" not in run.stderr
    # Nothing of the Redis the command ran is left in its temporary folder.
    assert list((scope / "tmp").iterdir()) == []


def test_serve_stops_its_embedded_redis_and_keeps_the_data(scope):
    env = _env(scope, TWILIO_AUTH_TOKEN="t" * 32, IVR_SPEECH="off")
    srv = ServeProcess(env, threads=4, workers=2).start()
    try:
        assert len(redis_servers(scope)) == 1
        added = ivr(scope, "agents", "add", "bea", "+15551230002", env=env)   # joins the running server
        assert added.returncode == 0, added.stderr
        assert len(redis_servers(scope)) == 1, "a command next to a running server stopped or duplicated its Redis"
        listed = ivr(scope, "agents", "list", env=env)
        assert "bea" in listed.stdout and len(redis_servers(scope)) == 1
    finally:
        output = srv.terminate()
    # The master stopped it, after its workers: none of them stopped it under the others.
    assert "did not shut down cleanly" not in output and "Traceback" not in output, output
    deadline = time.monotonic() + 15
    while redis_servers(scope) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert redis_servers(scope) == []
    listed = ivr(scope, "agents", "list", env=env)
    assert "bea" in listed.stdout and redis_servers(scope) == []


def test_simulate_keeps_off_the_servers_redis(scope, tmp_path):
    """A rehearsal on a production box adds nothing to the server's Redis (figures, queues, waits);
    --server-redis asks for exactly that."""
    server = RedisProcess(tmp_path / "production").start()
    try:
        env = _env(scope, REDIS_URL=server.url)
        production = redis_lib.Redis.from_url(server.url)
        run = ivr(scope, "simulate", "--press", "0", env=env)
        assert run.returncode == 0, run.stderr
        assert "outcome=" in run.stdout
        assert production.dbsize() == 0
        run = ivr(scope, "simulate", "--server-redis", "--press", "0", env=env)
        assert run.returncode == 0, run.stderr
        assert production.dbsize() > 0
        production.close()
    finally:
        server.stop()
    assert redis_servers(scope) == []


def test_a_command_that_started_the_redis_a_server_joined_leaves_it_to_the_server(scope):
    """The one case a command's Redis outlives it: `ivr serve` joined it meanwhile, and must keep it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from ivr.redis_conn import connect; r = connect(None, sys.argv[1]); "
         "r.ping(); print('up', flush=True); sys.stdin.readline()", str(scope / "var")],
        env=_env(scope), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "up"
    (started,) = redis_servers(scope)
    srv = ServeProcess(_env(scope, TWILIO_AUTH_TOKEN="t" * 32, IVR_SPEECH="off"), threads=4)
    srv.env["PUBLIC_URL"] = srv.url
    srv.start()
    try:
        holder.communicate("\n", timeout=30)
        assert holder.returncode == 0
        assert redis_servers(scope) == [started]
        run = ivr(scope, "simulate", "--url", srv.url, "--token", "t" * 32, "--press", "1")
        assert run.returncode == 0, run.stdout + run.stderr      # the server still has its Redis
    finally:
        srv.terminate()
