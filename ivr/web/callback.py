"""Call backs and the out-of-hours offer: Twilio's side of ivr.callbacks.

- POST /voice/closed: out of hours, the caller who asked for a person pressed 1 (call back),
  2 (leave a message) or nothing (asked once more, then a call back);
- POST /voice/callback/answer: the caller we rang back picked up: tell them, then bridge them to
  the agent who asked for them (waiting in the call back's own Twilio queue) or the human line;
- POST /voice/callback/whisper, /connected: a person picked up (human line / agent): done;
- POST /voice/callback/dialed: the caller's bridge ended (or never started: back on the list);
- POST /voice/callback/status: Twilio's status callback for the outbound call, the attempt's
  result (answered, busy, no-answer, failed);
- POST /voice/callback/agent-wait: the waitUrl of the agent holding for that caller: lets them
  go when the attempt failed.

Every route is signed. Twilio posts the *outbound* call's CallSid; the caller's original call
(whose record holds the call back) travels in the `sid` query parameter, which we wrote into
the URL and Twilio signed with it.
"""
from __future__ import annotations

import logging
from typing import NamedTuple

from flask import Blueprint, abort, request

from .. import callbacks, metrics
from ..signature import twilio_signed
from ..summary import agent_summary
from .common import call_sid, fail_safe, fail_safe_goodbye, services, twiml, whole_seconds

log = logging.getLogger("ivr.callback")
bp = Blueprint("callback", __name__, url_prefix="/voice")

ANSWERED = ("in-progress", "answered", "completed")
AGENT_WAIT_LIMIT = 120   # seconds an agent holds for a caller being rung back, whatever Twilio reports


class Offer(NamedTuple):
    text: str
    no_number: str
    can_call_back: bool


def closed_offer(flow, lang, caller) -> Offer:
    """What a caller asking for a person out of hours is offered (TwimlRenderer.closed_offer)."""
    return Offer(flow.message("closed_offer", lang), flow.message("callback_no_number", lang),
                 callbacks.reachable(caller))


def _attempt() -> int:
    raw = request.args.get("attempt", "")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 3:
        abort(400, description="attempt must be a small integer")
    return int(raw)


def _callback_sid() -> str:
    return call_sid(request.args.get("sid", ""), "sid")


def request_callback(svc, sid, record, *, after_hours, marker, extra=None):
    """Put the caller on the call back list (place: when they joined the queue, or now)."""
    now = svc.store.now()
    place = float(record.get("enqueued_at") or record.get("handoff_at") or now)
    fields, ops = callbacks.request(sid, place=place, queue=record.get("queue") or "normal", now=now,
                                    ttl=svc.config.retention_seconds, after_hours=after_hours)
    fields.update(extra or {}, status="callback")
    ops += svc.queues.leave_ops(sid)
    applied = svc.store.record_once(sid, marker, fields, "callback_requested", ops=ops)
    if applied == 1:
        metrics.CALLBACKS.inc()
    return applied


@bp.post("/closed")
@twilio_signed
@fail_safe
def closed():
    """Out of hours, after the offer: 1 a call back, 2 a message; silence is asked once more."""
    svc = services()
    sid = call_sid()
    record, _ = svc.store.load(sid)
    flow, lang = svc.flow_for_record(record)
    locale = flow.say_locale(lang)
    digit = request.form.get("Digits", "")[:1]
    silent = request.args.get("silent", "")
    turn = request.args.get("turn", "")[:8]
    offer = closed_offer(flow, lang, record.get("from"))
    if digit == "2" or not offer.can_call_back:
        svc.store.record_once(sid, "closed_choice", {"queue_choice": "voicemail", "status": "voicemail"},
                              "closed_choice")
        return twiml(svc.twiml.voicemail([flow.message("closed_voicemail", lang)], sid=sid, locale=locale))
    if digit == "1" or silent == "2":
        # Pressed 1, or stayed silent twice: they asked for a person, so they get a call back.
        request_callback(svc, sid, record, after_hours=True, marker="closed_choice",
                         extra={"queue_choice": "callback"})
        return twiml(svc.twiml.say_then_hangup([flow.message("closed_callback_confirm", lang)], locale))
    return twiml(svc.twiml.closed_offer_page(offer, sid=sid, turn=turn, locale=locale, again=True))


# -- the outbound call ------------------------------------------------------------------------
@bp.post("/callback/answer")
@twilio_signed
@fail_safe_goodbye
def answer():
    """The caller rung back picked up."""
    svc = services()
    sid, n = _callback_sid(), _attempt()
    svc.callbacks.record_result(sid, n, "answered")
    record, _ = svc.store.load(sid)
    flow, lang = svc.flow_for_record(record)
    agent = (request.args.get("agent") or "")[:32] or None
    return twiml(svc.twiml.callback_bridge([flow.message("callback_intro", lang)], sid=sid, attempt=n, agent=agent,
                                           locale=flow.say_locale(lang)))


def _reached(svc, sid, n, by, agent_call=None):
    now = svc.store.now()
    fields, ops = callbacks.reached(sid, by=by, now=now, ttl=svc.config.retention_seconds)
    if agent_call:
        ops += svc.agents.on_call_ops(sid, by, agent_call, now)
    svc.store.record_once(sid, f"callback:{n}:reached", fields, "callback_reached", ops=ops)


@bp.post("/callback/whisper")
@twilio_signed
@fail_safe
def whisper():
    """Runs on the human line's leg as it picks up: the call back is done; brief whoever it is."""
    svc = services()
    sid, n = _callback_sid(), _attempt()
    _reached(svc, sid, n, "human line")
    report = svc.store.report(sid) or {"record": {}, "turns": []}
    # In the caller's language, like every briefing: the agent is about to talk with them in it.
    flow, lang = svc.flow_for_record(report["record"])
    urgent = "urgent" if (report["record"].get("callback_queue") == "urgent") else None
    return twiml(svc.twiml.say([flow.message("agent_callback", lang), agent_summary(flow, lang, report, queue=urgent)],
                               flow.say_locale(lang)))


@bp.post("/callback/connected")
@twilio_signed
def connected():
    """Runs on the waiting agent's leg just before the bridge: the call back is done."""
    svc = services()
    sid, n = _callback_sid(), _attempt()
    agent = (request.args.get("agent") or "agent")[:32]
    _reached(svc, sid, n, agent, agent_call=call_sid())
    return twiml(svc.twiml.say([], ""))


@bp.post("/callback/dialed")
@twilio_signed
@fail_safe_goodbye
def dialed():
    """The rung-back caller's bridge ended, or nobody came: then back on the list, and a message."""
    svc = services()
    sid, n = _callback_sid(), _attempt()
    status = request.form.get("DialCallStatus", "")[:20]
    record, _ = svc.store.load(sid)
    flow, lang = svc.flow_for_record(record)
    locale = flow.say_locale(lang)
    ttl = svc.config.retention_seconds
    if record.get("callback_state") == "done" or status in ("completed", "answered"):
        svc.store.record_once(sid, f"callback:{n}:ended", {"callback_dial_status": status}, "callback_ended",
                              ops=svc.agents.off_call_ops(sid))
        return twiml(svc.twiml.say_then_hangup([flow.message("goodbye", lang)], locale))
    fields, ops = callbacks.no_person(sid, record, now=svc.store.now(), ttl=ttl)
    fields["callback_dial_status"] = status
    svc.store.record_once(sid, f"callback:{n}:ended", fields, "callback_no_person", ops=ops)
    log.info("call back %d for %s: answered, but no person came (%s); back on the list", n, sid, status)
    return twiml(svc.twiml.voicemail([flow.message("agents_busy", lang)], sid=sid, locale=locale))


@bp.post("/callback/status")
@twilio_signed
def status():
    """Twilio's status callback for the outbound call: the attempt's result, once."""
    svc = services()
    sid, n = _callback_sid(), _attempt()
    call_status = request.form.get("CallStatus", "")[:20]
    if call_status in ANSWERED:
        svc.callbacks.record_result(sid, n, "answered")
    elif call_status in callbacks.FAILED_RESULTS:
        svc.callbacks.record_result(sid, n, call_status)
    return ("", 204)


@bp.post("/callback/agent-wait")
@twilio_signed
def agent_wait():
    """The agent holding for a caller being rung back: hold on, or go (the call back failed)."""
    svc = services()
    sid, n = _callback_sid(), _attempt()
    record, _ = svc.store.load(sid)
    waited = whole_seconds(request.form.get("QueueTime"))
    state = record.get("callback_state")
    failed = int(record.get("callback_attempts") or 0) != n or state in ("waiting", "failed")
    if failed or waited > AGENT_WAIT_LIMIT:
        flow, lang = svc.agent_flow()
        return twiml(svc.twiml.say_then_leave([flow.message("agent_callback_failed", lang)], flow.say_locale(lang)))
    return twiml(svc.twiml.wait_round(2))
