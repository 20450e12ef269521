"""Twilio voice webhooks for the keypad path: call in, each key press, handoff, end.

Every route is signed (403 otherwise) and fail-safe (any internal failure
sends the caller to the human line). Each caller input is a numbered turn;
the turn number in the callback URL makes a retried webhook idempotent.
"""
from __future__ import annotations

import json
import logging

from flask import Blueprint, abort, request

from .. import keys, quality, stats
from ..flows.engine import Conversation, Input
from ..redact import mask_phone, redact
from ..security import twilio_signed
from ..summary import agent_summary
from .common import fail_safe, services, twiml

log = logging.getLogger("ivr.voice")
bp = Blueprint("voice", __name__, url_prefix="/voice")


def _required(name: str) -> str:
    value = request.form.get(name, "")
    if not value or len(value) > 64:
        abort(400, description=f"{name} is missing or invalid")
    return value


def _turn_arg() -> int:
    raw = request.args.get("turn", "")
    if not raw.isdigit() or len(raw) > 6:
        abort(400, description="turn must be a small non-negative integer")
    return int(raw)


def finish_turn(sid, caller, turn, conv, reply, engine, caller_turn=None, answered_before=False):
    """Render the reply, apply it to Redis in one script, return the TwiML to send."""
    svc = services()
    flow = engine.flow
    locale = flow.say_locale(conv.lang)
    if reply.hangup and svc.config.feedback and (reply.answered or answered_before) and reply.prompts:
        # The bot served this caller: ask how well, before the goodbye.
        xml = svc.twiml.ask_rating(reply.prompts[:-1], flow.message("rating", conv.lang), reply.prompts[-1],
                                   sid=sid, after="bot", locale=locale)
    else:
        xml = svc.twiml.reply(reply, sid=sid, turn=turn + 1, locale=locale)
    now = svc.store.now()
    state = conv.to_dict()
    state.pop("boost", None)  # lives in the record, set once when the call opens
    fields = {"state": state, "step": conv.step or "", "misses": conv.misses, "updated_at": now}
    decision = reply.decision
    if reply.answered:
        fields["answered"] = 1
    ops = []
    if reply.route is not None:
        queued = svc.config.handoff_mode == "queue"
        fields.update(status="queued" if queued else "dialing", queue=reply.route.queue, reason=reply.route.reason,
                      handoff_at=now, boosted_by=reply.route.boosted_by)
        if queued:
            fields["enqueued_at"] = now
            ops += [["ZADD", keys.queue(reply.route.queue), now, sid],
                    ["EXPIRE", keys.queue(reply.route.queue), svc.config.retention_seconds]]
    elif reply.hangup:
        fields["status"] = "ending"
    turns = []
    if caller_turn is not None and caller_turn.get("input") == "speech" and decision is not None \
            and decision.intent is None and decision.action in ("clarify", "handoff") \
            and not engine.matchers[conv.lang].is_frustrated(caller_turn.get("text", "")):
        # A question the bot could not place (asked once, or again before a handoff): log it.
        ops += quality.unanswered_ops(caller_turn.get("text", ""), conv.flow, conv.lang, now,
                                      svc.config.retention_seconds)
    if caller_turn is not None:
        caller_turn.update(ts=now, intent=decision.intent if decision else None,
                           intent_confidence=decision.confidence if decision else None,
                           decision=decision.action if decision else None,
                           detail=decision.detail if decision else "")
        turns.append(caller_turn)
    turns.append({"who": "bot", "text": reply.text, "step": conv.step, "ts": now,
                  "route": reply.route.__dict__ if reply.route else None})
    event = "handoff" if reply.route is not None else "turn"
    earlier = svc.store.apply_turn(sid, caller, turn, xml, fields, turns=turns, transfer=reply.route is not None,
                                   event=event, data={"step": conv.step, "decision": decision.action if decision else None,
                                                      "intent": decision.intent if decision else None}, ops=ops)
    if reply.route is not None and earlier is None:
        log.info("call %s handed off: queue=%s reason=%s", sid, reply.route.queue, reply.route.reason)
    return earlier or xml


@bp.post("")
@twilio_signed
@fail_safe
def incoming():
    """A call comes in: open its record and greet the caller."""
    svc = services()
    sid, caller = _required("CallSid"), request.form.get("From", "")
    flow = svc.pick_flow(request.args.get("flow"), request.form.get("To"))
    lang = request.args.get("lang") if request.args.get("lang") in flow.languages else flow.languages[0]
    created, boost, earlier = svc.store.open_call(sid, caller, {
        "from": caller, "to": request.form.get("To", ""), "flow": flow.id, "lang": lang, "asr": "dtmf"})
    if earlier:
        return twiml(earlier)
    if created:
        log.info("call %s from %s: flow=%s lang=%s%s", sid, mask_phone(caller), flow.id, lang,
                 f" priority={boost}" if boost else "")
    engine = svc.engines[flow.id]
    conv = Conversation(flow.id, lang, boost=boost)
    reply = engine.start(conv)
    return twiml(finish_turn(sid, caller, 0, conv, reply, engine))


@bp.post("/gather")
@twilio_signed
@fail_safe
def gather():
    """The caller pressed keys (or said something, or nothing) at a step."""
    svc = services()
    sid, turn = _required("CallSid"), _turn_arg()
    record, earlier = svc.store.load(sid, turn)
    if earlier:
        return twiml(earlier)
    if not record or "state" not in record:
        raise LookupError(f"no record for call {sid}")
    conv = Conversation.from_dict(json.loads(record["state"]))
    conv.boost = record.get("boost") or None
    engine = svc.engines[conv.flow]
    digits = request.form.get("Digits", "")[:32]
    speech = request.form.get("SpeechResult", "")[:500]
    if digits:
        inp = Input("dtmf", digits)
    elif speech:
        inp = Input("speech", speech, _float(request.form.get("Confidence")))
    else:
        inp = Input("silence")
    caller_turn = {"who": "caller", "input": inp.kind, "text": redact(inp.text), "confidence": inp.confidence,
                   "step": conv.step}
    reply = engine.handle(conv, inp)
    return twiml(finish_turn(sid, record.get("from", ""), turn, conv, reply, engine, caller_turn,
                             answered_before=record.get("answered") == "1"))


@bp.post("/dial")
@twilio_signed
@fail_safe
def dial_result():
    """<Dial> to the human line ended: record the result and the caller's wait."""
    svc = services()
    sid = _required("CallSid")
    marker = f"dial:{request.args.get('turn', '')[:8]}"
    status = request.form.get("DialCallStatus", "failed")[:20]
    record, _ = svc.store.load(sid)
    now = svc.store.now()
    handoff_at = _float(record.get("handoff_at")) or now
    picked_up = status in ("completed", "answered")
    if picked_up:
        answered_at = _float(record.get("answered_at"))
        if answered_at is None:
            answered_at = now - (_float(request.form.get("DialCallDuration")) or 0.0)
        wait = max(0.0, answered_at - handoff_at)
    else:
        wait = max(0.0, now - handoff_at)
    queue = record.get("queue") or "normal"
    fields = {"dial_status": status, "wait_seconds": round(wait, 3),
              "status": "agent_done" if picked_up else "agents_busy"}
    ops = []
    if picked_up and not record.get("answered_at"):
        # The whisper normally marks the answer; without it, Twilio's talk time dates it.
        fields["answered_at"] = answered_at
        ops += stats.answered_ops(sid, wait, queue, answered_at, svc.config.retention_seconds)
    overflow = not picked_up and svc.config.dial_overflow == "queue"
    if overflow:
        # A second transfer: from the direct line into the queue. Counted once, however often Twilio retries.
        fields.update(status="queued", enqueued_at=now, overflowed_from="dial")
        ops += [["ZADD", keys.queue(queue), now, sid], ["EXPIRE", keys.queue(queue), svc.config.retention_seconds]]
    svc.store.record_once(sid, marker, fields, "dial_result", transfer=overflow, ops=ops)
    flow = svc.flows.get(record.get("flow")) or svc.pick_flow(None, None)
    lang = record.get("lang") or flow.languages[0]
    locale = flow.say_locale(lang)
    if picked_up:
        return twiml(after_agent(sid, flow, lang))
    if overflow:
        log.info("call %s: human line %s after %.1fs; overflow to the %s queue", sid, status, wait, queue)
        return twiml(svc.twiml.say_then_enqueue([flow.message("handoff_urgent" if queue == "urgent" else "handoff",
                                                              lang)],
                                                sid=sid, turn=request.args.get("turn", "0")[:8], queue=queue,
                                                locale=locale))
    log.info("call %s: human line %s after %.1fs; offering voicemail", sid, status, wait)
    return twiml(svc.twiml.voicemail([flow.message("agents_busy", lang)], sid=sid, locale=locale))


def after_agent(sid, flow, lang) -> str:
    """The agent hung up and the caller is still on the line: ask for a rating, or say goodbye."""
    svc = services()
    if not svc.config.feedback_after_agent:
        return svc.twiml.say_then_hangup([], flow.say_locale(lang))
    return svc.twiml.ask_rating([], flow.message("rating_after_agent", lang), flow.message("goodbye", lang),
                                sid=sid, after="agent", locale=flow.say_locale(lang))


@bp.post("/whisper")
@twilio_signed
@fail_safe
def whisper():
    """Runs on the agent's leg as they pick up: marks the end of the wait, briefs the agent."""
    svc = services()
    sid = request.args.get("sid", "")[:64]
    record, _ = svc.store.load(sid)
    now = svc.store.now()
    wait = max(0.0, now - (_float(record.get("handoff_at")) or now))
    svc.store.record_once(sid, "agent_answered", {"answered_at": now, "status": "with_agent"}, "agent_answered",
                          ops=stats.answered_ops(sid, wait, record.get("queue") or "normal", now,
                                                 svc.config.retention_seconds))
    report = svc.store.report(sid) or {"record": {}, "turns": []}
    return twiml(svc.twiml.whisper(agent_summary(report), "en-US"))


@bp.post("/voicemail")
@twilio_signed
@fail_safe
def voicemail():
    svc = services()
    sid = _required("CallSid")
    svc.store.record_once(sid, "voicemail", {
        "voicemail_url": request.form.get("RecordingUrl", "")[:300],
        "voicemail_seconds": request.form.get("RecordingDuration", "")[:8], "status": "voicemail"}, "voicemail")
    record, _ = svc.store.load(sid)
    flow = svc.flows.get(record.get("flow")) or svc.pick_flow(None, None)
    lang = record.get("lang") or flow.languages[0]
    return twiml(svc.twiml.say_then_hangup([flow.message("goodbye", lang)], flow.say_locale(lang)))


@bp.post("/status")
@twilio_signed
def status():
    """Twilio's status callback: the call is over, close its record (once)."""
    svc = services()
    sid = _required("CallSid")
    result = svc.store.record_once(sid, "closed", {
        "status": "ended", "call_status": request.form.get("CallStatus", "")[:20],
        "duration": request.form.get("CallDuration", "")[:8]}, "call_ended", close=True,
        # Whatever else happened, a finished call no longer waits in any queue.
        ops=[["ZREM", keys.queue(q), sid] for q in keys.QUEUES])
    if result == -1:
        log.warning("status callback for unknown call %s", sid)
    return ("", 204)


@bp.post("/fallback")
@twilio_signed
def fallback():
    """Twilio's fallback URL: when the main webhook fails, apologise and connect a person."""
    svc = services()
    flow = svc.pick_flow(request.args.get("flow"), request.form.get("To"))
    lang = flow.languages[0]
    log.error("fallback URL used for call %s (error %s)", request.form.get("CallSid", "?"),
              request.form.get("ErrorCode", "?"))
    return twiml(svc.twiml.emergency(flow.message("error", lang), flow.say_locale(lang)))


def _float(raw):
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None
