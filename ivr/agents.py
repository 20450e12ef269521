"""Agents: who may take callers on the agent line, and who is on which call right now.

The agent line (POST /voice/agent) bridges whoever calls it to the next waiting caller and
tells them what that caller said, so it must admit agents only. An agent is registered with
`ivr agents add NAME +E164 [--pin]`; the line admits a call only from a registered number and,
when that agent has a PIN, only after the PIN is keyed in. Caller ID can be spoofed on the
phone network, so a PIN is what actually keeps strangers out; the number alone keeps out
wrong numbers. Refusals are logged (number masked) and counted per day.

Keys (keys.py): `ivr:agents` (the registry, kept until removed, like operator accounts; PINs as
argon2 hashes), `ivr:agent_line:{CallSid}` (one agent-line call: admitted, refused, its turn),
`ivr:agent_pin_failures:{name}` (PIN attempts of one agent across calls: the lock),
`ivr:agents:seen` (when an idle agent last polled the line: they are available),
`ivr:agents:calls` (caller sid -> which agent is with them since when).

PIN guessing: a call is refused after MAX_PIN_FAILURES wrong PINs and stays refused, and every
attempt is counted per agent, across calls, before the PIN is checked (like the dashboard's login
lock-out): after `pin_max_failures` of them without a success, that agent's PIN entry is locked
until `pin_lock_seconds` pass without an attempt. So a new call for every few guesses gains nothing.

Replays: every request of an admitted call carries a turn number the server gave it (in the URL
its previous answer sent Twilio to; Twilio signs the URL), and each turn takes at most one caller.
The same signed request again, a Twilio retry or a replay of captured traffic, is no new turn.

Being on a call is keyed by the caller so that every way a bridge can end (the caller's queue
result, their status callback, the agent's own line) clears it with an unconditional op joined into
that call's atomic script.
"""
from __future__ import annotations

import json
import re
import time
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from . import keys

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
NUMBER_RE = re.compile(r"^\+[1-9]\d{6,14}$")
PIN_RE = re.compile(r"^\d{4,8}$")
LINE_TTL = 12 * 3600          # an agent-line call stays known (admitted, refused, its turn) 12 h after its last request
PRESENT_SECONDS = 30          # an idle agent polls every ~5 s; silent longer means they hung up
MAX_PIN_FAILURES = 3          # wrong PINs one call may key in before it is refused
PIN_MAX_FAILURES = 5          # PIN attempts without a success, across calls, that lock an agent's PIN entry ...
PIN_LOCK_SECONDS = 900        # ... until this long passes without an attempt (Config: IVR_AGENT_PIN_*)

# One PIN attempt on the agent line, counted before the PIN is checked. A call refused before stays
# refused; otherwise the agent's counter goes up (and lives `lock` seconds from now, so an attacker who
# keeps trying keeps the lock) and the PIN may be checked only while it is within the limit. Returns
# "refused" (this call), "locked" (the agent; the call is refused from now on) or "check".
_PIN_ATTEMPT = """
local line, agent = KEYS[1], KEYS[2]
local per_call, max, lock, line_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('HEXISTS', line, 'refused') == 1
    or tonumber(redis.call('HGET', line, 'pin_failures') or '0') >= per_call then
  return 'refused'
end
local n = redis.call('INCR', agent)
redis.call('EXPIRE', agent, lock)
if n > max then
  redis.call('HSET', line, 'refused', 'pin locked')
  redis.call('EXPIRE', line, line_ttl)
  return 'locked'
end
return 'check'
"""

# The PIN just checked was wrong (its attempt is counted already). Returns {failures on this call,
# 1 when the agent's attempts reached the limit}; either way over its limit refuses the call for good.
_PIN_FAILED = """
local line, agent = KEYS[1], KEYS[2]
local per_call, max, line_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local failures = redis.call('HINCRBY', line, 'pin_failures', 1)
local locked = tonumber(redis.call('GET', agent) or '0') >= max
if failures >= per_call or locked then redis.call('HSET', line, 'refused', 'wrong PIN') end
redis.call('EXPIRE', line, line_ttl)
return {failures, locked and 1 or 0}
"""

# One request of an admitted agent-line call, numbered `turn` by the answer that sent Twilio here. The
# turn the line expects is taken (the next one is expected from now on); any other is a repeat. Returns
# {1 taken | 0 a repeat, the turn the line expects now}.
_TURN = """
local line, turn, line_ttl = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local expected = tonumber(redis.call('HGET', line, 'turn') or '0')
redis.call('EXPIRE', line, line_ttl)
if turn ~= expected then return {0, expected} end
redis.call('HSET', line, 'turn', expected + 1)
return {1, expected + 1}
"""

_hasher = PasswordHasher()


class AgentError(ValueError):
    pass


def check_name(name: str) -> str:
    name = (name or "").strip().lower()
    if not NAME_RE.match(name):
        raise AgentError("agent names are 1-32 characters: a-z, 0-9, dot, dash, underscore")
    return name


class Agents:
    def __init__(self, redis, clock=time.time, pin_max_failures: int = PIN_MAX_FAILURES,
                 pin_lock_seconds: int = PIN_LOCK_SECONDS):
        self.r = redis
        self.clock = clock
        self.pin_max_failures = max(1, int(pin_max_failures))
        self.pin_lock_seconds = max(1, int(pin_lock_seconds))
        self._pin_attempt = redis.register_script(_PIN_ATTEMPT)
        self._pin_failed = redis.register_script(_PIN_FAILED)
        self._turn = redis.register_script(_TURN)

    # -- the registry (ivr agents add|list|remove) -------------------------------------------
    def add(self, name: str, number: str, pin: str | None = None, replace: bool = False) -> str:
        name = check_name(name)
        number = (number or "").strip()
        if not NUMBER_RE.match(number):
            raise AgentError(f"{number!r} is not an E.164 number (+ and country code, e.g. +15551234567)")
        if pin is not None and not PIN_RE.match(pin):
            raise AgentError("a PIN is 4 to 8 digits")
        existing = self.all()
        if name in existing and not replace:
            raise AgentError(f"agent {name} already exists (use --replace)")
        other = next((n for n, a in existing.items() if a["number"] == number and n != name), None)
        if other:
            raise AgentError(f"{number} is already registered to agent {other}")
        value = {"number": number, "pin": _hasher.hash(pin) if pin else "", "added_at": round(self.clock())}
        pipe = self.r.pipeline()
        pipe.hset(keys.AGENTS, name, json.dumps(value))
        pipe.delete(keys.agent_pin_failures(name))        # a new PIN (or none) starts without a lock
        pipe.execute()
        return name

    def remove(self, name: str) -> bool:
        name = check_name(name)
        pipe = self.r.pipeline()
        pipe.hdel(keys.AGENTS, name)
        pipe.delete(keys.agent_pin_failures(name))
        return pipe.execute()[0] > 0

    def unlock(self, name: str) -> bool:
        """Lift a lock on the agent's PIN entry (and forget their PIN attempts); True if there were any."""
        return self.r.delete(keys.agent_pin_failures(check_name(name))) > 0

    def pin_locked(self, name: str) -> int:
        """Seconds until the agent's PIN entry unlocks by itself when it is locked now, else 0."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(keys.agent_pin_failures(name))
        pipe.ttl(keys.agent_pin_failures(name))
        attempts, ttl = pipe.execute()
        return max(1, ttl) if int(attempts or 0) >= self.pin_max_failures else 0

    def all(self) -> dict:
        out = {}
        for name, raw in self.r.hgetall(keys.AGENTS).items():
            try:
                out[name] = json.loads(raw)
            except ValueError:
                continue
        return out

    def by_number(self, number: str) -> dict | None:
        """The registered agent calling from `number`: {"name", "number", "pin"} or None."""
        for name, agent in self.all().items():
            if number and agent.get("number") == number:
                return dict(agent, name=name)
        return None

    @staticmethod
    def pin_ok(agent: dict, pin: str) -> bool:
        try:
            return bool(agent.get("pin")) and _hasher.verify(agent["pin"], pin or "")
        except (VerificationError, InvalidHashError):
            return False

    # -- one agent-line call ----------------------------------------------------------------
    def admitted(self, agent_call: str) -> str | None:
        return self.r.hget(keys.agent_line(agent_call), "name")

    def admit(self, agent_call: str, name: str) -> None:
        key = keys.agent_line(agent_call)
        pipe = self.r.pipeline()
        pipe.hset(key, mapping={"name": name, "admitted_at": self.clock()})
        pipe.expire(key, LINE_TTL)
        pipe.execute()

    def pin_attempt(self, agent_call: str, name: str) -> str:
        """Count one PIN attempt of agent `name` on call `agent_call`, BEFORE the PIN is checked:
        "check" (go on and check it), "refused" (this call was refused before and stays so) or
        "locked" (too many attempts for this agent lately, across calls: nothing is checked)."""
        return self._pin_attempt(keys=[keys.agent_line(agent_call), keys.agent_pin_failures(name)],
                                 args=[MAX_PIN_FAILURES, self.pin_max_failures, self.pin_lock_seconds, LINE_TTL])

    def pin_failed(self, agent_call: str, name: str) -> tuple:
        """The PIN was wrong: (wrong PINs on this call, whether the agent's PIN entry is locked now).
        The call is refused for good when either is at its limit."""
        failures, locked = self._pin_failed(keys=[keys.agent_line(agent_call), keys.agent_pin_failures(name)],
                                            args=[MAX_PIN_FAILURES, self.pin_max_failures, LINE_TTL])
        return int(failures), bool(locked)

    def pin_succeeded(self, name: str) -> None:
        """The right PIN: the agent's attempts start afresh."""
        self.r.delete(keys.agent_pin_failures(name))

    def take_turn(self, agent_call: str, turn: int) -> tuple:
        """Request `turn` of an admitted call: (True, next turn) when it is the turn the line expects,
        now taken; (False, the expected turn) for a repeat (a Twilio retry, a replay), which must
        claim nobody."""
        taken, expected = self._turn(keys=[keys.agent_line(agent_call)], args=[int(turn), LINE_TTL])
        return bool(taken), int(expected)

    def refused(self, now: float) -> int:
        """Count one refusal on the agent line (per local day); returns today's count."""
        key = keys.counts(datetime.fromtimestamp(now).strftime("%Y-%m-%d"))
        pipe = self.r.pipeline()
        pipe.hincrby(key, "agent_line_refused", 1)
        pipe.expire(key, keys.LONG_TTL)
        return pipe.execute()[0]

    def refused_today(self, now: float) -> int:
        key = keys.counts(datetime.fromtimestamp(now).strftime("%Y-%m-%d"))
        return int(self.r.hget(key, "agent_line_refused") or 0)

    # -- presence and calls -----------------------------------------------------------------
    def seen(self, name: str, now: float) -> None:
        pipe = self.r.pipeline()
        pipe.zadd(keys.AGENTS_SEEN, {name: now})
        pipe.expire(keys.AGENTS_SEEN, 86400)
        pipe.execute()

    @staticmethod
    def on_call_ops(caller_sid: str, name: str, agent_call: str, since: float) -> list:
        """The agent `name` is now talking to `caller_sid` (joined into that call's script)."""
        value = json.dumps({"agent": name, "since": since, "agent_call": agent_call})
        return [["HSET", keys.AGENTS_CALLS, caller_sid, value], ["EXPIRE", keys.AGENTS_CALLS, 86400]]

    @staticmethod
    def off_call_ops(caller_sid: str) -> list:
        return [["HDEL", keys.AGENTS_CALLS, caller_sid]]

    def off_call_by_agent_call(self, agent_call: str) -> None:
        """The agent's own line says the bridge ended (the caller's side may say so too)."""
        for caller, raw in self.r.hgetall(keys.AGENTS_CALLS).items():
            if json.loads(raw).get("agent_call") == agent_call:
                self.r.hdel(keys.AGENTS_CALLS, caller)

    def status(self, now: float) -> dict:
        """For the dashboard: each agent's state (on_call with whom since when, available, away)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(keys.AGENTS)
        pipe.zrangebyscore(keys.AGENTS_SEEN, now - PRESENT_SECONDS, "+inf")
        pipe.hgetall(keys.AGENTS_CALLS)
        registry, present, calls = pipe.execute()
        busy = {}
        for caller, raw in calls.items():
            try:
                value = json.loads(raw)
            except ValueError:
                continue
            busy[value.get("agent")] = {"caller": caller, "since": value.get("since")}
        rows = []
        for name in sorted(set(registry) | set(busy)):
            if name in busy:
                rows.append({"name": name, "state": "on_call", **busy[name]})
            else:
                rows.append({"name": name, "state": "available" if name in present else "away",
                             "caller": None, "since": None})
        return {"agents": rows, "registered": len(registry),
                "on_call": sum(r["state"] == "on_call" for r in rows),
                "available": sum(r["state"] == "available" for r in rows)}
