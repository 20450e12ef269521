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
from . import media
from .common import default_flow, fail_safe, fail_safe_goodbye, services, twiml

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


def finish_turn(sid, caller, turn, conv, reply, engine, caller_turn=None, answered_before=False,
                render=None, extra=None):
    """Render the reply, apply it to Redis in one script, return the TwiML to send.

    Transport-agnostic apart from `render`: the keypad path stores TwiML, the
    media stream (ivr.web.media) its own rendering; `extra` adds record fields.
    """
    svc = services()
    flow = engine.flow
    locale = flow.say_locale(conv.lang)
    if render is not None:
        xml = render(reply)
    elif reply.hangup and svc.config.feedback and (reply.answered or answered_before) and reply.prompts:
        # The bot served this caller: ask how well, before the goodbye.
        xml = svc.twiml.ask_rating(reply.prompts[:-1], flow.message("rating", conv.lang), reply.prompts[-1],
                                   sid=sid, after="bot", locale=locale)
    else:
        xml = svc.twiml.reply(reply, sid=sid, turn=turn + 1, locale=locale)
    now = svc.store.now()
    state = conv.to_dict()
    state.pop("boost", None)  # lives in the record, set once when the call opens
    fields = {"state": state, "step": conv.step or "", "misses": conv.misses, "updated_at": now, **(extra or {})}
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
    if request.args.get("lang") not in flow.languages and not request.args.get("flow"):
        # ?lang=ko on the webhook URL (or the simulator's --lang) picks a flow that speaks it.
        flow = svc.flow_for_lang(request.args.get("lang") or "") or flow
    lang = request.args.get("lang") if request.args.get("lang") in flow.languages else flow.languages[0]
    streaming = media.speech_for(flow, lang, sid)
    created, boost, earlier = svc.store.open_call(sid, caller, {
        "from": caller, "to": request.form.get("To", ""), "flow": flow.id, "lang": lang,
        "asr": "vosk" if streaming else "dtmf"})
    if earlier:
        return twiml(earlier)
    if created:
        log.info("call %s from %s: flow=%s lang=%s%s", sid, mask_phone(caller), flow.id, lang,
                 f" priority={boost}" if boost else "")
    engine = svc.engines[flow.id]
    conv = Conversation(flow.id, lang, boost=boost)
    reply = engine.start(conv)
    if streaming and reply.expect is not None:
        # The caller talks to the bot over a media stream (ivr.web.media), which speaks this greeting.
        return twiml(finish_turn(sid, caller, 0, conv, reply, engine, render=lambda r: media.connect_twiml(flow, lang),
                                 extra={"turn": 0, "say": reply.prompts}))
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
    if record.get("status") == "ended":
        # A replayed request for a finished call: answer harmlessly, change nothing.
        log.warning("call %s: request for turn %s after the call ended; ignored", sid, turn)
        return twiml(svc.twiml.say_then_hangup([], "en-US"))
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
def dial_result():
    """<Dial> to the human line ended: record the result and the caller's wait.

    Not wrapped in fail_safe: a failure here must not ring the human line again
    after an agent already talked to the caller. It degrades by the dial status.
    """
    svc = services()
    sid = _required("CallSid")
    status = request.form.get("DialCallStatus", "failed")[:20]
    turn = request.args.get("turn", "")[:12]
    try:
        return twiml(_dial_result(svc, sid, status, turn))
    except Exception:  # noqa: BLE001 - recorded later or not at all; the caller still gets the right next step
        log.exception("call %s: could not record the dial result (%s)", sid, status)
        _, flow, lang = default_flow()
        if status in ("completed", "answered"):
            return twiml(svc.twiml.say_then_hangup([], flow.say_locale(lang)))
        # Nobody answered the line and our state is unavailable: Twilio's queue needs no Redis.
        return twiml(svc.twiml.say_then_enqueue([flow.message("handoff", lang)], sid=sid, turn=turn, queue="normal",
                                                locale=flow.say_locale(lang)))


def _dial_result(svc, sid, status, turn):
    marker = f"dial:{turn}"
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
    # A dial from the failure path was not counted when it was made (that is what failed): count it now.
    emergency = turn == "emergency"
    svc.store.record_once(sid, marker, fields, "dial_result", transfer=overflow or emergency, ops=ops)
    flow, lang = svc.flow_for_record(record)
    locale = flow.say_locale(lang)
    if picked_up:
        return after_agent(sid, flow, lang)
    if overflow:
        log.info("call %s: human line %s after %.1fs; overflow to the %s queue", sid, status, wait, queue)
        return svc.twiml.say_then_enqueue([flow.message("handoff_urgent" if queue == "urgent" else "handoff", lang)],
                                          sid=sid, turn=turn, queue=queue, locale=locale)
    log.info("call %s: human line %s after %.1fs; offering voicemail", sid, status, wait)
    return svc.twiml.voicemail([flow.message("agents_busy", lang)], sid=sid, locale=locale)


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
    return twiml(svc.twiml.say([agent_summary(report)], "en-US"))


@bp.post("/voicemail")
@twilio_signed
@fail_safe_goodbye
def voicemail():
    svc = services()
    sid = _required("CallSid")
    svc.store.record_once(sid, "voicemail", {
        "voicemail_url": request.form.get("RecordingUrl", "")[:300],
        "voicemail_seconds": request.form.get("RecordingDuration", "")[:8], "status": "voicemail"}, "voicemail")
    record, _ = svc.store.load(sid)
    flow, lang = svc.flow_for_record(record)
    return twiml(svc.twiml.say_then_hangup([flow.message("goodbye", lang)], flow.say_locale(lang)))


@bp.post("/status")
@twilio_signed
def status():
    """Twilio's status callback: the call is over, close its record (once)."""
    svc = services()
    sid = _required("CallSid")
    try:
        result = _close(svc, sid)
    except Exception:  # noqa: BLE001 - nothing to tell the caller; the record expires with its TTL
        log.exception("call %s: could not close the record", sid)
        return ("", 503)
    if result == -1:
        log.warning("status callback for unknown call %s", sid)
    return ("", 204)


def _close(svc, sid):
    return svc.store.record_once(sid, "closed", {
        "status": "ended", "call_status": request.form.get("CallStatus", "")[:20],
        "duration": request.form.get("CallDuration", "")[:8]}, "call_ended", close=True,
        # Whatever else happened, a finished call no longer waits in any queue.
        ops=[["ZREM", keys.queue(q), sid] for q in keys.QUEUES])


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
