"""Queue-mode handoff: callers wait in Twilio queues per priority; agents dial in.

Twilio's <Enqueue> holds the caller and asks our waitUrl what to play; the
agent line (<Dial><Queue>) bridges the next caller. Redis mirrors each queue
so every process (and the dashboard) knows who waits, in which order, for how
long, and agents always get urgent callers first.
"""
from __future__ import annotations

import logging

from flask import Blueprint, abort, request, send_file

from .. import callbacks, keys, metrics, stats
from ..agents import MAX_PIN_FAILURES
from ..hold_music import ensure as ensure_hold_music
from ..metrics import count_agent_refusal
from ..queues import NAMES as QUEUES
from ..redact import mask_phone
from ..signature import twilio_signed
from ..summary import agent_summary
from .common import call_sid, fail_safe, request_flow, services, twiml, whole_seconds
from .voice import after_agent

log = logging.getLogger("ivr.queue")
bp = Blueprint("queue", __name__)

def announcement(flow, lang, rounds, position, wait_seconds) -> str:
    """What a waiting caller hears this round, in their language: callers ahead of them (zero,
    one or many: the flow's count forms) and the wait, or, when no wait can be told (None), no
    figure at all. Odd and even rounds use different messages, so a caller who waits several
    rounds never hears the same sentence twice in a row."""
    again = "" if rounds % 2 else "_again"
    if wait_seconds is None:
        return flow.message("queue_no_estimate" + again, lang, n=position - 1)
    minutes = max(1, round(wait_seconds / 60))
    return flow.message("queue_position" + again, lang, n=position - 1,
                        minutes=flow.message("wait_minutes", lang, n=minutes))


MIN_SAMPLES = 3     # answered callers in the last hour before any wait is told


def estimate_wait(position, waited, waits):
    """Seconds this caller may still wait, or None when no figure would be true.

    `waits` are the waits of the callers this queue answered in the last hour (ivr.stats). Of
    those, the ones who waited longer than this caller already has say what is still to come:
    on average, what they waited beyond that; each caller still ahead adds an average wait. So
    the figure never shrinks below what the callers who waited as long went on to wait, and a
    caller who has waited longer than anyone answered lately is promised nothing (None), as
    is every caller while fewer than MIN_SAMPLES were answered."""
    if len(waits) < MIN_SAMPLES:
        return None
    longer = [w - waited for w in waits if w > waited]
    if not longer:
        return None
    return sum(longer) / len(longer) + (position - 1) * sum(waits) / len(waits)


@bp.post("/voice/queue/wait")
@twilio_signed
def wait():
    """Twilio's waitUrl: announcement, callback offer after a while, hold music."""
    svc = services()
    sid = call_sid()
    queue = request.args.get("queue", "normal")
    if queue not in QUEUES:
        abort(400, description="unknown queue")
    position = whole_seconds(request.form.get("QueuePosition"), 1)
    queue_time = whole_seconds(request.form.get("QueueTime"), 0)
    try:
        now = svc.store.now()
        # One script: counts the round, notes Twilio still holds the caller, mends the mirror.
        _, rounds, urgent_waiting, restored = svc.queues.waiting(sid, queue, now, queue_time)
        if restored:
            log.warning("call %s: waits in the %s queue but Redis had lost %s (failover?); restored", sid, queue,
                        "its queue entry" if restored == 1 else "its handoff")
        pipe = svc.redis.pipeline(transaction=False)
        pipe.hgetall(keys.call(sid))
        stats.read_wait_stats(pipe, now, stats.HOUR)
        record, *raw = pipe.execute()
        waits = stats.answered_waits(raw, queue)
    except Exception:  # a caller on hold must keep hearing something
        log.exception("wait page for %s: Redis unavailable; plain hold round", sid)
        record, rounds, urgent_waiting, waits = {}, 1, 0, []
    if queue == "normal":
        position += urgent_waiting  # urgent callers are always served first
    position = max(1, position)
    flow, lang = svc.flow_for_record(record) if record else request_flow(svc)
    # Measured as the answered callers' waits are: from the handoff (total_wait).
    text = announcement(flow, lang, max(1, int(rounds)), position,
                        estimate_wait(position, total_wait(record, queue_time), waits))
    offer = None
    if queue_time >= svc.config.callback_after and record:
        offer = (flow.message("callback_offer", lang), svc.twiml.url("/voice/queue/option", sid=sid))
    return twiml(svc.twiml.hold([text], locale=flow.say_locale(lang), music_url=_hold_music_url(svc), offer=offer))


@bp.post("/voice/queue/option")
@twilio_signed
@fail_safe
def option():
    """The caller pressed a key during the callback offer."""
    svc = services()
    sid = call_sid(request.args.get("sid", ""), "sid")
    digit = request.form.get("Digits", "")[:1]
    if digit not in ("1", "2"):
        # Any other key: back to the music (nothing is said, so no locale is needed).
        return twiml(svc.twiml.hold([], locale="", music_url=_hold_music_url(svc)))
    choice = "callback" if digit == "1" else "voicemail"
    svc.store.record_once(sid, "queue_choice", {"queue_choice": choice}, "queue_choice")
    return twiml(svc.twiml.leave())


@bp.post("/voice/queue/result")
@twilio_signed
@fail_safe
def result():
    """<Enqueue action>: the caller left the queue (bridged to an agent, hung up, or chose to leave)."""
    svc = services()
    sid = call_sid()
    outcome = request.form.get("QueueResult", "error")[:24]
    queue_time = whole_seconds(request.form.get("QueueTime"), 0)
    record, _ = svc.store.load(sid)
    queue = record.get("queue") or "normal"
    now = svc.store.now()
    ttl = svc.config.retention_seconds
    fields = {"queue_result": outcome, "queue_time": queue_time}
    ops = svc.queues.leave_ops(sid, queue)
    flow, lang = svc.flow_for_record(record)
    locale = flow.say_locale(lang)
    choice = record.get("queue_choice")
    wait = total_wait(record, queue_time)
    if outcome in ("bridged", "bridging-in-process"):
        fields.update(status="agent_done")
        ops += svc.agents.off_call_ops(sid)
        if not record.get("answered_at"):
            # /voice/queue/connect normally records the answer; this is the fallback.
            fields.update(wait_seconds=wait, answered_at=now)
            ops += stats.answered_ops(sid, wait, queue, now, ttl)
        response = after_agent(sid, flow, lang)
    elif outcome == "leave" and choice == "callback" and not callbacks.reachable(record.get("from")):
        # A withheld number cannot be rung back: the caller is asked for a message instead.
        fields.update(status="voicemail", wait_seconds=wait)
        response = svc.twiml.voicemail([flow.message("callback_no_number", lang)], sid=sid, locale=locale)
    elif outcome == "leave" and choice == "callback":
        # Placed by the time they first joined the queue: a callback keeps the caller's place.
        cb_fields, cb_ops = callbacks.request(sid, place=float(record.get("enqueued_at") or now),
                                              queue=queue, now=now, ttl=ttl)
        fields.update(cb_fields, status="callback", wait_seconds=wait)
        ops += cb_ops
        response = svc.twiml.say_then_hangup([flow.message("callback_confirm", lang)], locale)
    elif outcome == "leave" and choice == "voicemail":
        fields.update(status="voicemail", wait_seconds=wait)
        response = svc.twiml.voicemail([flow.message("voicemail_prompt", lang)], sid=sid, locale=locale)
    elif outcome == "hangup":
        fields.update(status="abandoned", wait_seconds=wait)
        ops += stats.abandoned_ops(sid, queue, now, ttl)
        response = svc.twiml.say_then_hangup([], locale)
    else:
        # queue-full, error, system-error, redirected: never drop the caller, try the human line.
        log.warning("call %s: queue result %s; dialling the human line", sid, outcome)
        fields.update(status="dialing")
        response = svc.twiml.emergency(flow.message("handoff", lang), locale)
    if svc.store.record_once(sid, f"queue_result:{request.args.get('turn', '')[:8]}", fields, "queue_result",
                             ops=ops) == 1:
        metrics.count_queue_result(queue, fields)
    return twiml(response)


@bp.post("/voice/queue/connect")
@twilio_signed
def connect():
    """<Queue url>: runs on the caller's leg just before the bridge; the wait ends here."""
    svc = services()
    sid = call_sid()
    queue_time = whole_seconds(request.form.get("QueueTime"), 0)
    queue = request.args.get("queue", "normal")
    if queue not in QUEUES:
        abort(400, description="unknown queue")
    now = svc.store.now()
    record, _ = svc.store.load(sid)
    wait = total_wait(record, queue_time)
    agent, agent_call = (request.args.get("agent") or "")[:32], request.form.get("DequeingCallSid", "")[:64]
    ops = svc.queues.leave_ops(sid, queue) + stats.answered_ops(sid, wait, queue, now, svc.config.retention_seconds)
    if agent:
        ops += svc.agents.on_call_ops(sid, agent, agent_call, now)
    if svc.store.record_once(sid, "agent_answered", {
            "answered_at": now, "wait_seconds": wait, "queue_time": queue_time, "status": "with_agent",
            "agent_call": agent_call, "agent_name": agent or None}, "agent_answered", ops=ops) == 1:
        metrics.observe_wait(queue, wait)
    flow, lang = svc.flow_for_record(record)
    return twiml(svc.twiml.say([flow.message("agent_connected", lang)], flow.say_locale(lang)))


@bp.post("/voice/agent")
@twilio_signed
@fail_safe
def agent():
    """An agent calls the agent line: admitted (registered number, PIN when set), briefed on the
    next caller, then bridged; or, when a call back kept its place ahead, the caller is rung back.

    Urgent before normal; within a priority, the longest wait first, a call back counting from
    when its caller joined the queue (ivr.queues.Queues.claim_next).
    """
    svc = services()
    agent_call = call_sid()
    turn = _turn_arg()
    flow, lang = svc.agent_flow(request.form.get("To"))
    locale = flow.say_locale(lang)
    name = svc.agents.admitted(agent_call)
    if name is None:
        name, response = _admit(svc, agent_call, flow, lang)
        if response is not None:
            return response
    now = svc.store.now()
    svc.agents.seen(name, now)
    idle = whole_seconds(request.args.get("idle"), 0)
    # Each turn of the call takes at most one caller: the same signed request again (Twilio retrying,
    # or someone replaying captured traffic) takes nobody and hears nothing about anyone. The answer
    # sends Twilio on to the turn the line expects, a URL only Twilio can sign.
    taken, turn = svc.agents.take_turn(agent_call, turn)
    if not taken:
        log.warning("agent %s: request for a turn already taken on %s (a retry or a replay); nobody claimed",
                    name, agent_call)
        return twiml(svc.twiml.agent_resume(idle=idle, turn=turn))
    # Without a Twilio account nobody can be rung back from here: call backs wait for an operator.
    found = svc.queues.claim_next(agent_call, now, callbacks=svc.twilio_api.available)
    if not found:
        if idle >= 60:
            return twiml(svc.twiml.say_then_hangup([flow.message("agent_idle_goodbye", lang)], locale))
        return twiml(svc.twiml.agent_idle(flow.message("agent_idle", lang), locale=locale, idle=idle + 1, turn=turn))
    kind, queue, sid = found
    report = svc.store.report(sid) or {"record": {}, "turns": []}
    # The briefing is in the caller's language: the agent is about to talk with them in it.
    caller_flow, caller_lang = svc.flow_for_record(report["record"])
    caller_locale = caller_flow.say_locale(caller_lang)
    if kind == "callback":
        try:
            attempt = svc.callbacks.call_back(sid, by=name, via="agent line", agent=name)
        except callbacks.CallbackError as exc:
            log.warning("agent %s: call back for %s not placed: %s", name, sid, exc)
            return twiml(svc.twiml.agent_idle(flow.message("agent_callback_failed", lang), locale=locale, idle=0,
                                              turn=turn))
        briefing = [caller_flow.message("agent_callback", caller_lang),
                    agent_summary(caller_flow, caller_lang, report, queue="urgent" if queue == "urgent" else None),
                    caller_flow.message("agent_callback_calling", caller_lang)]
        log.info("agent %s rings back %s (attempt %d)", name, sid, attempt)
        return twiml(svc.twiml.agent_await_callback(briefing, sid=sid, attempt=attempt, locale=caller_locale,
                                                    turn=turn))
    briefing = agent_summary(caller_flow, caller_lang, report, queue=queue)
    log.info("agent %s takes the %s queue; head is %s", name, queue, sid)
    return twiml(svc.twiml.agent_connect(briefing, queue=queue, agent=name, locale=caller_locale, turn=turn))


def _admit(svc, agent_call, flow, lang):
    """(name, None) once admitted, or (None, the TwiML to answer: a PIN prompt or the refusal)."""
    locale = flow.say_locale(lang)
    number = request.form.get("From", "")
    agent = svc.agents.by_number(number)
    if agent is None:
        return None, _refuse(svc, flow, lang, number, "not a registered agent number")
    name = agent["name"]
    if agent.get("pin"):
        if request.args.get("pin") != "1":
            return None, twiml(svc.twiml.agent_pin([flow.message("agent_pin", lang)], locale=locale))
        # Counted before the PIN is checked: a refused call stays refused, a locked agent gets no check.
        attempt = svc.agents.pin_attempt(agent_call, name)
        if attempt == "refused":
            log.warning("agent line: %s (agent %s) keyed a PIN on call %s, refused before; refused again",
                        mask_phone(number), name, agent_call)
            return None, _goodbye(svc, flow, lang)
        if attempt == "locked":
            return None, _refuse(svc, flow, lang, number, f"PIN entry of agent {name} locked after "
                                 f"{svc.agents.pin_max_failures} wrong PINs; not checked")
        if not svc.agents.pin_ok(agent, request.form.get("Digits", "")[:16]):
            failures, locked = svc.agents.pin_failed(agent_call, name)
            if locked:
                log.warning("agent line: PIN entry of agent %s locked: %d wrong PINs across calls, the last from "
                            "%s; it unlocks %d s after the last attempt (or: ivr agents unlock %s)", name,
                            svc.agents.pin_max_failures, mask_phone(number), svc.agents.pin_lock_seconds, name)
                return None, _refuse(svc, flow, lang, number, f"wrong PIN, agent {name} now locked")
            if failures >= MAX_PIN_FAILURES:
                return None, _refuse(svc, flow, lang, number, f"wrong PIN {failures} times (agent {name})")
            again = [flow.message("agent_pin_wrong", lang), flow.message("agent_pin", lang)]
            return None, twiml(svc.twiml.agent_pin(again, locale=locale))
        svc.agents.pin_succeeded(name)
    svc.agents.admit(agent_call, name)
    log.info("agent line: %s admitted (%s)", name, mask_phone(number))
    return name, None


def _refuse(svc, flow, lang, number, why):
    """Anyone else hears a refusal and reaches nobody; logged (number masked) and counted."""
    today = svc.agents.refused(svc.store.now())
    count_agent_refusal()
    log.warning("agent line refused %s: %s (%d refused today)", mask_phone(number) or "a withheld number", why, today)
    return _goodbye(svc, flow, lang)


def _goodbye(svc, flow, lang):
    return twiml(svc.twiml.say_then_hangup([flow.message("agent_refused", lang)], flow.say_locale(lang)))


def _turn_arg() -> int:
    """The agent line's turn (the `turn` of the URL its last answer gave Twilio); 0: the call's first."""
    raw = request.args.get("turn", "0")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6:
        abort(400, description="turn must be a small non-negative integer")
    return int(raw)


@bp.post("/voice/agent/done")
@twilio_signed
def agent_done():
    """The agent's bridge (or their wait for a caller rung back) ended; offer the next caller right away."""
    svc = services()
    agent_call, turn = call_sid(), _turn_arg()
    svc.agents.off_call_by_agent_call(agent_call)
    line, lang = svc.agent_flow(request.form.get("To"))
    return twiml(svc.twiml.agent_idle(line.message("agent_next", lang), locale=line.say_locale(lang), idle=0,
                                      turn=turn))


@bp.get("/audio/hold-<int:seconds>s.wav")
def hold_music(seconds):
    """Public on purpose: Twilio fetches <Play> audio without a signature; it is only music."""
    cfg = services().config
    if seconds != cfg.announce_every:
        abort(404)
    return send_file(ensure_hold_music(cfg.audio_dir, seconds), mimetype="audio/wav", max_age=86400)


def _hold_music_url(svc):
    # Its length is the announcement period, so the file name carries it (see hold_music).
    return svc.twiml.url(f"/audio/hold-{svc.config.announce_every}s.wav")


def total_wait(record, queue_time):
    """Seconds from the bot's handoff until now: time before joining the queue (a
    direct dial that rang out, measured by us) plus Twilio's own count in the queue."""
    try:
        before_queue = float(record["enqueued_at"]) - float(record["handoff_at"])
    except (KeyError, ValueError):
        before_queue = 0.0
    return round(max(0.0, before_queue) + queue_time, 3)

