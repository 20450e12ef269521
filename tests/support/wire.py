"""Twilio's end of a media-stream socket, as a list: what the bot sent, in order, for unit tests
of the player and the stream session (which take any callable as their `send`)."""
from __future__ import annotations

import base64
import json
import threading
import time


class Wire:
    def __init__(self, clock=None):
        self.sent = []                   # (clock() when sent or None, message as a dict)
        self.clock = clock
        self.changed = threading.Condition()

    def __call__(self, text: str) -> None:
        with self.changed:
            self.sent.append((self.clock() if self.clock else None, json.loads(text)))
            self.changed.notify_all()

    def events(self) -> list:
        return [m["event"] for _, m in self.sent]

    def marks(self) -> list:
        return [m["mark"]["name"] for _, m in self.sent if m["event"] == "mark"]

    def payloads(self, since: int = 0) -> list:
        """The audio of every media message from the `since`-th message on."""
        return [base64.b64decode(m["media"]["payload"]) for _, m in self.sent[since:] if m["event"] == "media"]

    def wait(self, test, timeout: float = 5) -> None:
        """Until test(wire) holds (the player sends from its own thread)."""
        with self.changed:
            assert self.changed.wait_for(lambda: test(self), timeout), self.events()


def read_until_closed(ws, seconds=10):
    """Read a real media socket (websocket-client) until the server closes it: (close code, the events
    the server sent before); code -1 when the socket just ended. No close within `seconds` fails."""
    import websocket
    events, deadline = [], time.monotonic() + seconds
    ws.settimeout(1)
    while time.monotonic() < deadline:
        try:
            op, frame = ws.recv_data_frame(control_frame=True)
        except websocket.WebSocketTimeoutException:
            continue
        except (websocket.WebSocketException, OSError):
            return -1, events
        if op == websocket.ABNF.OPCODE_CLOSE:
            return (int.from_bytes(frame.data[:2], "big") if len(frame.data) >= 2 else 0), events
        if op == websocket.ABNF.OPCODE_TEXT:
            events.append(json.loads(frame.data)["event"])
    raise AssertionError("the server did not close the stream")
