"""Opening hours of a flow: when a person can take a call, in the flow's own time zone.

A flow declares (docs/flows.md, "Opening hours"):

    hours:
      timezone: America/New_York
      open:                      # weekdays not listed are closed
        mon: ["08:00-22:00"]
        sat: ["09:00-12:30", "13:30-17:00"]
      holidays: [2026-12-25]     # closed all day
      guidance:                  # what an urgent caller hears out of hours, by handoff reason
        safety_hazard: guidance_safety

Outside them the caller hears so at the start, the bot still answers what it can, and a
request for a person becomes an offer of a call back or a message instead of a queue nobody
serves (ivr.flows.engine, ivr.web.callback). A flow without `hours` is always open. Parsing is
pure so `ivr check-flows` reports every problem with its file and line (ivr.flows.loader).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


@dataclass(frozen=True)
class OpeningHours:
    timezone: str
    week: dict = field(default_factory=dict)      # weekday index (Monday 0) -> ((start, end) minutes, ...)
    holidays: frozenset = frozenset()              # datetime.date
    guidance: dict = field(default_factory=dict)   # handoff reason -> message name

    def is_open(self, ts: float) -> bool:
        local = datetime.fromtimestamp(ts, ZoneInfo(self.timezone))
        if local.date() in self.holidays:
            return False
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.week.get(local.weekday(), ()))


def _minutes(hh, mm, end=False):
    h, m = int(hh), int(mm)
    if m > 59 or h > 24 or (h == 24 and (m or not end)):
        return None
    return h * 60 + m


def parse(spec: dict) -> tuple:
    """(OpeningHours or None, [(path, message), ...]) from a flow's `hours` (schema-checked already)."""
    problems = []
    tz = spec.get("timezone", "")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):    # OSError: a folder such as "America"
        problems.append((("timezone",), f"hours: unknown time zone {tz!r} (an IANA name such as Europe/Berlin)"))
    week = {}
    for day, spans in (spec.get("open") or {}).items():
        parsed = []
        for i, span in enumerate(spans or []):
            m = _SPAN.match(str(span))
            start = _minutes(m.group(1), m.group(2)) if m else None
            end = _minutes(m.group(3), m.group(4), end=True) if m else None
            if start is None or end is None:
                problems.append((("open", day, i), f"hours: {day} {span!r} is not a time span like 09:00-17:30"))
            elif start >= end:
                problems.append((("open", day, i), f"hours: {day} {span!r} ends before it starts (a span past "
                                 "midnight is two spans: 22:00-24:00 and 00:00-06:00 the next day)"))
            else:
                parsed.append((start, end))
        parsed.sort()
        for (_, e1), (s2, _) in zip(parsed, parsed[1:]):
            if s2 < e1:
                problems.append((("open", day), f"hours: {day} has overlapping spans"))
                break
        week[WEEKDAYS.index(day)] = tuple(parsed)
    holidays = set()
    for i, raw in enumerate(spec.get("holidays") or []):
        if isinstance(raw, date):          # YAML reads an unquoted 2026-12-25 as a date already
            holidays.add(raw)
            continue
        try:
            holidays.add(date.fromisoformat(str(raw)))
        except ValueError:
            problems.append((("holidays", i), f"hours: holiday {raw!r} is not a date (YYYY-MM-DD)"))
    if problems:
        return None, problems
    return OpeningHours(tz, week, frozenset(holidays), dict(spec.get("guidance") or {})), []
