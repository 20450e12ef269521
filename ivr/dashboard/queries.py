"""Every Redis read the dashboard and /metrics make, in one place.

The key layout is ivr/keys.py's contract; this module is its only reader on the
operator side, so when the layout grows (queues, callbacks, ratings) one file changes.
Reads are tolerant: a field or key that is missing (an older record, a feature not
deployed yet) yields None or an empty list, never an error. Nothing here writes.
"""
from __future__ import annotations

from .. import keys
from ..agents import Agents
from ..calls import num, parse_turn, read_report
from ..queues import NAMES as QUEUES
from ..queues import Queues
from ..redact import mask_digits, mask_phone

# Fields the dashboard reads from a call record; `state` (engine JSON) is never needed.
FIELDS = ("sid", "from", "to", "flow", "lang", "asr", "step", "status", "outcome", "queue", "reason", "boost",
          "boosted_by", "transfers", "started_at", "ended_at", "handoff_at", "enqueued_at", "answered_at",
          "wait_seconds", "dial_status", "answered", "rating", "callback_requested_at", "voicemail_seconds",
          "duration", "queue_result", "queue_choice", "agent_name", "callback_state", "voicemail_state",
          "updated_at")
# ...and for the call backs and voicemails panels (read only for those calls: a snapshot is sent to
# every open dashboard after each batch of events, and its cost grows with every field read per call).
CALLBACK_FIELDS = FIELDS + ("callback_queue", "callback_place", "callback_after_hours", "callback_attempts",
                            "callback_last_result", "callback_by", "voicemail_at", "voicemail_text",
                            "voicemail_stored_at")
WAITING = ("handoff", "queued", "dialing")
MAX_LIVE = 1000          # calls shown per panel; a hotline with more has other problems
TURNS_PEEK = 8           # last turns read per call in the bot, to find what the caller said last
# A call in the bot takes a turn at least every prompt plus no-input timeout: one quiet this long ended
# while its end could not be written (Redis was down when Twilio's status callback came), and is left
# off "in the bot" instead of showing there until the day-long sweep of the active calls.
IN_BOT_QUIET = 900


class Queries:
    def __init__(self, redis):
        self.r = redis

    # -- records -------------------------------------------------------------------------------
    def records(self, sids, fields=FIELDS) -> list:
        """Call records by sid (HMGET of `fields`), skipping calls whose record has expired."""
        sids = list(sids)
        pipe = self.r.pipeline(transaction=False)
        for sid in sids:
            pipe.hmget(keys.call(sid), fields)
        out = []
        for sid, values in zip(sids, pipe.execute()):
            rec = {k: v for k, v in zip(fields, values) if v is not None}
            if rec:
                rec["sid"] = sid
                out.append(rec)
        return out

    def started_between(self, start: float, end: float) -> list:
        return self.records(self.r.zrangebyscore(keys.RECENT, start, end))

    def waits(self, start: float, end: float) -> dict:
        """sid -> wait seconds for callers who reached a person between start and end (ivr:waits)."""
        out = {}
        for member in self.r.zrangebyscore(keys.WAITS, start, end):
            parts = member.split("|")
            if len(parts) >= 2 and num(parts[1]) is not None:
                out[parts[0]] = num(parts[1])
        return out

    def zset_sids(self, key: str, start: float = "-inf", end: float = "+inf") -> set:
        """Members are a sid or "sid|detail" (ivr:abandoned keeps the queue after the bar)."""
        return {m.split("|", 1)[0] for m in self.r.zrangebyscore(key, start, end)}

    def kpi_inputs(self, start: float, end: float) -> dict:
        """What the KPI computation needs for calls started in [start, end].

        Waits, abandonments and callbacks may be recorded after the call started, so those
        sets are read up to `end` plus a day (the longest a call can plausibly last).
        """
        late = end + 86400
        return {"records": self.started_between(start, end), "waits": self.waits(start, late),
                "abandoned": self.zset_sids(keys.ABANDONED, start, late),
                "callbacks": self.zset_sids(keys.CALLBACKS, start, late)}

    # -- live view -----------------------------------------------------------------------------
    def live(self, now: float, service_level_seconds: int, last_said: bool = True) -> dict:
        """Calls in the bot, waiting per queue, with an agent; call backs and voicemails to deal with;
        the agents. Numbers are masked, except the full number of a caller waiting for a call back
        or whose message nobody has handled yet: the operator needs it to ring them."""
        pipe = self.r.pipeline(transaction=False)
        pipe.zrange(keys.ACTIVE, 0, MAX_LIVE - 1)
        Queues.read_members(pipe, MAX_LIVE)
        pipe.zrange(keys.CALLBACKS, 0, MAX_LIVE - 1, withscores=True)
        pipe.zrange(keys.CALLBACKS_FAILED, 0, MAX_LIVE - 1)
        pipe.zrange(keys.VOICEMAILS, 0, MAX_LIVE - 1)
        res = pipe.execute()
        active, queued = res[0], res[1:1 + len(QUEUES)]
        callbacks, failed, voicemails = dict(res[-3]), res[-2], res[-1]
        in_queue = {sid: q for q, members in zip(QUEUES, queued) for sid in members}
        open_items = list(dict.fromkeys(list(callbacks) + failed + voicemails))
        seen = set(open_items)
        sids = [sid for sid in dict.fromkeys(active + list(in_queue)) if sid not in seen]
        recs = {r["sid"]: r for r in self.records(sids)}
        recs.update({r["sid"]: r for r in self.records(open_items, CALLBACK_FIELDS)})
        agents = Agents(self.r).status(now)
        agent_of = {a["caller"]: a["name"] for a in agents["agents"] if a["state"] == "on_call"}

        in_bot, with_agent, waiting = [], [], {q: [] for q in QUEUES}
        for sid in active + [s for s in in_queue if s not in active]:
            rec = recs.get(sid)
            if rec is None:
                continue
            status = rec.get("status") or "in_bot"
            if status == "with_agent":
                row = self._row(rec, now, since=num(rec.get("answered_at")))
                row["agent"] = agent_of.get(sid) or rec.get("agent_name") or None
                with_agent.append(row)
            elif sid in in_queue or status in WAITING:
                q = in_queue.get(sid) or rec.get("queue") or "normal"
                since = num(rec.get("enqueued_at")) or num(rec.get("handoff_at")) or num(rec.get("started_at"))
                row = self._row(rec, now, since=since)
                row["late"] = row["seconds"] >= service_level_seconds
                waiting.setdefault(q, []).append(row)
            elif sid in active and status not in ("callback", "voicemail"):
                last = num(rec.get("updated_at")) or num(rec.get("started_at")) or now
                if now - last <= IN_BOT_QUIET:
                    in_bot.append(self._row(rec, now, since=num(rec.get("started_at"))))
        if last_said:
            self._add_last_said(in_bot)
        for rows in waiting.values():
            rows.sort(key=lambda row: -row["seconds"])
        cb_rows = [self._callback_row(recs[sid], now) for sid in list(callbacks) + failed if sid in recs]
        # The list's order is the order agents take them: urgent first, then by the place kept.
        cb_rows.sort(key=lambda row: (row["state"] == "failed", not row["urgent"], row["place"] or 0))
        vm_rows = [self._voicemail_row(recs[sid], now) for sid in voicemails if sid in recs]
        vm_rows.sort(key=lambda row: -(row["seconds"]))
        for a in agents["agents"]:
            rec = recs.get(a["caller"]) or {}
            a["caller_from"] = mask_phone(rec.get("from", "")) if a["caller"] else None
        return {"now": now, "service_level_seconds": service_level_seconds, "in_bot": in_bot,
                "queues": [{"name": q, "calls": rows} for q, rows in waiting.items()],
                "with_agent": with_agent, "callbacks": cb_rows, "voicemails": vm_rows, "agents": agents}

    def _callback_row(self, rec, now):
        since = num(rec.get("callback_requested_at")) or num(rec.get("started_at"))
        row = self._row(rec, now, since=since)
        queue = rec.get("callback_queue") or rec.get("queue") or "normal"
        row.update(number=rec.get("from") or None, state=rec.get("callback_state") or "waiting",
                   urgent=queue == "urgent", queue=queue, after_hours=rec.get("callback_after_hours") == "1",
                   attempts=int(num(rec.get("callback_attempts")) or 0),
                   last_result=rec.get("callback_last_result") or None, place=num(rec.get("callback_place")),
                   by=rec.get("callback_by") or None)
        return row

    def _voicemail_row(self, rec, now):
        row = self._row(rec, now, since=num(rec.get("voicemail_at")) or num(rec.get("started_at")))
        row.update(number=rec.get("from") or None, length=num(rec.get("voicemail_seconds")),
                   stored=bool(rec.get("voicemail_stored_at")), urgent=(rec.get("queue") or "") == "urgent",
                   text=mask_digits(rec.get("voicemail_text") or "") or None)
        return row

    @staticmethod
    def _row(rec, now, since):
        since = since if since is not None else now
        transfers = int(num(rec.get("transfers")) or 0)
        return {"sid": rec["sid"], "from": mask_phone(rec.get("from", "")), "flow": rec.get("flow"),
                "step": rec.get("step") or None, "status": rec.get("status") or "in_bot",
                "queue": rec.get("queue") or None, "reason": rec.get("reason") or None,
                "boost": rec.get("boost") or None, "transfers": transfers, "bounced": transfers > 1,
                "since": since, "seconds": round(max(0.0, now - since), 1)}

    def _add_last_said(self, rows):
        pipe = self.r.pipeline(transaction=False)
        for row in rows:
            pipe.lrange(keys.turns(row["sid"]), -TURNS_PEEK, -1)
        for row, raw_turns in zip(rows, pipe.execute()):
            row["last_said"], row["confidence"] = None, None
            for raw in reversed(raw_turns):
                turn = parse_turn(raw)
                if turn.get("who") == "caller" and turn.get("text"):
                    row["last_said"] = mask_digits(turn["text"])
                    row["confidence"] = turn.get("confidence")
                    break

    # -- one call ------------------------------------------------------------------------------
    def call(self, sid: str) -> dict | None:
        """Record (without engine state) and transcript of one call, unmasked: callers mask."""
        return read_report(self.r, sid)

    def last_event_id(self) -> str:
        """Where a new live stream starts reading, taken before its first snapshot so no event
        between the snapshot and the first XREAD is lost."""
        last = self.r.xrevrange(keys.EVENTS, count=1)
        return last[0][0] if last else "0-0"

    def events_after(self, last_id: str, block_ms: int, count: int = 500) -> list:
        res = self.r.xread({keys.EVENTS: last_id}, count=count, block=block_ms)
        return res[0][1] if res else []

    def queue_sizes(self) -> dict:
        pipe = self.r.pipeline(transaction=False)
        Queues.read_sizes(pipe)
        return dict(zip(QUEUES, pipe.execute()))


