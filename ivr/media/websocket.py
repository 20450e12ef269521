"""The media WebSocket, read on the request's own thread.

flask-sock's simple-websocket server starts a reader thread per connection
that parses frames and wakes the request thread through an Event for every
message. A Media Stream brings 50 messages a second per call, so each call
paid two threads and a GIL hand-off per 20 ms frame; with py-spy's --gil
view at 60 calls, the reader threads and their Condition/Event traffic were
the largest Python cost after Vosk. Here the request thread polls the
socket and parses what arrived itself: the same simple-websocket Server
(handshake, wsproto parsing, message assembly, size limit, close handling),
minus the thread. Sends still come from any thread (the prompt player).
"""
from __future__ import annotations

import select
import time

from flask import Response
from simple_websocket import ConnectionClosed, Server
from wsproto.connection import ConnectionState
from wsproto.utilities import LocalProtocolError

__all__ = ["ConnectionClosed", "InlineServer", "websocket_response"]


class _NoReader:
    """Stands in for simple-websocket's reader thread: InlineServer.receive does its work."""

    def __init__(self, target=None, **_):
        self.name = "inline"

    def start(self):
        pass


class InlineServer(Server):
    def __init__(self, environ, max_message_size=None, receive_bytes=4096):
        super().__init__(environ, max_message_size=max_message_size, receive_bytes=receive_bytes,
                         thread_class=_NoReader)
        self._poll = select.poll()
        self._poll.register(self.sock, select.POLLIN)

    def receive(self, timeout=None):
        """The next message; None when none came within `timeout` seconds; ConnectionClosed at the end."""
        while self.connected and not self.input_buffer:
            if not self._poll.poll(None if timeout is None else timeout * 1000):
                return None
            try:
                data = self.sock.recv(self.receive_bytes)
                if not data:
                    raise OSError("peer closed the connection")
                self.ws.receive_data(data)
                self.connected = self._handle_events()
            except (OSError, LocalProtocolError):
                self.connected = False
        if self.input_buffer:
            return self.input_buffer.pop(0)
        raise ConnectionClosed(self.close_reason, self.close_message)

    def finish(self, linger: float = 1.0, reason: int | None = None):
        """Close the WebSocket (with close code `reason`, default 1000) and then the socket.

        When we close first, wait up to `linger` seconds for the peer's close frame, reading
        and discarding whatever it still sends, so it sees a clean close and not a reset."""
        if self.connected:
            try:
                self.close(reason=reason)
                deadline = time.monotonic() + linger
                while self.ws.state != ConnectionState.CLOSED:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._poll.poll(left * 1000):
                        break
                    data = self.sock.recv(self.receive_bytes)
                    if not data:
                        break
                    self.ws.receive_data(data)
                    for _ in self.ws.events():
                        pass
            except (OSError, LocalProtocolError):
                pass
        try:
            self.sock.close()
        except OSError:
            pass


def websocket_response(ws: InlineServer) -> Response:
    """What the view returns once the socket is done: nothing more may be written to it.

    (As flask-sock does: gunicorn is told the response is over by StopIteration, Werkzeug's
    development server gets an empty response it will not send on a closed socket.)"""

    class _Done(Response):
        def __call__(self, *args, **kwargs):
            if ws.mode == "gunicorn":
                raise StopIteration()
            if ws.mode == "werkzeug":
                return super().__call__(*args, **kwargs)
            return []

    return _Done()
