"""HAProxy (Debian's package) running the repository's own deploy/haproxy.cfg in front of test servers."""
from __future__ import annotations

import csv
import io
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from ivr.config import ROOT
from ivr.server import free_port
from tests.support.procs import kill_group, or_stop, wait_for

CONFIG = ROOT / "deploy" / "haproxy.cfg"


class Haproxy:
    """`haproxy -db -f deploy/haproxy.cfg`; start() names the servers as host:port (IVR_SERVER1, IVR_SERVER2).
    The port is chosen first: the servers need the balancer's URL (PUBLIC_URL) before they start."""

    def __init__(self, workdir: Path):
        self.binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        # A unix socket path must stay under ~100 bytes: a short folder of its own, not the test's.
        self.socket = str(Path(tempfile.mkdtemp(prefix="ivr-lb-")) / "haproxy.sock")
        self.env = dict(os.environ, IVR_LB_BIND=f"127.0.0.1:{self.port}", IVR_LB_STATS_SOCKET=self.socket)
        self.log = tempfile.NamedTemporaryFile("w+", prefix="haproxy-", suffix=".log", delete=False)
        self.proc = None

    def start(self, servers: list):
        for i, server in enumerate(servers, 1):
            self.env[f"IVR_SERVER{i}"] = server
        self.proc = subprocess.Popen([self.binary, "-db", "-f", str(CONFIG)], env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        or_stop(self, lambda: wait_for(self._listening, what="haproxy"))
        return self

    def _listening(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"haproxy exited: {Path(self.log.name).read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return os.path.exists(self.socket)
        except OSError:
            return False

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(self.socket)
            s.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode()

    def servers(self, backend="ivr") -> dict:
        """server name -> its `show stat` row (status UP/DOWN, stot requests+sessions, scur current)."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {r["svname"]: r for r in rows if r["pxname"] == backend and r["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_status(self, name, status, timeout=20.0):
        wait_for(lambda: self.servers()[name]["status"].startswith(status), what=f"{name} {status}", timeout=timeout)

    def output(self) -> str:
        return Path(self.log.name).read_text()

    def stop(self):
        if self.proc is not None:
            kill_group(self.proc)
        shutil.rmtree(Path(self.socket).parent, ignore_errors=True)
