"""Who is waiting for a person, in which queue: Redis's mirror of Twilio's queues.

Twilio holds the callers (<Enqueue>) and bridges them (<Dial><Queue>); it cannot
say who waits where across processes or rank urgent callers first, so every
process keeps this mirror. Like rq's registries, this class owns the keys
(`keys.queue(name)`, one sorted set per priority: sid -> order score) and every
operation on them. Changes are returned as op lists so they join the call's
own atomic script (CallStore.apply_turn / record_once): a caller is in the
mirror exactly when the call record says so, whatever Twilio retries. Callers
who asked for a call back have left the queue but kept their place (ivr.callbacks);
`claim_next` weighs them against the callers still waiting.
"""
from __future__ import annotations

from . import keys
from .callbacks import STALE_CALLING_SECONDS

NAMES = keys.QUEUES          # urgent before normal: agents always take urgent callers first

# Who an agent takes next. Per priority (urgent first): the head caller of the queue not yet
# claimed by another agent being briefed right now, or the longest-waiting callback of that
# priority (ivr.callbacks) whose place, the moment that caller first joined the queue, comes
# before the head's: a callback keeps the caller's place against everyone who came after them.
# Two agents dialling in together are briefed on two different callers, in that order.
_CLAIM = """
local now, agent, hold, prefix, nq, stale = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4],
  tonumber(ARGV[5]), tonumber(ARGV[6])
local function free(call)
  return now - tonumber(redis.call('HGET', call, 'claimed_at') or '0') > hold
end
local callbacks = {}
local cbkey = KEYS[nq + 1]
if cbkey then
  local members = redis.call('ZRANGE', cbkey, 0, 99, 'WITHSCORES')
  for i = 1, #members, 2 do
    local sid, place = members[i], tonumber(members[i + 1])
    local call = prefix .. sid
    local f = redis.call('HMGET', call, 'callback_state', 'callback_next_at', 'callback_queue', 'callback_last_at')
    local ready = f[1] == 'waiting' or (f[1] == 'calling' and now - tonumber(f[4] or '0') > stale)
    local q = f[3] or 'normal'
    if ready and tonumber(f[2] or '0') <= now and not callbacks[q] and free(call) then
      callbacks[q] = {sid, place}
    end
  end
end
for i = 1, nq do
  local name = ARGV[6 + i]
  local head = nil
  local members = redis.call('ZRANGE', KEYS[i], 0, 19, 'WITHSCORES')
  for j = 1, #members, 2 do
    local call = prefix .. members[j]
    if redis.call('EXISTS', call) == 0 then
      -- The record expired (or was lost): nobody to brief; drop the stale entry, never recreate it.
      redis.call('ZREM', KEYS[i], members[j])
    elseif free(call) then
      head = {members[j], tonumber(members[j + 1])}
      break
    end
  end
  local cb = callbacks[name]
  local pick, kind = head, 'queue'
  if cb and (head == nil or cb[2] <= head[2]) then pick, kind = cb, 'callback' end
  if pick then
    redis.call('HSET', prefix .. pick[1], 'claimed_at', now, 'claimed_by', agent)
    return {kind, name, pick[1]}
  end
end
return false
"""


class Queues:
    def __init__(self, redis, retention_seconds: int):
        self.r = redis
        self.ttl = int(retention_seconds)
        self._claim = redis.register_script(_CLAIM)

    @staticmethod
    def check(name: str) -> str:
        if name not in NAMES:
            raise ValueError(f"unknown queue {name!r}")
        return name

    # -- changes, as ops for the call's atomic script --------------------------------
    def join_ops(self, name: str, sid: str, score: float) -> list:
        """The caller starts waiting in `name`; the score orders the queue (enqueue time)."""
        key = keys.queue(self.check(name))
        return [["ZADD", key, score, sid], ["EXPIRE", key, self.ttl]]

    @staticmethod
    def leave_ops(sid: str, name: str | None = None) -> list:
        """The caller stops waiting: in `name`, or in every queue (the call is over)."""
        names = NAMES if name is None else (name,)
        return [["ZREM", keys.queue(q), sid] for q in names]

    # -- reads and the agent's claim ---------------------------------------------------
    def claim_next(self, agent: str, now: float, hold: float = 20, callbacks: bool = True) -> tuple | None:
        """(kind, queue name, sid) of the caller the agent `agent` takes next, or None; kind is
        "queue" (bridge to a waiting caller) or "callback" (ring a caller back, ivr.callbacks).

        Urgent before normal; within a priority, the longest wait first, a callback counting
        from when its caller joined the queue. A claim holds for `hold` seconds, long enough
        for the briefing and the bridge."""
        qkeys = [keys.queue(q) for q in NAMES] + ([keys.CALLBACKS] if callbacks else [])
        found = self._claim(keys=qkeys, args=[now, agent, hold, keys.CALL_PREFIX, len(NAMES), STALE_CALLING_SECONDS,
                                              *NAMES])
        return tuple(found) if found else None

    def sizes(self) -> dict:
        pipe = self.r.pipeline(transaction=False)
        self.read_sizes(pipe)
        return dict(zip(NAMES, pipe.execute()))

    @staticmethod
    def read_sizes(pipe) -> None:
        """Queue on `pipe` one read per queue: their results are the number of callers waiting."""
        for q in NAMES:
            pipe.zcard(keys.queue(q))

    @staticmethod
    def read_members(pipe, limit: int) -> None:
        """Queue on `pipe` one read per queue, oldest first: their results are lists of sids."""
        for q in NAMES:
            pipe.zrange(keys.queue(q), 0, limit - 1)

    @staticmethod
    def read_size(pipe, name: str) -> None:
        pipe.zcard(keys.queue(name))
