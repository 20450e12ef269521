"""Real Redis topologies from Debian's packages for the failover and cluster tests: a master, a replica and
three sentinels; a three-master cluster. Every process is its own process group and is killed at stop()."""
from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis as redis_lib

from ivr.server import free_port
from tests.support.procs import kill_group, or_stop, wait_for

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_SENTINEL = shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
SERVICE = "mymaster"
# The figures docs/scaling.md gives for a test (production: see there).
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


class Node:
    """One redis-server (or redis-sentinel) on a loopback port with its own folder and config file."""

    def __init__(self, workdir: Path, name: str, binary=REDIS_SERVER):
        self.dir = Path(workdir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name, self.binary = name, binary
        self.port = free_port()
        self.proc = None

    def start(self, lines: list):
        conf = self.dir / f"{self.name}.conf"
        conf.write_text("\n".join([f"port {self.port}", "bind 127.0.0.1", f"dir {self.dir}", "daemonize no",
                                   "save \"\"", "appendonly no", "loglevel warning",
                                   f"logfile {self.dir / 'log.txt'}"] + lines) + "\n")
        self.proc = subprocess.Popen([self.binary, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_for(self._up, what=self.name)
        return self

    def _up(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited: {self.log()[-2000:]}")
        try:
            return self.client().ping()
        except redis_lib.RedisError:
            return False

    def client(self, **kw) -> redis_lib.Redis:
        return redis_lib.Redis("127.0.0.1", self.port, socket_timeout=2, decode_responses=True, **kw)

    def log(self) -> str:
        path = self.dir / "log.txt"
        return path.read_text() if path.exists() else ""

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def kill(self):
        if self.proc is not None:
            self.resume()
            kill_group(self.proc)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class SentinelSet:
    """A master, one replica and three sentinels watching them (quorum 2)."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.master = Node(self.workdir, "master")
        self.replica = Node(self.workdir, "replica")
        self.sentinels = [Node(self.workdir, f"sentinel{i}", REDIS_SENTINEL) for i in range(3)]

    @property
    def addresses(self) -> tuple:
        return tuple(("127.0.0.1", s.port) for s in self.sentinels)

    def start(self):
        return or_stop(self, self._start)

    def _start(self):
        self.master.start([])
        self.replica.start([f"replicaof 127.0.0.1 {self.master.port}"])
        wait_for(lambda: self.master.client().info("replication")["connected_slaves"] == 1, what="replication")
        for s in self.sentinels:
            s.start([f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} 2",
                     f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                     f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
                     f"sentinel parallel-syncs {SERVICE} 1"])

        def ready():  # every sentinel knows the replica and the two other sentinels: a failover can be voted
            for s in self.sentinels:
                state = s.client().sentinel_master(SERVICE)
                if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < 2:
                    return False
            return True
        wait_for(ready, what="sentinels to find each other", timeout=30)
        return self

    def master_address(self) -> tuple:
        host, port = self.sentinels[0].client().sentinel_get_master_addr_by_name(SERVICE)
        return host, int(port)

    def wait_promoted(self, timeout=30.0) -> float:
        """Seconds until every sentinel names the replica as the master."""
        t0 = time.monotonic()
        wait_for(lambda: all(int(s.client().sentinel_get_master_addr_by_name(SERVICE)[1]) == self.replica.port
                             for s in self.sentinels), what="failover", timeout=timeout)
        return time.monotonic() - t0

    def stop(self):
        for node in self.sentinels + [self.replica, self.master]:
            node.kill()


class Cluster:
    """Three masters, no replicas, slots spread by `redis-cli --cluster create`."""

    def __init__(self, workdir: Path, size=3):
        self.nodes = [Node(workdir, f"cluster{i}") for i in range(size)]

    def start(self):
        return or_stop(self, self._start)

    def _start(self):
        for n in self.nodes:
            # The cluster bus gets its own free port (by default it is the port + 10000, which may not exist).
            n.start(["cluster-enabled yes", f"cluster-config-file {n.dir / 'nodes.conf'}",
                     "cluster-node-timeout 2000", f"cluster-port {free_port()}"])
        out = subprocess.run([REDIS_CLI, "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in self.nodes],
                              "--cluster-yes"], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(out.stdout + out.stderr)
        wait_for(lambda: all(n.client().cluster("info").get("cluster_state") == "ok" for n in self.nodes),
                 what="cluster state ok", timeout=30)
        return self

    def stop(self):
        for n in self.nodes:
            n.kill()


def scratch(prefix="ivr-redis-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
