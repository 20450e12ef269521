"""gunicorn's threaded worker, made safe from slow clients: no thread waits on a client.

gunicorn's gthread worker hands each new connection to a thread, which then reads the
request's headers and body with blocking reads and no deadline (gunicorn 27 only puts back
a connection that sends nothing at all for 5 s). Measured against `ivr serve --threads 16`:
200 connections each sending "GET /healthz HTTP/1.1" and then one header byte every
0.5 s held every thread; /healthz and POST /voice got no answer within 3 s, for as long
as the connections stayed open. The fallback webhook lives on the same server, so a
caller whose webhook failed would have reached nobody either.

GuardedWorker reads every request in the worker's event loop instead, without blocking,
before any thread sees it:

- the request line and headers must arrive within `header_timeout` seconds, and the body
  (Content-Length, at most `max_body` bytes: the app's own limit) within `body_timeout`
  seconds after them; late ones get 408 and are closed. Bigger bodies get 413 and
  chunked bodies 411 at once (Twilio and browsers send neither to ivr);
- each client address has at most `per_client` connections waiting (being read, or idle
  between keep-alive requests); one more closes that address's oldest waiting one. A flood
  from one address cannot fill the worker's connections, while an ordinary request, which
  arrives whole, is never the oldest for long;
- all addresses together have at most `max_waiting` connections waiting; one more closes the
  oldest idle keep-alive connection, else the oldest one being read. gunicorn stops accepting
  once a worker holds `worker_connections`, so without this a flood from enough addresses
  (17 x 62 slow connections against the default 1000) stopped the whole server; `max_waiting`
  (waiting_cap) leaves room below it for the threads' own connections and the complete
  requests queued for them, so the worker always accepts;
- only complete requests reach a thread, so threads are spent on work, never on waiting
  for a client. A media stream is an ordinary GET until its upgrade; the wait for its
  `start` message is bounded by ivr.speech.session.START_WAIT.

Behind a reverse proxy every connection comes from the proxy's address: the per-client cap
then applies to the proxy, which completes requests at once, so it does not bite; the
proxy must apply its own limits per real client (docs/security.md).

The worker builds on gthread's internals (TConn, enqueue_req, the poller), so gunicorn is
pinned to the 27 series in requirements.txt; tests/test_slow_clients.py runs the attack.
"""
from __future__ import annotations

import selectors
import time
from collections import OrderedDict, defaultdict, deque
from dataclasses import dataclass
from functools import partial

from gunicorn.workers.gthread import ThreadWorker


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    per_client: int = 64
    max_waiting: int = 1000 - 2 * 64    # waiting_cap(gunicorn's default worker_connections, ivr's 64 threads)
    max_body: int = 64 * 1024
    max_header: int = 32 * 1024


def waiting_cap(connections: int, threads: int) -> int:
    """Connections one worker lets wait (being read, or idle between keep-alive requests) when it may hold
    `connections`: the rest is kept for its threads (a request, a media stream, a live view each) and as
    many complete requests queued for them, so waiting clients can never stop it accepting."""
    return connections - 2 * threads


# Called with a reason (header_timeout, body_timeout, client_limit, worker_limit, too_large, chunked) for every
# connection the guard closes; ivr.metrics counts them. Set before the workers fork.
on_close = None

_RESPONSES = {
    408: b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    411: b"HTTP/1.1 411 Length Required\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    413: b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    431: b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    400: b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
}


class _Reading:
    """A connection whose request is still arriving."""

    __slots__ = ("conn", "addr", "buf", "deadline", "need", "registered")

    def __init__(self, conn, addr, buf, deadline):
        self.conn, self.addr, self.buf, self.deadline = conn, addr, buf, deadline
        self.need = None          # total bytes (headers + body) once the headers are in
        self.registered = False   # in the poller


def _framing(head: bytes) -> tuple:
    """(content length or None, chunked) from a header block; ValueError when malformed."""
    length, chunked = None, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            value = value.strip()
            if not value.isdigit() or (length is not None and int(value) != length):
                raise ValueError("bad Content-Length")
            length = int(value)
        elif name == b"transfer-encoding" and value.strip().lower() != b"identity":
            chunked = True
    return length, chunked


class GuardedWorker(ThreadWorker):
    limits = Limits()

    def init_process(self):
        self._reading = OrderedDict()             # conn -> _Reading, oldest first
        self._waiting = defaultdict(deque)        # client address -> its connections being read, oldest first
        super().init_process()

    # -- every way into the thread pool passes here ------------------------------------------
    def enqueue_req(self, conn):
        if getattr(conn, "ivr_complete", False) or self.cfg.is_ssl:
            conn.ivr_complete = False
            super().enqueue_req(conn)
            return
        self._start_reading(conn)

    def _start_reading(self, conn):
        conn.sock.setblocking(False)
        buf = bytearray()
        if conn.parser is not None:
            # Keep-alive: bytes of the next request the last one's parser already read ahead.
            buf += conn.parser.unreader.take_buffered()
        addr = conn.client[0] if isinstance(conn.client, tuple) else str(conn.client or "")
        st = _Reading(conn, addr, buf, time.monotonic() + self.limits.header_timeout)
        waiting = self._waiting[addr]
        while len(waiting) >= self.limits.per_client:
            self._drop(self._reading[waiting[0]], "client_limit")
        while len(self._reading) + len(self.keepalived_conns) >= self.limits.max_waiting:
            if self.keepalived_conns:
                self._close_idle(self.keepalived_conns[0], "worker_limit")
            elif self._reading:
                self._drop(next(iter(self._reading.values())), "worker_limit")
            else:
                break
        waiting = self._waiting[addr]               # the loops may have emptied (and removed) it
        waiting.append(conn)
        self._reading[conn] = st
        if not self._advance(st):
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, st))
            st.registered = True

    def _readable(self, st, _sock):
        if st.conn in self._reading:
            self._advance(st)

    def _advance(self, st) -> bool:
        """Read what has arrived; True when the connection has left the reading state."""
        limit = self.limits.max_header + self.limits.max_body
        while len(st.buf) <= limit:
            try:
                chunk = st.conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(st, None)
                return True
            if not chunk:                       # the client went away before finishing its request
                self._drop(st, None)
                return True
            st.buf += chunk
        return self._check(st)

    def _check(self, st) -> bool:
        if st.need is None:
            end = st.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(st.buf) > self.limits.max_header:
                    self._drop(st, "too_large", 431)
                    return True
                return False
            try:
                length, chunked = _framing(bytes(st.buf[:end]))
            except ValueError:
                self._drop(st, "malformed", 400)
                return True
            if chunked:
                self._drop(st, "chunked", 411)
                return True
            if (length or 0) > self.limits.max_body:
                self._drop(st, "too_large", 413)
                return True
            if length and b"100-continue" in st.buf[:end].lower():
                end = self._continue(st, end)
            st.need = end + 4 + (length or 0)
            if length:
                st.deadline = time.monotonic() + self.limits.body_timeout
        if len(st.buf) >= st.need:
            self._dispatch(st)
            return True
        return False

    @staticmethod
    def _continue(st, end) -> int:
        """`Expect: 100-continue` (curl, for bodies over 1 KB): the client waits for the interim answer
        before it sends the body. Send it here, and take the header out so gunicorn does not send a
        second one. Returns the new end of the header block."""
        lines = bytes(st.buf[:end]).split(b"\r\n")
        kept = [ln for ln in lines if not ln.lower().replace(b" ", b"").startswith(b"expect:100-continue")]
        try:
            st.conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        except OSError:
            pass
        head = b"\r\n".join(kept)
        st.buf[:end] = head
        return len(head)

    def _forget(self, st):
        self._reading.pop(st.conn, None)
        waiting = self._waiting.get(st.addr)
        if waiting is not None:
            try:
                waiting.remove(st.conn)
            except ValueError:
                pass
            if not waiting:
                del self._waiting[st.addr]
        if st.registered:
            st.registered = False
            try:
                self.poller.unregister(st.conn.sock)
            except (KeyError, ValueError, OSError):
                pass

    def _dispatch(self, st):
        """The whole request is here: give it to the parser's buffer and a thread."""
        self._forget(st)
        conn = st.conn
        if conn.parser is None:
            conn.init()                         # plain HTTP/1: builds the parser, reads nothing
        conn.parser.unreader.unread(bytes(st.buf))
        conn.data_ready = True
        conn.ivr_complete = True
        self.enqueue_req(conn)

    def _drop(self, st, reason, status=None):
        self._forget(st)
        if status is not None:
            try:
                st.conn.sock.send(_RESPONSES[status])
            except OSError:
                pass
        self.nr_conns -= 1
        st.conn.close()
        if reason and on_close is not None:
            on_close(reason)

    # -- the event loop's periodic sweeps (about once a second) --------------------------------
    def murder_pending(self):
        super().murder_pending()
        now = time.monotonic()
        late = [st for st in self._reading.values() if st.deadline <= now or not self.alive]
        for st in late:
            self._drop(st, "header_timeout" if st.need is None else "body_timeout", 408)

    def murder_keepalived(self, force=False):
        super().murder_keepalived(force)
        # Idle keep-alive connections count against their address's cap too: keep the newest.
        if len(self.keepalived_conns) <= self.limits.per_client:
            return
        seen, extra = defaultdict(int), []
        for conn in reversed(self.keepalived_conns):
            addr = conn.client[0] if isinstance(conn.client, tuple) else str(conn.client or "")
            seen[addr] += 1
            if seen[addr] + len(self._waiting.get(addr, ())) > self.limits.per_client:
                extra.append(conn)
        for conn in extra:
            self._close_idle(conn, "client_limit")

    def _close_idle(self, conn, reason):
        """Close a connection idle between keep-alive requests."""
        self.keepalived_conns.remove(conn)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        self.nr_conns -= 1
        conn.close()
        if on_close is not None:
            on_close(reason)
