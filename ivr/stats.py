"""Rolling wait statistics, shared by every process through Redis.

One sorted-set member per caller who reached a person, scored by the time
they were answered, so any time window is one range read and old entries
trim cheaply. Abandoned callers are counted the same way.
"""
from __future__ import annotations

import math

from . import keys

HOUR, DAY = 3600, 86400


def answered_ops(sid, wait_seconds, queue, answered_at, retention):
    member = f"{sid}|{round(float(wait_seconds), 3)}|{queue}"
    return [["ZADD", keys.WAITS, answered_at, member],
            ["ZREMRANGEBYSCORE", keys.WAITS, "-inf", answered_at - retention],
            ["EXPIRE", keys.WAITS, retention]]


def abandoned_ops(sid, queue, at, retention):
    return [["ZADD", keys.ABANDONED, at, f"{sid}|{queue}"],
            ["ZREMRANGEBYSCORE", keys.ABANDONED, "-inf", at - retention],
            ["EXPIRE", keys.ABANDONED, retention]]


def percentile(values, p):
    """Nearest-rank percentile: an actual observed wait, never an interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def wait_stats(redis, now, window, queue=None) -> dict:
    pipe = redis.pipeline(transaction=False)
    read_wait_stats(pipe, now, window)
    return parse_wait_stats(pipe.execute(), queue)


def read_wait_stats(pipe, now, window) -> None:
    """Queue on `pipe` the two reads wait statistics need (to share a round trip with others)."""
    pipe.zrangebyscore(keys.WAITS, now - window, "+inf")
    pipe.zrangebyscore(keys.ABANDONED, now - window, "+inf")


def answered_waits(results, queue=None) -> list:
    """The waits (seconds) of the callers answered in the window `results` was read for."""
    waits = []
    for member in results[0]:
        _sid, wait, q = member.split("|")
        if queue is None or q == queue:
            waits.append(float(wait))
    return waits


def parse_wait_stats(results, queue=None) -> dict:
    waits = answered_waits(results, queue)
    lost = [m for m in results[1] if queue is None or m.endswith("|" + queue)]
    return {"answered": len(waits), "abandoned": len(lost),
            "avg_wait": round(sum(waits) / len(waits), 1) if waits else None,
            "p90_wait": percentile(waits, 90)}
