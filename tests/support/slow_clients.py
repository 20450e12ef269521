"""Slow clients against a real server: connections that send their headers (or body) a byte at a time.

`SlowLoris(host, port, n)` keeps `n` such connections open from background threads, reopening
any the server closes, until stop(); `probe()` times one ordinary request on a fresh connection.
Bounded in count and time, loopback only.
"""
from __future__ import annotations

import socket
import threading
import time

SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"


class SlowLoris:
    def __init__(self, host: str, port: int, n: int = 200, interval: float = 0.5, body: bool = False,
                 source: str = "127.0.0.1", seconds: float = 60.0):
        self.addr = (host, port)
        self.n, self.interval, self.body, self.source = n, interval, body, source
        self.deadline = time.monotonic() + seconds          # never runs on past this, whatever the test does
        self.stopping = threading.Event()
        self.opened = 0          # connections opened (reopened ones included)
        self.closed_by_server = 0
        self.open_now = 0
        self.longest = 0.0       # seconds the longest-lived connection stayed open
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for t in self.threads:
            t.join(5)

    def _head(self) -> bytes:
        if self.body:     # complete headers, then a body that never finishes
            return b"POST /voice HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n"
        return SLOW_HEAD

    def _run(self):
        while not self.stopping.is_set() and time.monotonic() < self.deadline:
            try:
                s = socket.create_connection(self.addr, timeout=5, source_address=(self.source, 0))
            except OSError:
                time.sleep(0.05)
                continue
            with self._lock:
                self.opened += 1
                self.open_now += 1
            t0 = time.monotonic()
            try:
                s.sendall(self._head())
                while not self.stopping.is_set() and time.monotonic() < self.deadline:
                    s.sendall(b"a" if self.body else b"X")     # one more byte, never the end
                    if self.stopping.wait(self.interval):
                        break
                    s.settimeout(0.001)
                    try:
                        s.recv(1024)              # an answer (408) or the end: the server gave up on us
                        raise ConnectionResetError
                    except (TimeoutError, BlockingIOError):
                        pass
                    s.settimeout(5)
            except OSError:
                with self._lock:
                    self.closed_by_server += 1
            finally:
                with self._lock:
                    self.open_now -= 1
                    self.longest = max(self.longest, time.monotonic() - t0)
                s.close()


def probe(host: str, port: int, raw: bytes, timeout: float = 5.0) -> tuple:
    """(status, seconds) of one request on a fresh connection; status 0 when none came in time."""
    t0 = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(raw)
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return 0, time.monotonic() - t0
    try:
        return int(data.split(b" ", 2)[1]), time.monotonic() - t0
    except (IndexError, ValueError):
        return 0, time.monotonic() - t0
