"""A Redis client that counts its round trips, for benchmarks and the tests that bound them."""
from __future__ import annotations

import threading

import redis
from redis.client import Pipeline


class CountingPipeline(Pipeline):
    def execute(self, raise_on_error=True):
        if self.command_stack:
            self._counter.add()
        return super().execute(raise_on_error)


class Counter:
    def __init__(self):
        self.n = 0
        self._lock = threading.Lock()

    def add(self):
        with self._lock:
            self.n += 1

    def take(self) -> int:
        with self._lock:
            n, self.n = self.n, 0
        return n


class CountingRedis(redis.Redis):
    """Every command sent on its own is one round trip; a pipeline is one."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.round_trips = Counter()

    def execute_command(self, *args, **options):
        self.round_trips.add()
        return super().execute_command(*args, **options)

    def pipeline(self, transaction=True, shard_hint=None):
        pipe = CountingPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe._counter = self.round_trips
        return pipe
