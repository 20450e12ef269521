"""No `ivr` command leaves a process behind, and `ivr simulate` keeps off the server's Redis.

Every command that may start the embedded Redis runs as a real process in a folder of its own
(IVR_DATA_DIR and TMPDIR, where simulate's throw-away Redis goes); the redis-server processes
counted are those working in that folder (/proc/PID/cwd: redis-server moves into its data folder),
so servers of other test runs on the machine do not count. A control first shows the count sees
an orphan when there is one.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis as redis_lib

from ivr.config import ROOT
from tests.support.dashboard import PASSWORD, login_over_http
from tests.support.fault_table import record as record_row
from tests.support.procs import RedisProcess, ServeProcess, wait_for

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


def ivr(scope: Path, *args, env=None, timeout=120, input=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "ivr.cli", *args], env=env or _env(scope), cwd=cwd or scope,
                          capture_output=True, text=True, timeout=timeout, input=input)


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


# -- One data folder, one redis-server (ivr/redis_conn.py) ----------------------------------------------

TOKEN = "t" * 32


def _serve_env(scope: Path, **extra) -> dict:
    return _env(scope, TWILIO_AUTH_TOKEN=TOKEN, IVR_SPEECH="off", **extra)


def _private_tmp(folder: Path) -> tuple:
    """A command prefix that runs a process in a mount namespace of its own with a tmpfs on `folder`: what
    systemd's PrivateTmp=yes does to the service's /tmp (the deploy/ivr.service unit sets it). Needs
    `unshare -m` and mount, so root (CAP_SYS_ADMIN); skipped where that is not available."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1): cannot give the server a /tmp of its own")
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -m is not permitted here (root only): {probe.stderr.strip()}")
    folder.mkdir(parents=True, exist_ok=True)
    return ("unshare", "-m", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs -o mode=0700 ivr-private-tmp "$0" && exec "$@"', str(folder))


def test_a_command_beside_a_server_with_a_private_tmp_uses_the_servers_redis(scope):
    """The shipped unit has PrivateTmp=yes: the server's temporary folder is invisible to an admin command.
    The command must still reach the server's Redis (the socket is in the data folder), not start a second
    redis-server on the same dump and append-only file: before, `ivr operators add` said "added" into a
    Redis of its own, deleted the server's settings file, and the operator could not log in."""
    server_tmp = scope / "server-tmp"
    srv = ServeProcess(dict(_serve_env(scope), TMPDIR=str(server_tmp)), threads=4, workers=2,
                       prefix=_private_tmp(server_tmp))
    srv.start()
    try:
        (redis_server,) = redis_servers(scope)
        assert list(server_tmp.iterdir()) == []          # its /tmp is not ours: nothing of it shows here
        env = _serve_env(scope)                          # the command's TMPDIR is scope/tmp
        added = ivr(scope, "operators", "add", "alice", "--password-stdin", env=env, input=PASSWORD + "\n")
        assert added.returncode == 0, added.stdout + added.stderr
        assert redis_servers(scope) == [redis_server]
        assert login_over_http(srv.port, "alice", PASSWORD)[0] == 302          # the server knows her
        assert f"the embedded Redis of {scope / 'var'}" in added.stderr        # and the command said where
        agent = ivr(scope, "agents", "add", "bea", "+15551230002", env=env)
        backup = ivr(scope, "backup", str(scope / "b.jsonl"), env=env)
        reloaded = ivr(scope, "reload", "--wait", "20", env=env)
        for run in (agent, backup, reloaded):
            assert run.returncode == 0, run.stdout + run.stderr
        assert not backup.stdout.startswith("0 key(s)"), backup.stdout     # the server's data, not an empty Redis
        assert "serving" in reloaded.stdout
        assert redis_servers(scope) == [redis_server]
    finally:
        output = srv.terminate()
    assert "Traceback" not in output, output
    assert redis_servers(scope) == []


def test_a_command_refuses_when_the_owner_of_the_redis_has_none_running(scope):
    """The server holds the data folder's lock; its Redis is dead and the server cannot start it again
    (stopped, here with SIGSTOP): a command waits for it, then refuses in one line, exit 2, instead of
    starting a second redis-server on the server's files. Once the server is back, so is its Redis."""
    env = _serve_env(scope)
    srv = ServeProcess(env, threads=4).start()
    try:
        (first,) = redis_servers(scope)
        os.kill(srv.proc.pid, signal.SIGSTOP)            # the master: it owns the Redis and would restart it
        try:
            os.kill(first, signal.SIGKILL)
            wait_for(lambda: redis_servers(scope) == [], what="the embedded Redis to die")
            run = ivr(scope, "agents", "list", env=env)
            assert run.returncode == 2, run.stdout + run.stderr
            error = run.stderr.strip().splitlines()[-1]
            assert "not starting a second redis-server" in error and str(srv.proc.pid) in error, run.stderr
            assert "Traceback" not in run.stderr
            assert redis_servers(scope) == []
        finally:
            os.kill(srv.proc.pid, signal.SIGCONT)
        wait_for(lambda: len(redis_servers(scope)) == 1, what="the server to start its Redis again")
        assert ivr(scope, "agents", "list", env=env).returncode == 0
    finally:
        srv.terminate()
    assert redis_servers(scope) == []


def _health(srv) -> int:
    try:
        with urllib.request.urlopen(srv.url + "/healthz", timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_serve_starts_its_embedded_redis_again_when_it_dies(scope):
    """redis-server killed under `ivr serve`: the master starts it again on the same files and socket, the
    workers reconnect, /healthz is 200 again and nothing written before is lost. Before, /healthz stayed
    503 and every caller got the fallback, while the process stayed up for systemd to leave alone."""
    env = _serve_env(scope)
    srv = ServeProcess(env, threads=4, workers=2).start()
    try:
        assert ivr(scope, "agents", "add", "bea", "+15551230002", env=env).returncode == 0
        (first,) = redis_servers(scope)
        time.sleep(1.5)                                  # appendfsync everysec: the write is on disk
        os.kill(first, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: redis_servers(scope) not in ([], [first]) and _health(srv) == 200,
                 what="the embedded Redis to be back", timeout=30)
        back_after = time.monotonic() - killed_at
        assert len(redis_servers(scope)) == 1
        assert "bea" in ivr(scope, "agents", "list", env=env).stdout
        assert "started again" in srv.output()
        record_row("redis_embedded_killed", what="The embedded redis-server killed (SIGKILL) under `ivr serve`",
                   tried="1 server, 2 workers, an agent added before",
                   outcome="the master started it again on the same files and socket; the workers reconnected; "
                           "/healthz 200 again; the agent still there",
                   lost_writes=0, back_after_s=round(back_after, 1))
    finally:
        output = srv.terminate()
    assert srv.proc.returncode == 0, output
    assert redis_servers(scope) == []


def test_serve_exits_non_zero_when_its_embedded_redis_keeps_dying(scope):
    """A Redis that dies again and again is not started for ever: after REVIVE_LIMIT restarts in
    REVIVE_WINDOW the server stops with exit status 1, which a supervisor (Restart=on-failure) sees."""
    from ivr.server import REVIVE_LIMIT

    srv = ServeProcess(_serve_env(scope), threads=4).start()
    killed = set()
    deadline = time.monotonic() + 120
    try:
        while srv.proc.poll() is None and time.monotonic() < deadline:
            # Each one once the master has finished starting it and it serves (one killed while it starts is
            # one that could not be started again: exit 1 too, but not what this test counts).
            if srv.output().count("started again") == len(killed) and _health(srv) == 200:
                for pid in set(redis_servers(scope)) - killed:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
            time.sleep(0.05)
        assert srv.proc.poll() == 1, srv.output()
    finally:
        output = srv.terminate()
    assert len(killed) == REVIVE_LIMIT + 1, output
    assert f"died {REVIVE_LIMIT + 1} times" in output
    assert redis_servers(scope) == []


# -- Admin commands run where there is no hotline ----------------------------------------------------------

def _bare_env(scope: Path) -> dict:
    """No IVR_HOME, IVR_DATA_DIR or REDIS_URL: the working directory decides, as for a cron job."""
    env = _env(scope)
    for name in ("IVR_HOME", "IVR_DATA_DIR", "REDIS_URL", "REDIS_SENTINELS"):
        env.pop(name, None)
    return env


def test_a_cron_backup_in_the_wrong_folder_fails_and_in_the_hotline_folder_names_it(scope):
    """README's cron line run from the wrong directory used to write "0 key(s)" from a new, empty Redis and
    exit 0. Now it refuses (exit 2, one line, nothing created); run in the hotline folder, it names the
    folder whose Redis it read."""
    elsewhere = scope / "elsewhere"
    elsewhere.mkdir()
    env = _bare_env(scope)
    run = ivr(scope, "backup", "b.jsonl", env=env, cwd=elsewhere)
    assert run.returncode == 2 and run.stdout == "", run.stdout + run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "not a hotline folder" in run.stderr
    assert list(elsewhere.iterdir()) == [] and redis_servers(scope) == []

    hotline = scope / "hotline"
    assert ivr(scope, "init", str(hotline), env=env).returncode == 0
    assert ivr(scope, "agents", "add", "ann", "+15551230001", env=env, cwd=hotline).returncode == 0
    run = ivr(scope, "backup", "b.jsonl", env=env, cwd=hotline)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"from the embedded Redis of {hotline / 'var'} written" in run.stdout
    assert not run.stdout.startswith("0 key(s)")
    assert redis_servers(scope) == []
