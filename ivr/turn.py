"""One caller turn, whatever carried it: a key press on a Twilio webhook or words on a media stream.

A turn is: the conversation rebuilt from the call record, one engine step, and
the result applied to Redis in one atomic script (state, transcript, transfer,
queue entry, unanswered log, event) together with the reply that was sent, so
a retried delivery returns the same reply and changes nothing. The transports
(ivr.web.voice for keypads, ivr.speech.dialogue for media streams) only turn
their input into an `Input` and the reply into their own output.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import partial

from . import data_sources, metrics, quality
from .flows.engine import Conversation, Engine, Input, Reply
from .redact import redact

log = logging.getLogger("ivr.turn")


@dataclass
class CallState:
    """A live call as the engine needs it: its record, its conversation, its flow's engine."""
    sid: str
    record: dict
    conv: Conversation
    engine: Engine
    lookup: object   # (source, value) -> record: the flow's data sources, over HTTP, with this deployment's credentials

    @property
    def caller(self) -> str:
        return self.record.get("from", "")


def resume(svc, sid: str, record: dict) -> CallState:
    """The conversation where the last turn left it. LookupError when the record has none."""
    if not record or "state" not in record:
        raise LookupError(f"no record for call {sid}")
    conv = Conversation.from_dict(json.loads(record["state"]))
    conv.boost = record.get("boost") or None      # set once when the call opened; kept in the record
    engine = svc.library.engine(conv.flow, record.get("flow_version"))   # the version the call began on
    conv.closed = svc.closed(engine.flow)          # opening hours at this turn's moment
    return CallState(sid, record, conv, engine, _lookup(svc))


def start(svc, sid: str, record: dict, flow, lang: str, boost, mode: str = "keypad") -> tuple:
    """A new call: (CallState, the engine's greeting). `mode`: "speech" when the call talks over
    a media stream, "keypad" otherwise; the flow's prompts are worded for it."""
    engine = svc.library.engine(flow.id, flow.version)
    conv = Conversation(flow.id, lang, boost=boost, mode=mode, closed=svc.closed(flow))
    return CallState(sid, record, conv, engine, _lookup(svc)), engine.start(conv)


def _lookup(svc):
    """Data-source lookups with this deployment's credentials (Config.source_secrets)."""
    return partial(data_sources.lookup, secrets=svc.config.source_secrets)


def caller_entry(inp: Input, step, **info) -> dict:
    """The transcript entry for what the caller did (card-like digits removed)."""
    entry = {"who": "caller", "input": inp.kind, "text": redact(inp.text), "confidence": inp.confidence,
             "step": step}
    entry.update({k: v for k, v in info.items() if v})
    return entry


def step(state: CallState, inp: Input, **info) -> tuple:
    """Run the engine on one input: (reply, transcript entry of the caller's side). A slot looked up in
    a data source is fetched over HTTP here, inside the turn (ivr.data_sources: a short timeout)."""
    entry = caller_entry(inp, state.conv.step, **info)
    return state.engine.handle(state.conv, inp, lookup=state.lookup), entry


def unanswered(state: CallState, entry: dict | None, reply: Reply) -> bool:
    """A spoken question the bot could not place (asked again, or handed over for it):
    what `ivr unanswered` lists. Frustration is not a question, nor a hello or a pardon (fillers)."""
    decision = reply.decision
    matcher = state.engine.matchers[state.conv.lang]
    text = (entry or {}).get("text", "")
    return (entry is not None and entry.get("input") == "speech" and decision is not None
            and decision.intent is None and decision.action in ("clarify", "handoff")
            and not matcher.is_frustrated(text) and not (text.strip() and not matcher.without_fillers(text)))


def commit(svc, state: CallState, turn, reply: Reply, rendered: str, entry: dict | None = None,
           extra: dict | None = None) -> str:
    """Apply the turn to Redis in one script; return what to send: `rendered`, or the reply
    an earlier delivery of the same turn already stored (then nothing changes)."""
    conv, sid = state.conv, state.sid
    now = svc.store.now()
    conv_state = conv.to_dict()
    conv_state.pop("boost", None)  # lives in the record, set once when the call opens
    conv_state.pop("closed", None)  # decided afresh at every turn
    fields = {"state": conv_state, "step": conv.step or "", "misses": conv.misses, "updated_at": now,
              **(extra or {})}
    decision = reply.decision
    if reply.answered:
        fields["answered"] = 1
    ops = []
    if reply.route is not None and reply.route.after_hours:
        # Nobody to take the call: the caller is offered a call back or a message (ivr.web.callback);
        # the queue and reason are kept, so a call back keeps its priority.
        fields.update(status="closed_offer", queue=reply.route.queue, reason=reply.route.reason, handoff_at=now,
                      boosted_by=reply.route.boosted_by, after_hours=1)
    elif reply.route is not None:
        queued = svc.config.handoff_mode == "queue"
        fields.update(status="queued" if queued else "dialing", queue=reply.route.queue, reason=reply.route.reason,
                      handoff_at=now, boosted_by=reply.route.boosted_by)
        if queued:
            fields["enqueued_at"] = now
            ops += svc.queues.join_ops(reply.route.queue, sid, now)
    elif reply.hangup:
        fields["status"] = "ending"
    if unanswered(state, entry, reply):
        ops += quality.unanswered_ops(entry.get("text", ""), conv.flow, conv.lang, now, svc.config.retention_seconds)
    turns = []
    if entry is not None:
        entry.update(ts=now, intent=decision.intent if decision else None,
                     intent_confidence=decision.confidence if decision else None,
                     decision=decision.action if decision else None, detail=decision.detail if decision else "")
        turns.append(entry)
    turns.append({"who": "bot", "text": reply.text, "step": conv.step, "ts": now,
                  "route": reply.route.__dict__ if reply.route else None})
    earlier = svc.store.apply_turn(
        sid, state.caller, turn, rendered, fields, turns=turns, transfer=reply.route is not None,
        event="handoff" if reply.route is not None else "turn", ops=ops,
        data={"step": conv.step, "decision": decision.action if decision else None,
              "intent": decision.intent if decision else None})
    if reply.route is not None and earlier is None:
        metrics.HANDOFFS.labels(queue=reply.route.queue, reason=reply.route.reason or "").inc()
        log.info("call %s handed off: queue=%s reason=%s%s", sid, reply.route.queue, reply.route.reason,
                 " (out of hours: call back or message)" if reply.route.after_hours else "")
    return earlier or rendered
