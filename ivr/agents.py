"""Agents: who may take callers on the agent line, and who is on which call right now.

The agent line (POST /voice/agent) bridges whoever calls it to the next waiting caller and
tells them what that caller said, so it must admit agents only. An agent is registered with
`ivr agents add NAME +E164 [--pin]`; the line admits a call only from a registered number and,
when that agent has a PIN, only after the PIN is keyed in. Caller ID can be spoofed on the
phone network, so a PIN is what actually keeps strangers out; the number alone keeps out
wrong numbers. Refusals are logged (number masked) and counted per day.

Keys (keys.py): `ivr:agents` (the registry, kept until removed, like operator accounts; PINs as
argon2 hashes), `ivr:agent_line:{CallSid}` (one admitted agent-line call), `ivr:agents:seen`
(when an idle agent last polled the line: they are available), `ivr:agents:calls` (caller sid
-> which agent is with them since when). Being on a call is keyed by the caller so that every
way a bridge can end (the caller's queue result, their status callback, the agent's own line)
clears it with an unconditional op joined into that call's atomic script.
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
LINE_TTL = 12 * 3600          # an agent-line call admitted once stays admitted for a shift
PRESENT_SECONDS = 30          # an idle agent polls every ~5 s; silent longer means they hung up
MAX_PIN_FAILURES = 3

_hasher = PasswordHasher()


class AgentError(ValueError):
    pass


def check_name(name: str) -> str:
    name = (name or "").strip().lower()
    if not NAME_RE.match(name):
        raise AgentError("agent names are 1-32 characters: a-z, 0-9, dot, dash, underscore")
    return name


class Agents:
    def __init__(self, redis, clock=time.time):
        self.r = redis
        self.clock = clock

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
        self.r.hset(keys.AGENTS, name, json.dumps(value))
        return name

    def remove(self, name: str) -> bool:
        return self.r.hdel(keys.AGENTS, check_name(name)) > 0

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

    def pin_failed(self, agent_call: str) -> int:
        key = keys.agent_line(agent_call)
        pipe = self.r.pipeline()
        pipe.hincrby(key, "pin_failures", 1)
        pipe.expire(key, LINE_TTL)
        return pipe.execute()[0]

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
