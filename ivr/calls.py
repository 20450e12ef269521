"""Call records in Redis: the single source of truth shared by every process.

Each webhook costs at most two round trips: one pipelined read, one Lua
script that applies the whole turn atomically. The script records the TwiML
it answered under the turn number, so a webhook Twilio retries (or that a
second process receives) returns the same answer and changes nothing:
transfers are counted exactly once.
"""
from __future__ import annotations

import json
import logging
import math
import re
import time

from . import keys
from .keyring import Keyring

# Twilio call SIDs: "CA" and 32 hex digits. Anything else is not a call of ours, and must never
# become part of a Redis key (one call's keys written through another's name). Checked where a sid
# enters: every webhook (ivr.web.common.call_sid), the stream's `start`, the API.
CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")


def is_call_sid(value) -> bool:
    return isinstance(value, str) and CALL_SID.fullmatch(value) is not None


log = logging.getLogger("ivr.calls")

_OPEN = """
local call, caller, active, recent, events, replies = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local sid, now, ttl, caller_ttl, maxlen, known =
  ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6] == '1'
if redis.call('EXISTS', call) == 1 then
  return {0, redis.call('HGET', call, 'boost') or '', redis.call('HGET', replies, '0') or ''}
end
local boost = ''
-- A withheld number is nobody's history: neither read nor written.
local last_sid = known and redis.call('HGET', caller, 'last_sid')
if last_sid and last_sid ~= sid then
  if redis.call('HGET', caller, 'transferred') == '1' then boost = 'transferred_before' else boost = 'repeat_caller' end
end
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
if #fields > 0 then redis.call('HSET', call, unpack(fields)) end
redis.call('HSET', call, 'sid', sid, 'started_at', now, 'transfers', 0, 'boost', boost, 'status', 'in_bot')
redis.call('EXPIRE', call, ttl)
if known then
  redis.call('HSET', caller, 'last_sid', sid, 'last_call_at', now)
  redis.call('EXPIRE', caller, caller_ttl)
end
redis.call('ZADD', active, now, sid)
redis.call('ZADD', recent, now, sid)
redis.call('ZREMRANGEBYSCORE', recent, '-inf', tonumber(now) - ttl)
redis.call('ZREMRANGEBYSCORE', active, '-inf', tonumber(now) - ttl)
redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'call_started', 'sid', sid, 'ts', now)
-- Shared keys live as long as calls keep coming, and expire with the last call's retention.
for _, k in ipairs({active, recent, events}) do redis.call('EXPIRE', k, ttl) end
return {1, boost, ''}
"""

# Side effects on other keys (queues, statistics) a turn may carry into its script. Checked in Python
# before the script runs: by then the turn's reply is stored, and an op refused inside the script
# would be lost while the turn counted as applied.
OPS_ALLOWED = ("ZADD", "ZREM", "HINCRBY", "HSET", "HDEL", "ZREMRANGEBYSCORE", "EXPIRE", "ZINCRBY", "RPUSH")

_OPS = "local ALLOWED = {" + ", ".join(f"{op} = true" for op in OPS_ALLOWED) + "}" + """
-- Side effects on other keys (queues, statistics), applied in the same atomic script.
local function apply_ops(json)
  if json == nil or json == '' then return end
  for _, op in ipairs(cjson.decode(json)) do
    if not ALLOWED[op[1]] then return redis.error_reply('op not allowed: ' .. tostring(op[1])) end
    redis.call(unpack(op))
  end
end
"""

# Apply one turn: the reply, state fields, transcript entries, maybe a transfer.
_TURN = _OPS + f"local CALLER_TTL = {keys.CALLER_TTL}\n" + """
local call, turns, replies, events, caller = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local sid, turn, reply, now, ttl, transfer, nturns, etype, edata, maxlen, ops, known =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7]), ARGV[8], ARGV[9], ARGV[10],
  ARGV[11], ARGV[12] == '1'
if redis.call('HSETNX', replies, turn, reply) == 0 then
  return redis.call('HGET', replies, turn)
end
redis.call('EXPIRE', replies, ttl)
-- The bot hands a call off once. A handoff already on record is not counted again: after a failover
-- lost this turn's first delivery, the wait page may have restored it (ivr.queues) before Twilio's retry.
local handed_off = redis.call('HEXISTS', call, 'handoff_at') == 1
local i = 13
for n = 1, nturns do
  redis.call('RPUSH', turns, ARGV[i]); i = i + 1
end
if nturns > 0 then redis.call('EXPIRE', turns, ttl) end
local fields = {}
for j = i, #ARGV do fields[#fields + 1] = ARGV[j] end
if #fields > 0 then redis.call('HSET', call, unpack(fields)) end
if transfer == '1' and not handed_off then
  redis.call('HINCRBY', call, 'transfers', 1)
  if known then
    redis.call('HSET', caller, 'transferred', '1')
    if redis.call('TTL', caller) < 0 then redis.call('EXPIRE', caller, CALLER_TTL) end
  end
end
apply_ops(ops)
redis.call('EXPIRE', call, ttl)
redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', etype, 'sid', sid, 'ts', now, 'data', edata)
return false
"""

# A one-time effect (dial result, queue result, close): the marker makes it idempotent.
_ONCE = _OPS + """
local call, once, events, active = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local sid, marker, now, ttl, etype, maxlen, close, transfer, ops =
  ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
if redis.call('EXISTS', call) == 0 then return -1 end
if redis.call('SADD', once, marker) == 0 then return 0 end
redis.call('EXPIRE', once, ttl)
if close == '1' then
  -- "ended" replaces the status; keep how the call ended (callback, voicemail, abandoned ...).
  redis.call('HSET', call, 'last_status', redis.call('HGET', call, 'status') or '')
end
local fields = {}
for i = 10, #ARGV do fields[#fields + 1] = ARGV[i] end
if #fields > 0 then redis.call('HSET', call, unpack(fields)) end
if transfer == '1' then redis.call('HINCRBY', call, 'transfers', 1) end
apply_ops(ops)
if close == '1' then
  local outcome = 'hangup'
  if tonumber(redis.call('HGET', call, 'transfers') or '0') > 0 then outcome = 'handoff'
  elseif redis.call('HGET', call, 'answered') == '1' then outcome = 'answered' end
  redis.call('HSET', call, 'outcome', outcome, 'ended_at', now)
  redis.call('ZREM', active, sid)
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', etype, 'sid', sid, 'ts', now)
  return {1, outcome}
end
redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', etype, 'sid', sid, 'ts', now)
return 1
"""


# A media stream's `start` claims its leg (ivr/streamauth.py): only for a call that exists, has not
# ended and has no stream live, and only once per leg. Otherwise nothing changes.
_CLAIM_STREAM = """
local call, once, events = KEYS[1], KEYS[2], KEYS[3]
local sid, marker, leg, now, ttl, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
if redis.call('EXISTS', call) == 0 then return 'unknown_call' end
if redis.call('HGET', call, 'status') == 'ended' then return 'call_ended' end
if redis.call('HGET', call, 'stream') == 'live' then return 'stream_live' end
if redis.call('SADD', once, marker) == 0 then return 'used' end
redis.call('EXPIRE', once, ttl)
redis.call('HSET', call, 'stream', 'live', 'stream_leg', leg)
redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'stream_started', 'sid', sid, 'ts', now)
return 'ok'
"""

# A counter in the record of a call that exists; an unknown sid gets 0 and no record (HINCRBY alone
# would create one without an expiry).
_COUNT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
"""


def _ops(ops) -> str:
    ops = [[str(x) for x in op] for op in ops]
    refused = [op[0] if op else "(empty)" for op in ops if not op or op[0] not in OPS_ALLOWED]
    if refused:
        raise ValueError(f"not an op a call script may apply: {', '.join(refused)}")
    return json.dumps(ops) if ops else ""


def _flat(fields: dict) -> list:
    out = []
    for k, v in fields.items():
        if v is None:
            continue
        out += [k, json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else str(v)]
    return out


class CallStore:
    def __init__(self, redis, retention_seconds: int, clock=time.time, keyring=None, wait_replicas: int = 0,
                 wait_ms: int = 50):
        self.r = redis
        self.keyring = keyring or Keyring(redis)
        self.ttl = int(retention_seconds)
        self.clock = clock
        # Redis replicates asynchronously: a failover loses what the master had not yet sent. A write
        # that counts a transfer waits (WAIT) until `wait_replicas` replicas have it, at most `wait_ms`,
        # before the caller is told where they go (docs/scaling.md: what this bounds, what it costs).
        self.wait_replicas = int(wait_replicas)
        self.wait_ms = int(wait_ms)
        self._open = redis.register_script(_OPEN)
        self._turn = redis.register_script(_TURN)
        self._once = redis.register_script(_ONCE)
        self._count = redis.register_script(_COUNT)
        self._claim_stream = redis.register_script(_CLAIM_STREAM)

    def now(self) -> float:
        return round(self.clock(), 3)

    def open_call(self, sid, caller, fields) -> tuple:
        """Create the record unless it exists. Returns (created, boost, earlier turn-0 reply)."""
        created, boost, reply = self._open(
            keys=[keys.call(sid), self._caller(caller), keys.ACTIVE, keys.RECENT, keys.EVENTS, keys.replies(sid)],
            args=[sid, self.now(), self.ttl, keys.CALLER_TTL, keys.EVENTS_MAXLEN, "0" if withheld(caller) else "1"]
            + _flat(fields),
        )
        return bool(created), boost or None, reply or None

    def load(self, sid, turn=None) -> tuple:
        """One round trip: (record, reply already given for this turn or None)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(keys.call(sid))
        if turn is not None:
            pipe.hget(keys.replies(sid), str(turn))
        res = pipe.execute()
        return res[0], (res[1] if turn is not None else None)

    def apply_turn(self, sid, caller, turn, reply, fields, turns=(), transfer=False, event="turn", data=None,
                   ops=()):
        """Returns None when applied, or the reply stored by an earlier delivery of this turn."""
        return self._write(
            self._turn, transfer,
            keys=[keys.call(sid), keys.turns(sid), keys.replies(sid), keys.EVENTS, self._caller(caller)],
            args=[sid, str(turn), reply, self.now(), self.ttl, "1" if transfer else "0", len(turns), event,
                  json.dumps(data or {}, ensure_ascii=False), keys.EVENTS_MAXLEN, _ops(ops),
                  "0" if withheld(caller) else "1"]
            + [json.dumps(t, ensure_ascii=False) for t in turns] + _flat(fields),
        )

    def record_once(self, sid, marker, fields, event, close=False, transfer=False, ops=()) -> int:
        """1 applied, 0 already applied earlier, -1 unknown call."""
        res = self._once_raw(sid, marker, fields, event, close, transfer, ops)
        return int(res[0]) if isinstance(res, list) else res

    def close(self, sid, fields, ops=()) -> tuple:
        """Close the call once: (1, outcome) when this closed it, (0, None) already closed, (-1, None) unknown."""
        res = self._once_raw(sid, "closed", fields, "call_ended", True, False, ops)
        return (int(res[0]), res[1]) if isinstance(res, list) else (res, None)

    def _once_raw(self, sid, marker, fields, event, close, transfer, ops):
        return self._write(
            self._once, transfer,
            keys=[keys.call(sid), keys.once(sid), keys.EVENTS, keys.ACTIVE],
            args=[sid, marker, self.now(), self.ttl, event, keys.EVENTS_MAXLEN, "1" if close else "0",
                  "1" if transfer else "0", _ops(ops)] + _flat(fields),
        )

    def claim_stream(self, sid, leg: int, marker: str) -> str:
        """"ok" when this stream may carry the call (now marked live), else why not."""
        return self._claim_stream(keys=[keys.call(sid), keys.once(sid), keys.EVENTS],
                                  args=[sid, marker, leg, self.now(), self.ttl, keys.EVENTS_MAXLEN])

    def _caller(self, number) -> str:
        return keys.caller(number, self.keyring.hash_key)

    def count(self, sid, field, pipe=None):
        """Add one to a counter field of an existing record (on `pipe` when given); 0 for an unknown call."""
        return self._count(keys=[keys.call(sid)], args=[field], client=pipe)

    def report(self, sid) -> dict | None:
        return read_report(self.r, sid)

    def _write(self, script, durable, keys, args):
        if not (durable and self.wait_replicas):
            return script(keys=keys, args=args)
        # WAIT counts the writes of its own connection: the script and WAIT share one.
        with self.r.client() as conn:
            result = script(keys=keys, args=args, client=conn)
            acked = conn.wait(self.wait_replicas, self.wait_ms)
        if acked < self.wait_replicas:
            from .metrics import UNREPLICATED
            UNREPLICATED.inc()
            log.warning("a transfer was written to the Redis master but reached %d of %d replicas within %d ms",
                        acked, self.wait_replicas, self.wait_ms)
        return result


def entry_ops(sid: str, entry: dict, ttl: int) -> list:
    """Add an entry to the call's transcript from a one-time effect (an operator's action, a
    callback attempt's result), in the same script: the call page's timeline shows it."""
    return [["RPUSH", keys.turns(sid), json.dumps(entry, ensure_ascii=False)], ["EXPIRE", keys.turns(sid), ttl]]


# What Twilio puts in `From` when the caller withheld their number: words, or the same words
# spelled on a phone keypad (ANONYMOUS = 266696687, RESTRICTED = 7378742833, BLOCKED = 2562533,
# UNKNOWN = 8656696, UNAVAILABLE = 86282452253, PRIVATE = 7748283), with or without + or a leading 1.
_WITHHELD_WORDS = {"anonymous", "restricted", "blocked", "unknown", "unavailable", "private", "withheld",
                   "unknown caller", "no caller id", "not available"}
_WITHHELD_DIGITS = {"266696687", "7378742833", "2562533", "8656696", "86282452253", "7748283"}


def withheld(number) -> bool:
    """True when a caller ID names nobody (withheld, placeholder or empty): such calls share no
    caller-history record, so they never count as repeat callers of each other."""
    raw = (number or "").strip().lower()
    if not raw or raw in _WITHHELD_WORDS:
        return True
    if raw.startswith(("client:", "sip:")):
        return False         # a browser or SIP caller: a name of its own
    digits = re.sub(r"\D", "", raw)
    if not digits or set(digits) == {"0"}:
        return True
    if re.search(r"[a-z]", raw):
        return True          # letters where a number belongs: some other "withheld" word
    return digits in _WITHHELD_DIGITS or (digits[:1] == "1" and digits[1:] in _WITHHELD_DIGITS)


def num(raw) -> float | None:
    """A number field of a record (Redis returns strings), or None when absent or not a number
    (nan and infinity are not: a wait of infinity would poison every average it enters)."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_report(r, sid) -> dict | None:
    """Everything known about a call (record without engine state, transcript), in one
    round trip, for the simulator, evaluation, agents and operators."""
    pipe = r.pipeline(transaction=False)
    pipe.hgetall(keys.call(sid))
    pipe.lrange(keys.turns(sid), 0, -1)
    record, turns = pipe.execute()
    if not record:
        return None
    record.pop("state", None)
    record.setdefault("sid", sid)
    return {"record": record, "turns": [t for t in map(parse_turn, turns) if t]}


def parse_turn(raw) -> dict:
    # A transcript entry that does not parse is skipped, not fatal: operators still see the rest.
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
