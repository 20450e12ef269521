"""Talking to callers over Twilio Media Streams: the /media WebSocket and its action webhook.

POST /voice answers <Connect><Stream> when the call's language has a Vosk
model; this module accepts the stream (signature checked before the
upgrade), runs a StreamSession on the socket's thread, and keeps the call
record current through the same finish_turn the keypad path uses. When the
stream ends, Twilio calls /voice/stream-ended, which hands off, says
goodbye, or, whenever the stream did not end as planned, connects a person.
"""
from __future__ import annotations

import json
import logging
import threading
from functools import partial

from flask import Blueprint, abort, current_app, request
from twilio.twiml.voice_response import VoiceResponse

from ..flows.engine import Conversation, Decision, Reply, Route
from ..media.websocket import ConnectionClosed, InlineServer, websocket_response
from ..redact import redact
from ..security import is_valid, twilio_signed
from ..speech import grammar, models
from ..speech.endpoint import EndpointConfig
from ..speech.models import Models
from ..speech.recording import recordings_dir
from ..server import STOPPING
from ..speech.session import StreamFailure, StreamSession, Turn
from ..speech.tts import PromptAudio
from .common import count_failure, fail_safe, services, twiml
from .health import register_model_check

log = logging.getLogger("ivr.stream")
bp = Blueprint("media", __name__)

# A Twilio media message is well under 1 KB; the protocol layer logs and skips
# anything over 64 KB, the socket itself refuses messages past this (close 1009, the caller goes to a
# person): a stream buffers at most this much of one message.
MAX_SOCKET_MESSAGE = 256 * 1024
RECEIVE_TICK = 0.25
# A call the server hands off on shutdown reconnects to the bot at most this many times, then a person.
MAX_RESUMES = 3


class Speech:
    """Per-app speech services: models, prompt audio, settings."""

    def __init__(self, config):
        self.config = config
        self.models = Models(config.models_dir)
        self.prompts = PromptAudio(config.audio_dir)
        self._warned = set()
        self._lock = threading.Lock()

    def available(self, lang: str) -> bool:
        return self.config.speech and self.models.available(lang)

    def warn_once(self, lang: str) -> bool:
        with self._lock:
            first = lang not in self._warned
            self._warned.add(lang)
        return first


def init_app(app):
    sp = app.extensions["ivr.speech"] = Speech(app.extensions["ivr"].config)
    for lang in sorted({lang for f in app.extensions["ivr"].flows.values() for lang in f.languages}):
        register_model_check(f"vosk-{lang}", partial(_model_status, sp, lang))
    app.register_blueprint(bp)


def _model_status(sp, lang) -> str:
    """For /healthz: an operator sees at a glance which languages are spoken and which use keys."""
    if not sp.config.speech:
        return "off (IVR_SPEECH=off): keypad"
    path = sp.models.path(lang)
    if path is None:
        return "missing: keypad only (see `ivr models list`)"
    return "loaded" if models.is_loaded(path) else "available: loads on the first call"


def speech() -> Speech:
    return current_app.extensions["ivr.speech"]


def speech_for(flow, lang, sid) -> bool:
    """Should this call talk over a media stream? No model means the keypad, said plainly in the log."""
    sp = current_app.extensions.get("ivr.speech")
    if sp is None or not sp.config.speech:
        return False
    if sp.models.available(lang):
        return True
    level = logging.WARNING if sp.warn_once(lang) else logging.INFO
    log.log(level, "call %s: no Vosk model for lang=%s (see `ivr models list`); using the keypad", sid, lang)
    return False


def connect_twiml(flow, lang) -> str:
    return services().twiml.stream(params={"flow": flow.id, "lang": lang})


def warm_up(app, log_to=log) -> None:
    """Start-up work for a server: load each spoken language's model, render static prompts."""
    sp = app.extensions["ivr.speech"]
    flows = list(app.extensions["ivr"].flows.values())
    langs = sorted({lang for f in flows for lang in f.languages if sp.available(lang)})
    for lang in langs:
        sp.models.get(lang)
    new, old = sp.prompts.prerender(flows)
    log_to.info("speech: models loaded for %s; prompts rendered %d, cached %d", ", ".join(langs) or "none", new, old)


# -- the WebSocket ----------------------------------------------------------------
@bp.before_request
def _signed_upgrade():
    """Refuse the handshake before it is accepted: Twilio signs the stream URL with no parameters."""
    if request.endpoint != "media.stream":
        return None
    cfg = services().config
    url = services().twiml.stream_url()
    if not is_valid(cfg, url, {}, request.headers.get("X-Twilio-Signature", "")):
        log.warning("rejected media stream handshake: missing or invalid X-Twilio-Signature")
        abort(403, description="invalid or missing X-Twilio-Signature")
    return None


@bp.route("/media", endpoint="stream", websocket=True)
def stream_route():
    ws = InlineServer(request.environ, max_message_size=MAX_SOCKET_MESSAGE)
    try:
        stream(ws)
    finally:
        ws.finish()
    return websocket_response(ws)


def stream(ws):
    svc, sp = services(), speech()
    cfg = svc.config
    session = StreamSession(
        ws.send, FlowDialogue(svc), models=sp.models, prompts=sp.prompts, gather_timeout=cfg.gather_timeout,
        recordings_dir=recordings_dir(cfg), endpoint=EndpointConfig(end_silence_ms=cfg.endpoint_silence_ms),
        free_only=cfg.bench_asr == "free", vosk_endpoint=cfg.bench_endpoint == "vosk")
    error = None
    try:
        while not session.done:
            message = ws.receive(timeout=RECEIVE_TICK)
            if message is not None:
                session.handle(message)
            session.tick()
            if STOPPING.is_set():
                session.drain()
    except ConnectionClosed:
        if not session.done:
            error = "dropped"
            reason = getattr(ws, "close_reason", None)
            if getattr(ws, "incoming_message_len", 0) > MAX_SOCKET_MESSAGE:  # simple_websocket sent 1009
                log.warning("stream %s: closed, a message was over %d bytes; the caller goes to a person",
                            session._sid(), MAX_SOCKET_MESSAGE)
                error = "oversized"
            else:
                log.warning("stream %s: the socket dropped mid-call (close code %s); the caller goes to a person",
                            session._sid(), reason)
    except StreamFailure as exc:
        log.error("stream %s: %s failed (%s); the caller goes to a person", session._sid(), exc.where, exc,
                  exc_info=exc.__cause__ is not None)
        error = exc.where
    except Exception:  # noqa: BLE001 - the action webhook sends the caller to a person
        log.exception("stream %s: failed; the caller goes to a person", session._sid())
        error = "server"
    finally:
        if error and session.start is not None:
            count_failure(f"stream:{error}")
        session.close(error)


class FlowDialogue:
    """The stream's view of a call: the flow engine plus the Redis call record."""

    def __init__(self, svc):
        self.svc = svc
        self.sid = None
        self.stream_sid = None
        self.caller = ""
        self.turn = 0
        self.leg = 0          # streams of this call before this one that a stopping server handed off

    def _marker(self, name):
        return name if not self.leg else f"{name}:{self.leg}"

    def _load(self):
        record, _ = self.svc.store.load(self.sid)
        if not record or "state" not in record:
            raise LookupError(f"no record for call {self.sid}")
        conv = Conversation.from_dict(json.loads(record["state"]))
        conv.boost = record.get("boost") or None
        return record, conv, self.svc.engines[conv.flow]

    def begin(self, call_sid, custom) -> Turn:
        self.sid = call_sid
        record, conv, engine = self._load()
        self.caller = record.get("from", "")
        self.turn = int(record.get("turn") or 0)
        resume = str(custom.get("resume", "0"))
        self.leg = int(resume) if resume.isdigit() and int(resume) <= MAX_RESUMES else 0
        self.svc.store.record_once(self.sid, self._marker("stream_started"), {"stream": "live", "stream_leg": self.leg},
                                   "stream_started")
        prompts = json.loads(record.get("say") or "[]")
        expect = engine.expect(conv.step, conv.lang) if conv.step else None
        return self._turn(prompts, expect, None if expect else "handoff", conv, engine)

    def respond(self, inp, info) -> Turn:
        from .voice import finish_turn

        record, conv, engine = self._load()
        caller_turn = {"who": "caller", "input": inp.kind, "text": redact(inp.text), "confidence": inp.confidence,
                       "step": conv.step}
        if info.get("asr"):
            caller_turn["asr"] = info["asr"]
        reply = engine.handle(conv, inp)
        self.turn += 1
        finish_turn(self.sid, self.caller, self.turn, conv, reply, engine, caller_turn,
                    render=_stored_reply, extra={"turn": self.turn, "say": reply.prompts})
        end = "handoff" if reply.route is not None else "goodbye" if reply.hangup else None
        return self._turn(reply.prompts, reply.expect, end, conv, engine)

    @staticmethod
    def _turn(prompts, expect, end, conv, engine) -> Turn:
        phrases, open_ = grammar.for_step(engine.flow, expect, conv.lang) if expect is not None else ([], False)
        return Turn(prompts, expect, end=end, lang=conv.lang, grammar=phrases, open=open_)

    def close(self, outcome, stats) -> None:
        fields = dict(stats, stream=outcome)
        self.svc.store.record_once(self.sid, self._marker("stream_ended"), fields, "stream_ended")


def _stored_reply(reply) -> str:
    """What a stream turn stores in the replies hash (the keypad path stores TwiML)."""
    return json.dumps({"say": reply.prompts, "route": reply.route.__dict__ if reply.route else None,
                       "hangup": reply.hangup}, ensure_ascii=False)


# -- the <Connect action> ------------------------------------------------------------
@bp.post("/voice/stream-ended")
@twilio_signed
@fail_safe
def stream_ended():
    """The stream is over: hand off, hang up after the goodbye, or (anything unplanned) a person."""
    from .voice import finish_turn

    svc = services()
    sid = request.form.get("CallSid", "")
    if not sid or len(sid) > 64:
        abort(400, description="CallSid is missing or invalid")
    record, _ = svc.store.load(sid)
    if not record or "state" not in record:
        raise LookupError(f"no record for call {sid}")
    flow, lang = svc.flow_for_record(record)
    locale = flow.say_locale(lang)
    turn = int(record.get("turn") or 0)
    outcome = record.get("stream", "")
    if record.get("handoff_at") and record.get("queue"):
        # The bot already routed the caller (and said so): connect them the configured way.
        resp = svc.twiml.handoff(VoiceResponse(), sid=sid, turn=turn + 1, queue=record["queue"])
        return twiml(str(resp))
    if outcome == "goodbye":
        if svc.config.feedback and record.get("answered") == "1":
            # The bot served this caller by voice; the rating is asked by key, like on the keypad path.
            return twiml(svc.twiml.ask_rating([], flow.message("rating", lang), "", sid=sid, after="bot",
                                              locale=locale))
        resp = VoiceResponse()
        resp.hangup()
        return twiml(str(resp))
    if outcome == "shutdown":
        # The server holding the stream was stopping (deploy, scale-in) and ended it at a pause: this
        # process reconnects the caller to the bot, which repeats its last prompt and goes on.
        leg = int(record.get("stream_leg") or 0) + 1
        step = Conversation.from_dict(json.loads(record["state"])).step
        if step and leg <= MAX_RESUMES and speech_for(flow, lang, sid):
            log.info("call %s: its stream's server stopped; reconnecting to the bot (stream %d)", sid, leg + 1)
            return twiml(svc.twiml.stream(params={"flow": flow.id, "lang": lang, "resume": str(leg)}))
    # Mid-conversation, dropped, server error, no stop event: never drop the caller.
    log.warning("call %s: media stream ended unexpectedly (stream=%s); connecting a person", sid, outcome or "none")
    conv = Conversation.from_dict(json.loads(record["state"]))
    conv.boost = record.get("boost") or None
    engine = svc.engines[conv.flow]
    conv.step = None
    reply = Reply([flow.message("error", lang)], route=Route("normal", "stream_failed"),
                  decision=Decision(None, 0.0, "handoff", f"media stream ended: {outcome or 'no outcome'}"))
    return twiml(finish_turn(sid, record.get("from", ""), f"stream-ended:{turn}", conv, reply, engine,
                             render=lambda r: svc.twiml.reply(r, sid=sid, turn=turn + 1, locale=locale),
                             extra={"turn": turn + 1}))
