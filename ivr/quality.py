"""Caller ratings and the questions the bot could not answer.

Both are aggregated in Redis as they happen, inside the same atomic script as
the turn or result that produced them, so a retried webhook never counts twice.
A support manager reads the unanswered log to decide which intent or example
to add next, then re-runs `ivr eval`.
"""
from __future__ import annotations

import time
from datetime import datetime

from . import keys
from .flows.intents import normalize
from .flows.model import NOT_TOPICS

AGGREGATE_TTL = 400 * 86400  # a year of daily figures, plus a margin for year-on-year


def day(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d")


def unanswered_ops(text, flow, lang, now, retention):
    """Count one caller utterance the bot did not understand, deduplicated by its normal form."""
    norm = normalize(text)
    if not norm:
        return []
    key = keys.unanswered(flow, lang)
    return [["ZINCRBY", key, 1, norm], ["EXPIRE", key, max(retention, 30 * 86400)],
            ["HSET", keys.unanswered_last(flow, lang), norm, now],
            ["EXPIRE", keys.unanswered_last(flow, lang), max(retention, 30 * 86400)]]


def rating_ops(rating, intent, now):
    key = keys.ratings(day(now))
    ops = []
    for name in ("all", intent or "none"):
        ops += [["HINCRBY", key, f"{name}:sum", rating], ["HINCRBY", key, f"{name}:count", 1]]
    return ops + [["EXPIRE", key, AGGREGATE_TTL]]


def call_topic(turns):
    """What the call was about: the last intent that is not a request for a person or a yes/no."""
    for t in reversed(turns):
        if t.get("who") == "caller" and t.get("intent") is not None and t["intent"] not in NOT_TOPICS:
            return t["intent"]
    return None


def top_unanswered(redis, flow, lang, top=20):
    key = keys.unanswered(flow, lang)
    rows = redis.zrevrange(key, 0, top - 1, withscores=True)
    last = redis.hmget(keys.unanswered_last(flow, lang), [text for text, _ in rows]) if rows else []
    return [{"text": text, "count": int(count), "last_seen": float(ts) if ts else None}
            for (text, count), ts in zip(rows, last)]


def ratings_by_day(redis, days=7, now=None):
    """{day: {intent: {"count", "average"}}} for the last `days` days, today included."""
    now = now or time.time()
    out = {}
    for i in range(days):
        d = day(now - i * 86400)
        raw = redis.hgetall(keys.ratings(d))
        per = {}
        for field, value in raw.items():
            name, kind = field.rsplit(":", 1)
            per.setdefault(name, {})[kind] = int(value)
        out[d] = {name: {"count": v.get("count", 0),
                         "average": round(v.get("sum", 0) / v["count"], 2) if v.get("count") else None}
                  for name, v in per.items()}
    return out
