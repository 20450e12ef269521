"""Callbacks: callers who asked to be called back, until somebody has (or we gave up).

A caller asks for a call back while waiting in a queue (press 1 after IVR_CALLBACK_AFTER), or
out of hours instead of a queue nobody serves. Like ivr.queues, this concept owns its Redis keys
and every change to them, returned as (fields, ops) to join the call's own atomic script
(CallStore.record_once with a marker): a retried webhook or a double click changes nothing twice.

Keys (keys.py): `ivr:callbacks` (waiting: sid -> place) and `ivr:callbacks:failed` (sid -> when
we gave up). The place is the moment the caller first joined the queue (or asked, out of hours),
so a callback keeps the caller's place: the agent line (ivr.queues.Queues.claim_next) takes
the longest-waiting callback before callers who joined the queue after it.

Record fields (`callback_*`), and how a callback moves:

    waiting --attempt--> calling --caller answers--> (answered) --a person picks up--> done
        ^                   |   busy / no-answer / failed: waiting again after
        |                   |   IVR_CALLBACK_RETRY_SECONDS, or failed after IVR_CALLBACK_MAX_ATTEMPTS
        +--- nobody free ---+   (the caller answered but no person came: waiting, not a failure)
    waiting | failed --operator "done"--> done           failed --"Call back now"--> calling

`done` and `failed` leave the waiting list; a failed one stays in sight (ivr:callbacks:failed)
until an operator closes it. Every attempt, result and operator action is also written into
the call's transcript, with who did it, so the call page's timeline keeps the whole history.

Calls are placed through Twilio's REST API (ivr.twilio_api) by `Dialer.call_back`; the TwiML
the answered call runs is ivr.web.callback's.
"""
from __future__ import annotations

import logging
import re

from . import keys
from .calls import entry_ops, withheld
from .redact import mask_phone

log = logging.getLogger("ivr.callbacks")

FAILED_RESULTS = ("busy", "no-answer", "failed", "canceled")
OPEN_STATES = ("waiting", "calling", "failed")
# An attempt whose result never came (a status callback lost on the way) stops blocking after this.
STALE_CALLING_SECONDS = 600
E164 = re.compile(r"\+[1-9]\d{6,14}")


class CallbackError(RuntimeError):
    """The call back could not be placed (nothing to call, no Twilio account, Twilio refused)."""


def reachable(number: str | None) -> bool:
    """A caller ID we can ring back: an E.164 number, not withheld or one of Twilio's placeholders."""
    return bool(number) and E164.fullmatch(number) is not None and not withheld(number)


def is_open(record: dict) -> bool:
    return record.get("callback_state") in OPEN_STATES


# -- changes, as (fields, ops) for the call's atomic script -------------------------------------
def request(sid: str, *, place: float, queue: str, now: float, ttl: int, after_hours: bool = False) -> tuple:
    """The caller asked to be called back; `place` orders them against the queue (its join time)."""
    fields = {"callback_state": "waiting", "callback_requested_at": now, "callback_place": place,
              "callback_queue": queue, "callback_after_hours": 1 if after_hours else None,
              "callback_attempts": 0, "callback_failures": 0}
    ops = [["ZADD", keys.CALLBACKS, place, sid], ["EXPIRE", keys.CALLBACKS, ttl]]
    return fields, ops


def attempt(sid: str, n: int, *, by: str, via: str, now: float, ttl: int) -> tuple:
    """Attempt `n` is being placed by `by` (an operator or an agent), from `via`."""
    fields = {"callback_state": "calling", "callback_attempts": n, "callback_by": by, "callback_last_at": now,
              "callback_last_result": ""}
    ops = entry_ops(sid, {"who": "operator", "operator": by, "action": "callback_attempt", "attempt": n,
                          "via": via, "ts": now}, ttl)
    return fields, ops


def result(sid: str, record: dict, n: int, outcome: str, *, now: float, ttl: int, max_attempts: int,
           retry_seconds: int) -> tuple:
    """Twilio's answer about attempt `n`: answered, busy, no-answer, failed (canceled counts as failed)."""
    outcome = "failed" if outcome == "canceled" else outcome
    fields = {"callback_last_result": outcome}
    ops = entry_ops(sid, {"who": "system", "action": "callback_result", "attempt": n, "result": outcome,
                          "ts": now}, ttl)
    if outcome in FAILED_RESULTS:
        failures = int(record.get("callback_failures") or 0) + 1
        fields["callback_failures"] = failures
        if failures >= max_attempts:
            fields.update(callback_state="failed", callback_failed_at=now)
            ops += [["ZREM", keys.CALLBACKS, sid], ["ZADD", keys.CALLBACKS_FAILED, now, sid],
                    ["EXPIRE", keys.CALLBACKS_FAILED, ttl]]
        else:
            fields.update(callback_state="waiting", callback_next_at=now + retry_seconds)
            # Back on the list (a failed one that was called again from the dashboard included).
            ops += [["ZADD", keys.CALLBACKS, record.get("callback_place") or now, sid],
                    ["EXPIRE", keys.CALLBACKS, ttl], ["ZREM", keys.CALLBACKS_FAILED, sid]]
    return fields, ops


def reached(sid: str, *, by: str, now: float, ttl: int) -> tuple:
    """A person is on the line with the caller: the callback is done."""
    fields = {"callback_state": "done", "callback_done_at": now, "callback_done_by": by}
    ops = [["ZREM", keys.CALLBACKS, sid], ["ZREM", keys.CALLBACKS_FAILED, sid]] + entry_ops(
        sid, {"who": "system", "action": "callback_reached", "operator": by, "ts": now}, ttl)
    return fields, ops


def no_person(sid: str, record: dict, *, now: float, ttl: int) -> tuple:
    """The caller answered, but no person came to the line: back on the list (not their failure)."""
    fields = {"callback_state": "waiting", "callback_last_result": "no-person"}
    ops = [["ZADD", keys.CALLBACKS, record.get("callback_place") or now, sid], ["EXPIRE", keys.CALLBACKS, ttl],
           ["ZREM", keys.CALLBACKS_FAILED, sid]] + entry_ops(
        sid, {"who": "system", "action": "callback_no_person", "ts": now}, ttl)
    return fields, ops


def close(sid: str, *, operator: str, now: float, ttl: int) -> tuple:
    """An operator marks the callback done (reached some other way, or nothing more to do)."""
    fields = {"callback_state": "done", "callback_done_at": now, "callback_done_by": operator}
    ops = [["ZREM", keys.CALLBACKS, sid], ["ZREM", keys.CALLBACKS_FAILED, sid]] + entry_ops(
        sid, {"who": "operator", "operator": operator, "action": "callback_done", "ts": now}, ttl)
    return fields, ops


# -- placing the call ---------------------------------------------------------------------------
class Dialer:
    """Places call backs through Twilio's REST API and records each attempt."""

    def __init__(self, store, api, twiml, config):
        self.store = store
        self.api = api                # ivr.twilio_api.TwilioApi
        self.twiml = twiml            # for the absolute, signed-by-Twilio callback URLs
        self.config = config

    def call_back(self, sid: str, *, by: str, via: str, agent: str | None = None) -> int:
        """Ring the caller back; returns the attempt number. `agent`: bridge them to this agent
        (who waits on the agent line); otherwise to the human line. CallbackError when it cannot."""
        record, _ = self.store.load(sid)
        if not record or not is_open(record):
            raise CallbackError("this call has no open call back")
        now = self.store.now()
        last = float(record.get("callback_last_at") or 0)
        if record.get("callback_state") == "calling" and now - last < STALE_CALLING_SECONDS:
            raise CallbackError("a call back to this caller is already being placed")
        number = record.get("from", "")
        if not reachable(number):
            raise CallbackError("the caller's number is withheld or not a phone number")
        if not self.api.available:
            raise CallbackError("call backs need TWILIO_ACCOUNT_SID (and the auth token or an API key)")
        n = int(record.get("callback_attempts") or 0) + 1
        ttl = self.config.retention_seconds
        fields, ops = attempt(sid, n, by=by, via=via, now=now, ttl=ttl)
        if self.store.record_once(sid, f"callback:{n}:attempt", fields, "callback_attempt", ops=ops) != 1:
            raise CallbackError("a call back to this caller is already being placed")
        params = {"sid": sid, "attempt": n, "agent": agent}
        try:
            call = self.api.place_call(
                to=number, from_=self.config.callback_from or record.get("to") or "",
                url=self.twiml.url("/voice/callback/answer", **params),
                status_callback=self.twiml.url("/voice/callback/status", sid=sid, attempt=n))
        except Exception as exc:
            log.warning("call back %d to %s for call %s failed to start: %s", n, mask_phone(number), sid,
                        type(exc).__name__)
            self.record_result(sid, n, "failed")
            raise CallbackError(f"Twilio did not place the call ({type(exc).__name__})") from exc
        self.store.record_once(sid, f"callback:{n}:placed", {"callback_call": call}, "callback_placed")
        log.info("call back %d for call %s placed by %s via %s (to %s)", n, sid, by, via, mask_phone(number))
        return n

    def record_result(self, sid: str, n: int, outcome: str) -> int:
        """Attempt `n`'s result, once (the status callback and the answer webhook may both report it)."""
        record, _ = self.store.load(sid)
        if not record or int(record.get("callback_attempts") or 0) != n:
            return 0
        fields, ops = result(sid, record, n, outcome, now=self.store.now(), ttl=self.config.retention_seconds,
                             max_attempts=self.config.callback_max_attempts,
                             retry_seconds=self.config.callback_retry_seconds)
        return self.store.record_once(sid, f"callback:{n}:result", fields, "callback_result", ops=ops)
