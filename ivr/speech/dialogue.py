"""The media stream's view of a call: the flow engine and the Redis call record, one turn at a time.

StreamSession asks `admit` when Twilio's `start` arrives (is this stream the call's?
ivr/streamauth.py), then `begin`, `respond` for every
caller input, `close` when the stream ends; each answer is a session Turn
(prompts, grammar for the next utterance, or how the stream ends). The turn
itself is ivr.turn's, exactly as for a keypad webhook; a stream turn stores
its reply as JSON (what was said, where it went) instead of TwiML.
"""
from __future__ import annotations

import json

from .. import streamauth
from .. import turn as call_turn
from ..calls import is_call_sid
from . import grammar
from .session import Turn

# A call the server hands off on shutdown reconnects to the bot at most this many times, then a person.
MAX_RESUMES = 3


class FlowDialogue:
    def __init__(self, svc):
        self.svc = svc
        self.sid = None
        self.turn = 0
        self.leg = 0          # streams of this call before this one that a stopping server handed off

    def _marker(self, name):
        return name if not self.leg else f"{name}:{self.leg}"

    def _load(self) -> call_turn.CallState:
        record, _ = self.svc.store.load(self.sid)
        return call_turn.resume(self.svc, self.sid, record)

    def admit(self, call_sid, custom) -> None:
        """Claim the call for this stream, or raise StreamRefused having changed nothing: the
        `start` must name a CallSid and carry the credential ivr issued for it (ivr/streamauth.py)."""
        if not is_call_sid(call_sid):
            raise streamauth.StreamRefused("bad_call_sid")
        leg = streamauth.verify(self.svc.keyring.stream_key, call_sid, custom.get(streamauth.PARAMETER),
                                self.svc.clock())
        if leg > MAX_RESUMES:
            raise streamauth.StreamRefused("bad_credential")
        self.sid, self.leg = call_sid, leg
        claimed = self.svc.store.claim_stream(call_sid, leg, self._marker("stream_started"))
        if claimed != "ok":
            raise streamauth.StreamRefused(claimed)

    def begin(self) -> Turn:
        """The admitted call's greeting (leg 0) or its last prompt again (a resumed call)."""
        state = self._load()
        self.turn = int(state.record.get("turn") or 0)
        prompts = json.loads(state.record.get("say") or "[]")
        conv = state.conv
        expect = state.engine.expect(conv.step, conv.lang) if conv.step else None
        return self._turn(prompts, expect, None if expect else "handoff", state)

    def respond(self, inp, info) -> Turn:
        state = self._load()
        reply, entry = call_turn.step(state, inp, asr=info.get("asr"))
        self.turn += 1
        extra, spoken = {"turn": self.turn, "say": reply.prompts}, reply.prompts
        if rating_follows(self.svc, reply, state.record):
            # The rating is asked by key once the stream ends (/voice/stream-ended), and the goodbye
            # comes after its question, as on the keypad: the stream says what comes before it. The
            # transcript keeps the whole reply, as a keypad turn's does.
            spoken, extra["goodbye"] = reply.prompts[:-1], reply.prompts[-1]
        call_turn.commit(self.svc, state, self.turn, reply, stored_reply(reply), entry, extra=extra)
        end = "handoff" if reply.route is not None else "goodbye" if reply.hangup else None
        return self._turn(spoken, reply.expect, end, state)

    @staticmethod
    def _turn(prompts, expect, end, state) -> Turn:
        conv = state.conv
        phrases, open_ = grammar.for_step(state.engine.flow, expect, conv.lang) if expect is not None else ([], False)
        return Turn(prompts, expect, end=end, lang=conv.lang, grammar=phrases, open=open_)

    def close(self, outcome, stats) -> None:
        fields = dict(stats, stream=outcome)
        self.svc.store.record_once(self.sid, self._marker("stream_ended"), fields, "stream_ended")


def rating_follows(svc, reply, record) -> bool:
    """The call ends here with a goodbye after the bot served the caller: the rating question comes
    first (ivr.web.voice.render_keypad decides the same for keypad calls)."""
    return (reply.hangup and reply.route is None and bool(reply.prompts) and svc.config.feedback
            and (reply.answered or record.get("answered") == "1"))


def stored_reply(reply) -> str:
    """What a stream turn stores in the replies hash (the keypad path stores TwiML)."""
    return json.dumps({"say": reply.prompts, "route": reply.route.__dict__ if reply.route else None,
                       "hangup": reply.hangup}, ensure_ascii=False)
