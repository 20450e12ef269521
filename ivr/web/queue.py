"""Queue-mode handoff: callers wait in Twilio queues per priority; agents dial in.

Twilio's <Enqueue> holds the caller and asks our waitUrl what to play; the
agent line (<Dial><Queue>) bridges the next caller. Redis mirrors each queue
so every process (and the dashboard) knows who waits, in which order, for how
long, and agents always get urgent callers first.
"""
from __future__ import annotations

import logging

from flask import Blueprint, abort, request, send_file

from .. import keys, metrics, stats
from ..hold_music import ensure as ensure_hold_music
from ..queues import NAMES as QUEUES
from ..signature import twilio_signed
from ..summary import agent_summary
from .common import call_sid, fail_safe, request_flow, services, twiml
from .voice import after_agent

log = logging.getLogger("ivr.queue")
bp = Blueprint("queue", __name__)

def announcement(flow, lang, rounds, position, wait_seconds) -> str:
    """What a waiting caller hears this round, in their language: callers ahead of them (zero,
    one or many: the flow's count forms) and the wait. Odd and even rounds use different
    messages, so a caller who waits several rounds never hears the same sentence twice in a row."""
    minutes = max(1, round(wait_seconds / 60))
    name = "queue_position" if rounds % 2 else "queue_position_again"
    return flow.message(name, lang, n=position - 1, minutes=flow.message("wait_minutes", lang, n=minutes))


def estimate_wait(position, queue_time, twilio_avg, ours):
    """Seconds still to wait. Our own rolling average over the last hour beats
    Twilio's per-queue average once we have a few samples, since it covers
    every process and both queues the way agents actually drain them."""
    avg = ours["avg_wait"] if ours["answered"] >= 3 else twilio_avg
    if not avg:
        avg = 60.0
    return max(30.0, avg * position - queue_time)


@bp.post("/voice/queue/wait")
@twilio_signed
def wait():
    """Twilio's waitUrl: announcement, callback offer after a while, hold music."""
    svc = services()
    sid = call_sid()
    queue = request.args.get("queue", "normal")
    if queue not in QUEUES:
        abort(400, description="unknown queue")
    position = _int(request.form.get("QueuePosition"), 1)
    queue_time = _int(request.form.get("QueueTime"), 0)
    twilio_avg = _int(request.form.get("AvgQueueTime"), 0)
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
        ours = stats.parse_wait_stats(raw, queue)
    except Exception:  # a caller on hold must keep hearing something
        log.exception("wait page for %s: Redis unavailable; plain hold round", sid)
        record, rounds, urgent_waiting, ours = {}, 1, 0, {"answered": 0, "avg_wait": None}
    if queue == "normal":
        position += urgent_waiting  # urgent callers are always served first
    flow, lang = svc.flow_for_record(record) if record else request_flow(svc)
    text = announcement(flow, lang, max(1, int(rounds)), max(1, position),
                        estimate_wait(position, queue_time, twilio_avg, ours))
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
    queue_time = _int(request.form.get("QueueTime"), 0)
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
        if not record.get("answered_at"):
            # /voice/queue/connect normally records the answer; this is the fallback.
            fields.update(wait_seconds=wait, answered_at=now)
            ops += stats.answered_ops(sid, wait, queue, now, ttl)
        response = after_agent(sid, flow, lang)
    elif outcome == "leave" and choice == "callback":
        fields.update(status="callback", callback_requested_at=now, wait_seconds=wait)
        # Score by the time they first joined the queue: a callback keeps the caller's place.
        ops += [["ZADD", keys.CALLBACKS, record.get("enqueued_at") or now, sid], ["EXPIRE", keys.CALLBACKS, ttl]]
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
    queue_time = _int(request.form.get("QueueTime"), 0)
    queue = request.args.get("queue", "normal")
    if queue not in QUEUES:
        abort(400, description="unknown queue")
    now = svc.store.now()
    record, _ = svc.store.load(sid)
    wait = total_wait(record, queue_time)
    ops = svc.queues.leave_ops(sid, queue) + stats.answered_ops(sid, wait, queue, now, svc.config.retention_seconds)
    if svc.store.record_once(sid, "agent_answered", {
            "answered_at": now, "wait_seconds": wait, "queue_time": queue_time, "status": "with_agent",
            "agent_call": request.form.get("DequeingCallSid", "")[:64]}, "agent_answered", ops=ops) == 1:
        metrics.observe_wait(queue, wait)
    flow, lang = svc.flow_for_record(record)
    return twiml(svc.twiml.say([flow.message("agent_connected", lang)], flow.say_locale(lang)))


@bp.post("/voice/agent")
@twilio_signed
@fail_safe
def agent():
    """An agent calls the agent line: brief them on the next caller, then bridge.

    Urgent before normal; within a queue, the longest wait first (Twilio
    queues are first-in, first-out, and our Redis mirror is ordered the same).
    """
    svc = services()
    idle = _int(request.args.get("idle"), 0)
    found = svc.queues.claim_next(call_sid(), svc.store.now())
    line, lang = svc.default   # waiting for a caller: the agents' own line speaks the default flow's language
    if not found:
        if idle >= 60:
            return twiml(svc.twiml.say_then_hangup([line.message("agent_idle_goodbye", lang)], line.say_locale(lang)))
        return twiml(svc.twiml.agent_idle(line.message("agent_idle", lang), locale=line.say_locale(lang),
                                          idle=idle + 1))
    queue, sid = found
    report = svc.store.report(sid) or {"record": {}, "turns": []}
    # The briefing is in the caller's language: the agent is about to talk with them in it.
    flow, lang = svc.flow_for_record(report["record"])
    briefing = agent_summary(flow, lang, report, queue=queue)
    log.info("agent %s takes the %s queue; head is %s", request.form.get("CallSid", "?"), queue, sid)
    return twiml(svc.twiml.agent_connect(briefing, queue=queue, locale=flow.say_locale(lang)))


@bp.post("/voice/agent/done")
@twilio_signed
def agent_done():
    """The agent's bridge ended; offer the next caller right away."""
    svc = services()
    line, lang = svc.default
    return twiml(svc.twiml.agent_idle(line.message("agent_next", lang), locale=line.say_locale(lang), idle=0))


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


def _int(raw, default):
    try:
        return int(float(raw))
    except (TypeError, ValueError):
        return default
