"""CSV export of calls: masked numbers (callers waiting for a call back unmasked only on an operator's
recorded choice), and no cell a spreadsheet would run as a formula."""
from __future__ import annotations

import csv
import io
from datetime import datetime

from ..calls import num
from ..redact import mask_phone

COLUMNS = ("sid", "started_at", "ended_at", "from", "flow", "lang", "status", "outcome", "queue", "reason",
           "boost", "transfers", "wait_seconds", "rating", "callback")


def day_choices(retention_days: int) -> list:
    """The periods the dashboard offers for export: the usual ones that retention keeps, and the
    whole retention period (IVR_RETENTION_DAYS). Older records are gone: offering them would promise
    what the export cannot give."""
    return sorted({d for d in (1, 7, 30) if d < retention_days} | {retention_days})


def clamp_days(raw: str | None, retention_days: int) -> int:
    """?days= of an export request: a positive whole number, at most the retention period."""
    default = min(7, retention_days)
    days = int(raw) if raw and raw.isascii() and raw.isdigit() and int(raw) > 0 else default
    return min(days, retention_days)


def _iso(raw, tz):
    ts = num(raw)
    if ts is None:
        return ""
    moment = datetime.fromtimestamp(ts, tz) if tz else datetime.fromtimestamp(ts).astimezone()
    return moment.isoformat(timespec="seconds")


def _cell(value) -> str:
    text = "" if value is None else str(value)
    # A masked number (+1555***4567) is safe; any other cell starting like a formula is defused.
    if text[:1] in ("=", "@", "\t", "\r") or (text[:1] in ("+", "-") and not text[1:2].isdigit()):
        return "'" + text
    return text


def rows(records, tz=None, unmask=()):
    """CSV rows; numbers masked except for the calls in `unmask` (an operator's recorded choice)."""
    for rec in sorted(records, key=lambda r: num(r.get("started_at")) or 0):
        number = rec.get("from", "") if rec.get("sid") in unmask else mask_phone(rec.get("from", ""))
        values = dict(rec, **{"from": number, "callback": rec.get("callback_state") or "",
                              "started_at": _iso(rec.get("started_at"), tz),
                              "ended_at": _iso(rec.get("ended_at"), tz)})
        yield [_cell(values.get(c)) for c in COLUMNS]


def to_csv(records, tz=None, unmask=()) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows(records, tz, unmask))
    return buf.getvalue()
