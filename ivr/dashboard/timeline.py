"""One call as operators read it: a masked timeline merged from the transcript and the record.

The transcript has the bot turns, what was recognized and what the engine decided; the
record has the moments between turns (queue, agent answered, voicemail, end). Everything
shown is masked here, so a template cannot forget to.
"""
from __future__ import annotations

from ..calls import num
from ..redact import mask_digits, mask_phone


def _words(code) -> str:
    return (code or "unknown").replace("_", " ")


def _entry(ts, kind, title, text="", detail=""):
    return {"ts": ts, "kind": kind, "title": title, "text": mask_digits(text or ""), "detail": detail}


def _caller_turn(t):
    how = {"dtmf": "pressed", "speech": "said", "silence": "said nothing"}.get(t.get("input"), "input")
    text = t.get("text") or ""
    details = []
    if t.get("confidence") is not None:
        details.append(f"recognition confidence {float(t['confidence']):.2f}")
    if t.get("intent"):
        conf = t.get("intent_confidence")
        details.append(f"intent {t['intent']}" + (f" ({float(conf):.2f})" if conf is not None else ""))
    if t.get("decision"):
        details.append(f"decision: {t['decision']}" + (f" - {t['detail']}" if t.get("detail") else ""))
    return _entry(num(t.get("ts")), "caller", f"Caller {how}", text, "; ".join(details))


_RESULTS = {"answered": "answered", "busy": "line busy", "no-answer": "no answer", "failed": "could not be placed"}


def _action(t):
    """An operator's action or a call back's progress, recorded in the transcript with who did it."""
    who, action, n = t.get("operator") or "", t.get("action"), t.get("attempt")
    ts = num(t.get("ts"))
    if action == "callback_attempt":
        via = "from the agent line" if t.get("via") == "agent line" else "from the dashboard"
        return _entry(ts, "operator", f"{who}: call back, attempt {n}", f"placed {via}")
    if action == "callback_result":
        result = _RESULTS.get(t.get("result"), _words(t.get("result")))
        return _entry(ts, "callback", f"Call back attempt {n}: {result}")
    if action == "callback_reached":
        return _entry(ts, "callback", "Call back reached a person", who)
    if action == "callback_no_person":
        return _entry(ts, "callback", "Call back answered, but nobody was free", "back on the call back list")
    if action == "callback_done":
        return _entry(ts, "operator", f"{who}: marked the call back done")
    if action == "voicemail_handled":
        return _entry(ts, "operator", f"{who}: marked the voicemail handled")
    return _entry(ts, "operator", f"{who}: {_words(action)}")


def build(report: dict) -> list:
    rec, turns = report["record"], report["turns"]
    out = []
    if num(rec.get("started_at")) is not None:
        extra = f"priority: {rec['boost'].replace('_', ' ')}" if rec.get("boost") else ""
        out.append(_entry(num(rec["started_at"]), "event", "Call started",
                          f"{rec.get('flow', '')} line, language {rec.get('lang', '?')}", extra))
    transfers_seen = 0
    for t in turns:
        if t.get("who") == "caller":
            out.append(_caller_turn(t))
        elif t.get("who") in ("operator", "system"):
            out.append(_action(t))
        else:
            out.append(_entry(num(t.get("ts")), "bot", "Bot" + (f" at {t['step']}" if t.get("step") else ""),
                              t.get("text", "")))
            route = t.get("route")
            if route:
                transfers_seen += 1
                out.append(_entry(num(t.get("ts")), "transfer", "Transferred to a person",
                                  f"queue {route.get('queue', '?')}, reason {_words(route.get('reason'))}",
                                  f"boosted by {route['boosted_by']}" if route.get("boosted_by") else ""))
    if rec.get("handoff_at") and not transfers_seen:
        out.append(_entry(num(rec["handoff_at"]), "transfer", "Transferred to a person",
                          f"queue {rec.get('queue', '?')}, reason {_words(rec.get('reason'))}"))
    if rec.get("enqueued_at"):
        out.append(_entry(num(rec["enqueued_at"]), "wait", "Waiting in queue", rec.get("queue", "")))
    if rec.get("answered_at"):
        wait = num(rec.get("wait_seconds"))
        out.append(_entry(num(rec["answered_at"]), "wait", "Agent answered",
                          f"after waiting {wait:.0f} s" if wait is not None else ""))
    elif rec.get("dial_status") and rec.get("dial_status") not in ("completed", "answered"):
        wait = num(rec.get("wait_seconds"))
        out.append(_entry(None, "wait", f"Human line: {rec['dial_status']}",
                          f"after {wait:.0f} s" if wait is not None else ""))
    if rec.get("after_hours") and rec.get("handoff_at"):
        out.append(_entry(num(rec["handoff_at"]), "event", "Out of hours: offered a call back or a message"))
    if rec.get("voicemail_seconds"):
        out.append(_entry(num(rec.get("voicemail_at")), "event", "Voicemail left", f"{rec['voicemail_seconds']} s"))
    if rec.get("callback_requested_at"):
        urgent = (rec.get("callback_queue") or rec.get("queue")) == "urgent"
        out.append(_entry(num(rec["callback_requested_at"]), "event", "Callback requested",
                          ("urgent; " if urgent else "") + ("out of hours" if rec.get("callback_after_hours")
                                                            else "keeps the caller's place in the queue")))
    if rec.get("ended_at"):
        out.append(_entry(num(rec["ended_at"]), "event", "Call ended", f"outcome: {rec.get('outcome', '?')}"))
    # Entries without a time of their own sort right after the entry before them.
    last = 0.0
    for e in out:
        e["ts_sort"] = last = e["ts"] if e["ts"] is not None else last
    return sorted(out, key=lambda e: e["ts_sort"])


def header(rec: dict) -> dict:
    """The call's facts for the page header, masked."""
    rating = rec.get("rating")
    return {"sid": rec.get("sid"), "from": mask_phone(rec.get("from", "")), "flow": rec.get("flow"),
            "agent": rec.get("agent_name") or None,
            "lang": rec.get("lang"), "status": rec.get("status"), "outcome": rec.get("outcome"),
            "queue": rec.get("queue"), "reason": rec.get("reason"), "boost": rec.get("boost"),
            "transfers": int(num(rec.get("transfers")) or 0), "wait_seconds": num(rec.get("wait_seconds")),
            "started_at": num(rec.get("started_at")), "ended_at": num(rec.get("ended_at")),
            "rating": rating if rating not in (None, "") else None}
