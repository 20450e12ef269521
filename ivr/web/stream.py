"""Talking to callers over Twilio Media Streams: the /media WebSocket and its action webhook.

POST /voice answers <Connect><Stream> when the call's language has a Vosk
model; this module accepts the stream (signature checked before the
upgrade, the per-call credential at `start`: ivr/streamauth.py) and runs
a StreamSession (ivr.speech.session) on the socket's thread, whose turns
go through the same ivr.turn as keypad webhooks. When the stream ends,
Twilio calls /voice/stream-ended, which hands off, says goodbye, or,
whenever the stream did not end as planned, connects a person.
"""
from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, abort, request

from .. import logs, streamauth
from .. import turn as call_turn
from ..flows.engine import Decision, Reply, Route
from ..media.websocket import ConnectionClosed, InlineServer, websocket_response
from ..metrics import ACTIVE_STREAMS, count_failure, count_refused_stream
from ..server import STOPPING
from ..signature import is_valid, twilio_signed
from ..slots import Full
from ..speech.dialogue import MAX_RESUMES, FlowDialogue
from ..speech.recording import recordings_dir
from ..speech.session import START_WAIT, StartTimeout, StreamFailure, StreamSession
from .callback import closed_offer
from .common import call_sid, fail_safe, services, stream_twiml, twiml

log = logging.getLogger("ivr.stream")
bp = Blueprint("stream", __name__)

# A Twilio media message is well under 1 KB; the protocol layer logs and skips
# anything over 64 KB, the socket itself refuses messages past this (close 1009, the caller goes to a
# person): a stream buffers at most this much of one message.
MAX_SOCKET_MESSAGE = 256 * 1024
RECEIVE_TICK = 0.25
POLICY_VIOLATION = 1008    # WebSocket close code for a stream that is not the call's (RFC 6455)
ENDED_TURN = "stream-ended"     # the replies-hash key of the handoff /voice/stream-ended makes


# -- the WebSocket ----------------------------------------------------------------
@bp.before_request
def _signed_upgrade():
    """Refuse the handshake before it is accepted: Twilio signs the stream URL with no parameters."""
    if request.endpoint != "stream.media":
        return None
    svc = services()
    if not is_valid(svc.config, svc.twiml.stream_url(), {}, request.headers.get("X-Twilio-Signature", "")):
        log.warning("rejected media stream handshake: missing or invalid X-Twilio-Signature")
        abort(403, description="invalid or missing X-Twilio-Signature")
    return None


@bp.route("/media", endpoint="media", websocket=True)
def media():
    # Until its `start`, a socket is not a call: only a share of the threads may wait for one (ivr/slots.py).
    # The signature checked above is the same for every stream, so it proves nothing about who replays it.
    try:
        waiting = services().shares.unstarted_streams.take(request.remote_addr or "")
    except Full as full:
        log.warning("media stream handshake refused: too many sockets waiting for their start (%s)", full.scope)
        count_refused_stream("busy")
        return Response("too many media streams waiting for their start\n", 503,
                        {"Retry-After": "1", "Content-Type": "text/plain"})
    try:
        return _serve(waiting)
    finally:
        waiting.release()


def _serve(waiting):
    ws = InlineServer(request.environ, max_message_size=MAX_SOCKET_MESSAGE)
    ACTIVE_STREAMS.inc()
    close, t0 = None, time.monotonic()
    try:
        close = converse(ws, waiting)
    finally:
        ACTIVE_STREAMS.dec()
        ws.finish(reason=close)
        if ws.mode == "gunicorn":       # gunicorn logs no access line for a socket the app took over
            logs.access("GET", request.path, 101, 0, (time.monotonic() - t0) * 1000)
    return websocket_response(ws)


def converse(ws, waiting=None):
    """Run one call's session until the stream ends; any failure is recorded for stream-ended.
    Returns the close code when the stream was refused (not the call's, or no `start` in time).
    `waiting` (a Slot) is released once the call started: its thread is then the call's."""
    svc = services()
    cfg, sp = svc.config, svc.speech
    session = StreamSession(ws.send, FlowDialogue(svc), models=sp.models, prompts=sp.prompts, listener=sp.listener,
                            endpoint=sp.endpoint, gather_timeout=cfg.gather_timeout,
                            recordings_dir=recordings_dir(cfg))
    error = None
    try:
        while not session.done:
            message = ws.receive(timeout=RECEIVE_TICK)
            if message is not None:
                session.handle(message)
                if waiting is not None and session.started:
                    waiting.release()
                    waiting = None
            session.tick()
            if STOPPING.is_set():
                session.drain()
    except streamauth.StreamRefused as exc:
        # Nothing was written: the stream is not the call's (docs/security.md).
        log.warning("media stream refused at start: %s", exc.reason)
        count_refused_stream(exc.reason)
        return POLICY_VIOLATION
    except StartTimeout:
        log.warning("media stream closed: no start within %.0f s of the socket opening", START_WAIT)
        count_refused_stream("no_start")
        return POLICY_VIOLATION
    except ConnectionClosed:
        if not session.done:
            error = "dropped"
            if getattr(ws, "incoming_message_len", 0) > MAX_SOCKET_MESSAGE:  # simple_websocket sent 1009
                log.warning("stream %s: closed, a message was over %d bytes; the caller goes to a person",
                            session.sid, MAX_SOCKET_MESSAGE)
                error = "oversized"
            else:
                log.warning("stream %s: the socket dropped mid-call (close code %s); the caller goes to a person",
                            session.sid, getattr(ws, "close_reason", None))
    except StreamFailure as exc:
        log.error("stream %s: %s failed (%s); the caller goes to a person", session.sid, exc.where, exc,
                  exc_info=exc.__cause__ is not None)
        error = exc.where
    except Exception:  # the action webhook sends the caller to a person
        log.exception("stream %s: failed; the caller goes to a person", session.sid)
        error = "server"
    finally:
        if error and session.started:
            count_failure(f"stream:{error}")
        session.close(error)
    return None


# -- the <Connect action> ------------------------------------------------------------
@bp.post("/voice/stream-ended")
@twilio_signed
@fail_safe
def stream_ended():
    """The stream is over: hand off, hang up after the goodbye, or (anything unplanned) a person."""
    svc = services()
    sid = call_sid()
    # A call is handed off here at most once (no stream follows a handoff), so one reply key serves every
    # delivery: Twilio's retry, on whichever server, gets the same answer and changes nothing.
    record, earlier = svc.store.load(sid, ENDED_TURN)
    if earlier:
        return twiml(earlier)
    state = call_turn.resume(svc, sid, record)
    flow, lang = svc.flow_for_record(record)
    locale = flow.say_locale(lang)
    turn = int(record.get("turn") or 0)
    outcome = record.get("stream", "")
    if record.get("status") == "closed_offer":
        # Out of hours the bot said nobody is free; the offer of a call back or a message is a keypad one.
        offer = closed_offer(flow, lang, record.get("from"))
        return twiml(svc.twiml.closed_offer_page(offer, sid=sid, turn=turn + 1, locale=locale))
    if record.get("handoff_at") and record.get("queue"):
        # The bot already routed the caller (and said so): connect them the configured way.
        return twiml(svc.twiml.connect_person(sid=sid, turn=turn + 1, queue=record["queue"]))
    if outcome == "goodbye":
        if svc.config.feedback and record.get("answered") == "1":
            # The bot served this caller by voice; the rating is asked by key, like on the keypad path,
            # then the goodbye the stream held back (ivr.speech.dialogue.rating_follows).
            return twiml(svc.twiml.ask_rating([], flow.message("rating", lang), record.get("goodbye", ""),
                                              sid=sid, after="bot", locale=locale))
        return twiml(svc.twiml.say_then_hangup([], locale))
    if outcome == "shutdown":
        # The server holding the stream was stopping (deploy, scale-in) and ended it at a pause: this
        # process reconnects the caller to the bot, which repeats its last prompt and goes on.
        leg = int(record.get("stream_leg") or 0) + 1
        if state.conv.step and leg <= MAX_RESUMES and svc.speech.speaks(lang, sid):
            log.info("call %s: its stream's server stopped; reconnecting to the bot (stream %d)", sid, leg + 1)
            return twiml(stream_twiml(svc, sid, leg, flow=flow.id, lang=lang, resume=str(leg)))
    # Mid-conversation, dropped, server error, no stop event: never drop the caller.
    log.warning("call %s: media stream ended unexpectedly (stream=%s); connecting a person", sid, outcome or "none")
    state.conv.step = None
    closed = svc.closed(flow)   # out of hours nobody would answer a queue: a call back or a message instead
    reply = Reply([flow.message("closed_handoff" if closed else "error", lang)],
                  route=Route("normal", "stream_failed", after_hours=closed),
                  decision=Decision(None, 0.0, "handoff", f"media stream ended: {outcome or 'no outcome'}"))
    rendered = svc.twiml.reply(reply, sid=sid, turn=turn + 1, locale=locale,
                               offer=closed_offer(flow, lang, record.get("from")) if closed else None)
    return twiml(call_turn.commit(svc, state, ENDED_TURN, reply, rendered, extra={"turn": turn + 1}))
