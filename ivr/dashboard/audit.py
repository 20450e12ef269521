"""Operator actions that reveal personal data, recorded with who and when.

Showing a caller's full number on a call back is part of the job; taking many numbers away in
a CSV is a choice an operator makes explicitly, and that choice is kept: one entry per export in
the capped stream `keys.AUDIT` (kept 400 days), and a warning in the log.
"""
from __future__ import annotations

from .. import keys


def record(redis, operator: str, action: str, now: float, **detail) -> None:
    fields = {"operator": operator, "action": action, "ts": round(now, 3)}
    fields.update({k: str(v) for k, v in detail.items()})
    pipe = redis.pipeline()
    pipe.xadd(keys.AUDIT, fields, maxlen=keys.AUDIT_MAXLEN, approximate=True)
    pipe.expire(keys.AUDIT, keys.LONG_TTL)
    pipe.execute()


def recent(redis, count: int = 50) -> list:
    """The latest entries, newest first: [{"operator", "action", "ts", ...}]."""
    return [fields for _, fields in redis.xrevrange(keys.AUDIT, count=count)]
