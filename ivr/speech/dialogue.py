"""The media stream's view of a call: the flow engine and the Redis call record, one turn at a time.

StreamSession asks `begin` when Twilio's `start` arrives, `respond` for every
caller input, `close` when the stream ends; each answer is a session Turn
(prompts, grammar for the next utterance, or how the stream ends). The turn
itself is ivr.turn's, exactly as for a keypad webhook; a stream turn stores
its reply as JSON (what was said, where it went) instead of TwiML.
"""
from __future__ import annotations

import json

from .. import turn as call_turn
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

    def begin(self, call_sid, custom) -> Turn:
        self.sid = call_sid
        state = self._load()
        self.turn = int(state.record.get("turn") or 0)
        resume = str(custom.get("resume", "0"))
        self.leg = int(resume) if resume.isdigit() and int(resume) <= MAX_RESUMES else 0
        self.svc.store.record_once(self.sid, self._marker("stream_started"), {"stream": "live", "stream_leg": self.leg},
                                   "stream_started")
        prompts = json.loads(state.record.get("say") or "[]")
        conv = state.conv
        expect = state.engine.expect(conv.step, conv.lang) if conv.step else None
        return self._turn(prompts, expect, None if expect else "handoff", state)

    def respond(self, inp, info) -> Turn:
        state = self._load()
        reply, entry = call_turn.step(state, inp, asr=info.get("asr"))
        self.turn += 1
        call_turn.commit(self.svc, state, self.turn, reply, stored_reply(reply), entry,
                         extra={"turn": self.turn, "say": reply.prompts})
        end = "handoff" if reply.route is not None else "goodbye" if reply.hangup else None
        return self._turn(reply.prompts, reply.expect, end, state)

    @staticmethod
    def _turn(prompts, expect, end, state) -> Turn:
        conv = state.conv
        phrases, open_ = grammar.for_step(state.engine.flow, expect, conv.lang) if expect is not None else ([], False)
        return Turn(prompts, expect, end=end, lang=conv.lang, grammar=phrases, open=open_)

    def close(self, outcome, stats) -> None:
        fields = dict(stats, stream=outcome)
        self.svc.store.record_once(self.sid, self._marker("stream_ended"), fields, "stream_ended")


def stored_reply(reply) -> str:
    """What a stream turn stores in the replies hash (the keypad path stores TwiML)."""
    return json.dumps({"say": reply.prompts, "route": reply.route.__dict__ if reply.route else None,
                       "hangup": reply.hangup}, ensure_ascii=False)
