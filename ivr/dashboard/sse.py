"""Server-Sent Events for the live view, fed by the Redis event stream.

One generator per open dashboard, each on its own server thread (gunicorn gthread or the
threaded loopback server). It blocks in XREAD for at most a second, so it notices when to
send a heartbeat, when the operator's session ended, when its lifetime is up and when the
browser closed the connection (`peer_gone`: a reload or a closed tab frees its thread within a
second, not at a later write). The browser's EventSource reconnects by itself after the stream
ends. How many streams a process serves at once is capped (ivr/slots.py, views.events).
"""
from __future__ import annotations

import json
import logging
import select
import socket
import time

log = logging.getLogger("ivr.dashboard")

BLOCK_MS = 1000          # XREAD wait; also the granularity of every check below
HEARTBEAT_SECONDS = 15   # comment line that keeps proxies from closing an idle stream
REFRESH_SECONDS = 30     # full snapshot even without events: nothing can stay stale for long
MIN_GAP_SECONDS = 0.25   # at most ~4 snapshots a second however busy the hotline is
MAX_SECONDS = 3600       # then the browser reconnects (and its session is checked afresh)
RETRY_MS = 2000


def message(event: str, data, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def peer_gone(environ):
    """A check, True once the client closed its end of the request's connection. A browser sends nothing
    on an event stream, so its socket turns readable only when it closes (or resets). Without the
    server's socket in the environ the check is always False (the next write finds out)."""
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    if sock is None:
        return lambda: False
    poller = select.poll()
    poller.register(sock, select.POLLIN)

    def gone() -> bool:
        try:
            if not poller.poll(0):
                return False
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True
    return gone


def live_stream(queries, snapshot, logged_in, clock=time.monotonic, sleep=time.sleep,
                max_seconds=MAX_SECONDS, stopping=lambda: False, gone=lambda: False):
    """Yield SSE text: a snapshot now, then one after each batch of call events.

    snapshot(): the live view as a dict; logged_in(): False once the session is gone; stopping():
    True once the server is shutting down (SIGTERM). The stream then ends within a second and the
    browser reconnects, to another server or the restarted one, instead of holding the worker for
    its whole graceful timeout (measured: 30 s per open dashboard before this check). gone(): True once the
    browser closed the connection (peer_gone); the stream then ends within a second.
    """
    last_id = queries.last_event_id()
    yield f"retry: {RETRY_MS}\n\n"
    yield message("live", snapshot(), last_id)
    started = last_beat = last_snap = clock()
    try:
        while clock() - started < max_seconds and not stopping() and not gone():
            events = queries.events_after(last_id, BLOCK_MS)
            now = clock()
            if events:
                last_id = events[-1][0]
                gap = MIN_GAP_SECONDS - (now - last_snap)
                if gap > 0:
                    sleep(gap)
                yield message("live", snapshot(), last_id)
                last_snap = clock()
            elif now - last_snap >= REFRESH_SECONDS:
                yield message("live", snapshot(), last_id)
                last_snap = now
            if now - last_beat >= HEARTBEAT_SECONDS:
                if not logged_in():
                    yield message("logout", {})
                    return
                yield ": heartbeat\n\n"
                last_beat = now
    except GeneratorExit:
        raise
    except Exception as exc:  # noqa: BLE001 - Redis went away: end; the browser retries
        log.warning("live stream ended: %s", type(exc).__name__)
        yield message("unavailable", {"error": type(exc).__name__})
