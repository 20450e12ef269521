"""KPI figures from call records: pure functions, so the numbers can be checked exactly.

Definitions (docs/dashboard.md repeats them for operators):
- a call belongs to the period in which it started;
- contained: the call ended with outcome "answered" (the bot answered, no handoff);
  containment = contained / calls that have ended;
- handed off: at least one transfer to a person;
- reached a person: an agent picked up (answered_at, a wait in ivr:waits, or a completed dial);
- abandoned: handed off, never reached a person, and hung up while waiting (ivr:abandoned,
  or an ended call with no agent, voicemail or callback result);
- overflowed: handed off, never reached a person, sent to voicemail or a callback;
- offered = reached a person + abandoned + overflowed (handoffs whose wait is over);
- service level = reached a person within the threshold / offered;
- abandonment = abandoned / offered;
- wait to a human: seconds from handoff (or entering the queue) to an agent answering, for
  callers who reached a person; p90 is the nearest-rank 90th percentile.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from ..calls import num
from ..stats import percentile
from .queries import WAITING

OVERFLOW_STATUSES = ("voicemail", "callback", "agents_busy")
NOT_ANSWERED_DIAL = ("busy", "no-answer", "failed", "canceled")


@dataclass(frozen=True)
class Facts:
    """What the KPIs need to know about one call, whichever fields recorded it."""
    sid: str
    started_at: float
    ended: bool
    outcome: str | None
    reason: str | None
    transfers: int
    handed_off: bool
    reached_person: bool
    wait: float | None
    abandoned: bool
    overflowed: bool
    callback: bool


def facts(rec: dict, waits: dict, abandoned: set, callbacks: set) -> Facts:
    sid = rec["sid"]
    status = rec.get("status") or ""
    transfers = int(num(rec.get("transfers")) or 0)
    handed_off = transfers > 0 or bool(rec.get("handoff_at"))
    answered_at = num(rec.get("answered_at"))
    reached = handed_off and (answered_at is not None or sid in waits
                              or rec.get("dial_status") in ("completed", "answered")
                              or status in ("with_agent", "agent_done"))
    wait = None
    if reached:
        wait = num(rec.get("wait_seconds"))
        if wait is None:
            wait = waits.get(sid)
        if wait is None and answered_at is not None:
            start = num(rec.get("enqueued_at")) or num(rec.get("handoff_at"))
            wait = max(0.0, answered_at - start) if start is not None else None
    ended = bool(rec.get("outcome") or rec.get("ended_at"))
    callback = (sid in callbacks or status == "callback" or bool(rec.get("callback_requested_at"))
                or bool(rec.get("callback_at")))
    abandoned, overflowed = _how_the_wait_ended(rec, handed_off and not reached, sid in abandoned, callback,
                                                 ended)
    return Facts(sid=sid, started_at=num(rec.get("started_at")) or 0.0, ended=ended,
                 outcome=rec.get("outcome") or None, reason=rec.get("reason") or None, transfers=transfers,
                 handed_off=handed_off, reached_person=reached, wait=wait, abandoned=abandoned,
                 overflowed=overflowed, callback=callback)


def _how_the_wait_ended(rec, unanswered, listed_abandoned, callback, ended):
    """(abandoned, overflowed) for a handoff nobody answered. /voice/status overwrites
    `status` with "ended", so the call's other traces decide, most explicit first."""
    if not unanswered:
        return False, False
    status = rec.get("status") or ""
    if listed_abandoned or status == "abandoned" or rec.get("queue_result") == "hangup":
        return True, False
    if callback or status in OVERFLOW_STATUSES or rec.get("voicemail_seconds") or \
            rec.get("queue_choice") in ("callback", "voicemail"):
        return False, True
    if status in WAITING:
        return False, False  # still waiting (a busy line can overflow into a queue)
    if rec.get("dial_status") in NOT_ANSWERED_DIAL:
        return False, True
    return ended, False


def _share(part, whole):
    return round(part / whole, 4) if whole else None


def summarize(items, service_level_seconds: float) -> dict:
    items = list(items)
    calls = len(items)
    ended = sum(1 for f in items if f.ended)
    contained = sum(1 for f in items if f.outcome == "answered")
    handoffs = [f for f in items if f.handed_off]
    reached = [f for f in handoffs if f.reached_person]
    waits = [f.wait for f in reached if f.wait is not None]
    abandoned = sum(1 for f in handoffs if f.abandoned)
    overflowed = sum(1 for f in handoffs if f.overflowed)
    offered = len(reached) + abandoned + overflowed
    within = sum(1 for w in waits if w <= service_level_seconds)
    return {
        "calls": calls,
        "ended": ended,
        "contained": contained,
        "containment": _share(contained, ended),
        "handoffs": len(handoffs),
        "handoffs_by_reason": dict(Counter(f.reason or "unknown" for f in handoffs).most_common()),
        "reached_person": len(reached),
        "avg_wait": round(sum(waits) / len(waits), 1) if waits else None,
        "p90_wait": round(percentile(waits, 90), 1) if waits else None,
        "abandoned": abandoned,
        "abandonment": _share(abandoned, offered),
        "overflowed": overflowed,
        "offered": offered,
        "service_level": _share(within, offered),
        "service_level_seconds": service_level_seconds,
        "transfers": sum(f.transfers for f in items),
        "transfers_per_call": round(sum(f.transfers for f in items) / calls, 2) if calls else None,
        "callbacks": sum(1 for f in items if f.callback),
    }


def day_start(ts: float, tz=None) -> float:
    """Midnight that starts the day of `ts`, in tz (None: the server's local time, DST-aware)."""
    moment = datetime.fromtimestamp(ts, tz) if tz else datetime.fromtimestamp(ts)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def day_starts(now: float, days: int, tz=None) -> list:
    """The midnights of the last `days` days, oldest first, today last."""
    starts = [day_start(now, tz)]
    while len(starts) < days:
        # Noon of the day before, then back to its midnight: right across DST changes.
        starts.insert(0, day_start(starts[0] - 12 * 3600, tz))
    return starts


def label(ts: float, tz=None) -> str:
    moment = datetime.fromtimestamp(ts, tz) if tz else datetime.fromtimestamp(ts)
    return moment.strftime("%a %d %b")


def report(inputs: dict, now: float, service_level_seconds: float, tz=None, days: int = 7) -> dict:
    """Today, the last `days` days (today and the days before it), and one row per day for charts."""
    all_facts = [facts(r, inputs["waits"], inputs["abandoned"], inputs["callbacks"]) for r in inputs["records"]]
    starts = day_starts(now, days, tz)
    ends = starts[1:] + [now + 1]
    window = [f for f in all_facts if starts[0] <= f.started_at < ends[-1]]
    per_day = []
    for start, end in zip(starts, ends):
        day = summarize([f for f in window if start <= f.started_at < end], service_level_seconds)
        day.update(day=label(start, tz), start=start)
        per_day.append(day)
    return {"now": now, "today": per_day[-1], "last7": summarize(window, service_level_seconds),
            "days": per_day, "period_start": starts[0], "today_start": starts[-1]}


def tzinfo(name: str):
    """The configured zone, or None for the server's local time."""
    if not name:
        return None
    from zoneinfo import ZoneInfo
    return ZoneInfo(name)

