"""Twilio voice webhooks: a call comes in, each key press, the human line's result, the end.

Every route is signed (403 otherwise) and fail-safe (any internal failure
sends the caller to the human line). Each caller input is a numbered turn
(ivr.turn): the turn number in the callback URL makes a retried webhook
idempotent. This module only translates between Twilio's requests and TwiML
and the turn; calls that talk by voice continue on the media stream (stream.py).
"""
from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlsplit

from flask import Blueprint, abort, request

from .. import metrics, stats
from .. import turn as call_turn
from .. import voicemail as voicemails
from ..calls import num
from ..flows.engine import Input
from ..redact import mask_phone
from ..signature import twilio_signed
from ..summary import agent_summary
from .callback import closed_offer
from .common import call_sid, fail_safe, fail_safe_goodbye, is_call_sid, request_flow, services, stream_twiml, twiml

log = logging.getLogger("ivr.voice")
bp = Blueprint("voice", __name__, url_prefix="/voice")


def _turn_arg() -> int:
    raw = request.args.get("turn", "")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6:      # "²" is a digit to Python, not to int()
        abort(400, description="turn must be a small non-negative integer")
    return int(raw)


def render_keypad(svc, state, reply, turn, answered_before=False) -> str:
    """TwiML for a keypad turn: the reply with a <Gather> for the next turn, a handoff, or,
    when the bot served the caller and the call ends, the rating question before the goodbye."""
    flow, conv = state.engine.flow, state.conv
    locale = flow.say_locale(conv.lang)
    if reply.hangup and svc.config.feedback and (reply.answered or answered_before) and reply.prompts:
        return svc.twiml.ask_rating(reply.prompts[:-1], flow.message("rating", conv.lang), reply.prompts[-1],
                                    sid=state.sid, after="bot", locale=locale)
    offer = closed_offer(flow, conv.lang, state.caller) if reply.route is not None and reply.route.after_hours else None
    return svc.twiml.reply(reply, sid=state.sid, turn=turn + 1, locale=locale, offer=offer)


@bp.post("")
@twilio_signed
@fail_safe
def incoming():
    """A call comes in: open its record and greet the caller."""
    svc = services()
    sid, caller = call_sid(), request.form.get("From", "")
    flow = svc.pick_flow(request.args.get("flow"), request.form.get("To"))
    if request.args.get("lang") not in flow.languages and not request.args.get("flow"):
        # ?lang=ko on the webhook URL (or the simulator's --lang) picks a flow that speaks it.
        flow = svc.flow_for_lang(request.args.get("lang") or "") or flow
    lang = request.args.get("lang") if request.args.get("lang") in flow.languages else flow.languages[0]
    streaming = svc.speech.speaks(lang, sid)
    # The call runs on this flow version to its end, whatever is reloaded meanwhile.
    record = {"from": caller, "to": request.form.get("To", ""), "flow": flow.id, "flow_version": flow.version,
              "lang": lang, "asr": "vosk" if streaming else "dtmf"}
    created, boost, earlier = svc.store.open_call(sid, caller, record)
    if earlier:
        return twiml(earlier)
    if created:
        metrics.CALLS.labels(lang=lang, asr=record["asr"]).inc()
        log.info("call %s from %s: flow=%s lang=%s%s", sid, mask_phone(caller), flow.id, lang,
                 f" priority={boost}" if boost else "")
    state, reply = call_turn.start(svc, sid, record, flow, lang, boost, mode="speech" if streaming else "keypad")
    if streaming and reply.expect is not None:
        # The caller talks to the bot over a media stream (ivr.web.stream), which speaks this greeting.
        return twiml(call_turn.commit(svc, state, 0, reply, stream_twiml(svc, sid, 0, flow=flow.id, lang=lang),
                                      extra={"turn": 0, "say": reply.prompts}))
    return twiml(call_turn.commit(svc, state, 0, reply, render_keypad(svc, state, reply, 0)))


@bp.post("/gather")
@twilio_signed
@fail_safe
def gather():
    """The caller pressed keys (or said something, or nothing) at a step."""
    svc = services()
    sid, turn = call_sid(), _turn_arg()
    record, earlier = svc.store.load(sid, turn)
    if earlier:
        return twiml(earlier)
    if record.get("status") == "ended":
        # A replayed request for a finished call: answer harmlessly, change nothing.
        log.warning("call %s: request for turn %s after the call ended; ignored", sid, turn)
        return twiml(svc.twiml.say_then_hangup([], ""))
    state = call_turn.resume(svc, sid, record)
    digits = request.form.get("Digits", "")[:32]
    speech = request.form.get("SpeechResult", "")[:500]
    if digits:
        inp = Input("dtmf", digits)
    elif speech:
        inp = Input("speech", speech, num(request.form.get("Confidence")))
    else:
        inp = Input("silence")
    reply, entry = call_turn.step(state, inp)
    rendered = render_keypad(svc, state, reply, turn, answered_before=record.get("answered") == "1")
    return twiml(call_turn.commit(svc, state, turn, reply, rendered, entry))


@bp.post("/dial")
@twilio_signed
def dial_result():
    """<Dial> to the human line ended: record the result and the caller's wait.

    Not wrapped in fail_safe: a failure here must not ring the human line again
    after an agent already talked to the caller. It degrades by the dial status.
    """
    svc = services()
    sid = call_sid()
    status = request.form.get("DialCallStatus", "failed")[:20]
    turn = request.args.get("turn", "")[:12]
    try:
        return twiml(_dial_result(svc, sid, status, turn))
    except Exception:  # recorded later or not at all; the caller still gets the right next step
        log.exception("call %s: could not record the dial result (%s)", sid, status)
        flow, lang = request_flow(svc)
        if status in ("completed", "answered"):
            return twiml(svc.twiml.say_then_hangup([], flow.say_locale(lang)))
        # Nobody answered the line and our state is unavailable: Twilio's queue needs no Redis.
        return twiml(svc.twiml.say_then_enqueue([flow.message("handoff", lang)], sid=sid, turn=turn, queue="normal",
                                                locale=flow.say_locale(lang)))


def _dial_result(svc, sid, status, turn):
    marker = f"dial:{turn}"
    record, _ = svc.store.load(sid)
    now = svc.store.now()
    handoff_at = num(record.get("handoff_at")) or now
    picked_up = status in ("completed", "answered")
    if picked_up:
        answered_at = num(record.get("answered_at"))
        if answered_at is None:
            # Twilio's talk time, within what can be true: not negative, not longer than since the handoff.
            talk = min(max(num(request.form.get("DialCallDuration")) or 0.0, 0.0), max(0.0, now - handoff_at))
            answered_at = now - talk
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
        ops += svc.queues.join_ops(queue, sid, now)
    # A dial from the failure path was not counted when it was made (that is what failed): count it now,
    # unless the record shows the handoff after all (the write landed, only its answer was lost).
    emergency = turn == "emergency" and not record.get("handoff_at")
    applied = svc.store.record_once(sid, marker, fields, "dial_result", transfer=overflow or emergency, ops=ops)
    if applied == 1 and "answered_at" in fields:
        metrics.observe_wait(queue, wait)
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
    sid = call_sid(request.args.get("sid", ""), "sid")
    record, _ = svc.store.load(sid)
    now = svc.store.now()
    wait = max(0.0, now - (num(record.get("handoff_at")) or now))
    if svc.store.record_once(sid, "agent_answered", {"answered_at": now, "status": "with_agent"}, "agent_answered",
                             ops=stats.answered_ops(sid, wait, record.get("queue") or "normal", now,
                                                    svc.config.retention_seconds)) == 1:
        metrics.observe_wait(record.get("queue"), wait)
    report = svc.store.report(sid) or {"record": {}, "turns": []}
    # In the caller's language: the agent is about to talk with them in it.
    flow, lang = svc.flow_for_record(report["record"])
    return twiml(svc.twiml.say([agent_summary(flow, lang, report)], flow.say_locale(lang)))


@bp.post("/voicemail")
@twilio_signed
@fail_safe_goodbye
def voicemail():
    """The caller left a message: listed for operators; fetched, stored and transcribed in the background."""
    svc = services()
    # A message left on a call back's leg belongs to the caller's original call (`sid`, signed in the URL).
    sid = request.args.get("sid", "") if is_call_sid(request.args.get("sid")) else call_sid()
    url = request.form.get("RecordingUrl", "")[:300]
    record, _ = svc.store.load(sid)
    flow, lang = svc.flow_for_record(record)
    fields, ops = voicemails.left(sid, url, request.form.get("RecordingDuration", "")[:8], svc.store.now(),
                                  svc.config.retention_seconds)
    if not url:   # nothing was recorded: nothing to listen to
        fields, ops = {"voicemail_seconds": "0"}, []
    if sid == request.form.get("CallSid"):
        fields["status"] = "voicemail"   # (a call back's leg leaves the original call's status alone)
    if svc.store.record_once(sid, "voicemail", fields, "voicemail", ops=ops) == 1 and url:
        svc.transcriber.submit_voicemail(sid, url, lang)
    return twiml(svc.twiml.say_then_hangup([flow.message("goodbye", lang)], flow.say_locale(lang)))


@bp.post("/status")
@twilio_signed
def status():
    """Twilio's status callback: the call is over, close its record (once)."""
    svc = services()
    sid = call_sid()
    try:
        result, outcome = svc.store.close(sid, {
            "status": "ended", "call_status": request.form.get("CallStatus", "")[:20],
            "duration": request.form.get("CallDuration", "")[:8]},
            # Whatever else happened, a finished call no longer waits in any queue, nor talks to an agent.
            ops=svc.queues.leave_ops(sid) + svc.agents.off_call_ops(sid))
    except Exception:  # nothing to tell the caller; the record expires with its TTL
        log.exception("call %s: could not close the record", sid)
        return ("", 503)
    if result == -1:
        log.warning("status callback for unknown call %s", sid)
    elif result == 1:
        metrics.CALLS_ENDED.labels(outcome=outcome or "hangup").inc()
    return ("", 204)


@bp.post("/fallback")
@twilio_signed
def fallback():
    """Twilio's fallback URL: when the main webhook fails, apologise and connect a person, in the
    caller's language: the flow is picked as POST /voice picks it (the call's record, ?flow=/?lang=,
    the number dialled); a fallback URL without ?flow=/?lang= reads them from the URL that failed
    (Twilio's ErrorUrl), so `…/voice?flow=hotline_ko` failing still apologises in Korean."""
    svc = services()
    args = request.args
    if not (args.get("flow") or args.get("lang")):
        try:
            failed = urlsplit(request.form.get("ErrorUrl", "")[:2000]).query
        except ValueError:   # not a URL (a bracketed host left open): nothing to learn from it
            failed = ""
        args = {k: v for k, v in parse_qsl(failed) if k in ("flow", "lang")}
    flow, lang = request_flow(svc, args)
    sid = request.form.get("CallSid", "")
    log.error("fallback URL used for call %s (error %s)", sid if len(sid) <= 64 else "?",
              request.form.get("ErrorCode", "?")[:16])
    return twiml(svc.twiml.emergency(flow.message("error", lang), flow.say_locale(lang)))
