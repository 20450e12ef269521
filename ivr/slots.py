"""How many of a kind of long request one server process serves at once, in total and per key.

Every request holds one of the worker's threads (`ivr serve --threads`) while it runs. Webhooks
answer in milliseconds; a media stream holds its thread for the whole call and an open dashboard's
live view for up to an hour. Calls are what the threads are for. Two other kinds must never take
them all, or POST /voice goes unanswered and Twilio plays its error to callers:

- a media socket that has not sent `start` yet: the handshake's signature never changes (Twilio
  signs the URL alone), so a captured one can be replayed at will. Measured before the cap: 64 signed
  sockets that never sent `start` kept /healthz waiting 8-14 s and POST /voice up to 10 s;
- a dashboard's live view (Server-Sent Events): 16 streams opened with one operator's cookie left a
  signed POST /voice unanswered for 15 s, Twilio's webhook timeout.

Each kind gets a share of the threads (`ThreadShares.of`), and per key (the operator's session) a
part of that. A request over its share is refused at once with an HTTP status, before it holds
anything. Media sockets get half the threads and no share per address: every real stream comes from
Twilio's few addresses (or a proxy's), and ten callers at once from one address were refused when
an address had a part of a quarter.
"""
from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass

# An operator's open dashboards (tabs, windows) that get a live view each, per server process.
LIVE_VIEWS_PER_SESSION = 3


class Full(Exception):
    """No slot: `scope` is "key" when the key has its share, "total" when every slot is taken."""

    def __init__(self, scope: str):
        super().__init__(scope)
        self.scope = scope


class Slot:
    """One slot taken; release() gives it back (once, however often it is called)."""

    __slots__ = ("_slots", "key", "held")

    def __init__(self, slots, key):
        self._slots, self.key, self.held = slots, key, True

    def release(self) -> None:
        if self.held:
            self.held = False
            self._slots._give_back(self.key)


class Slots:
    def __init__(self, total: int, per_key: int):
        self.total, self.per_key = max(1, total), max(1, per_key)
        self._lock = threading.Lock()
        self._by_key = defaultdict(int)
        self.taken = 0

    def take(self, key) -> Slot:
        """A slot for `key`, or Full."""
        with self._lock:
            if self._by_key[key] >= self.per_key:
                raise Full("key")
            if self.taken >= self.total:
                raise Full("total")
            self._by_key[key] += 1
            self.taken += 1
        return Slot(self, key)

    def _give_back(self, key) -> None:
        with self._lock:
            self.taken -= 1
            self._by_key[key] -= 1
            if not self._by_key[key]:
                del self._by_key[key]


@dataclass(frozen=True)
class ThreadShares:
    """The shares of one process's threads (each gunicorn worker has its own)."""
    unstarted_streams: Slots     # media sockets waiting for their `start` (keyed by address, no share per key)
    live_views: Slots            # dashboards' event streams, per operator session

    @classmethod
    def of(cls, threads: int) -> ThreadShares:
        quarter, half = max(1, threads // 4), max(1, threads // 2)
        # Twilio opens streams from a few addresses of its own (or, behind a proxy without
        # IVR_TRUSTED_PROXIES, all from the proxy's) and sends `start` within milliseconds, so a burst
        # of calls is many sockets from one address: no share per address, half the threads in all.
        return cls(unstarted_streams=Slots(half, half),
                   live_views=Slots(quarter, LIVE_VIEWS_PER_SESSION))
