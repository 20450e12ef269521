"""Who is waiting for a person, in which queue: Redis's mirror of Twilio's queues.

Twilio holds the callers (<Enqueue>) and bridges them (<Dial><Queue>); it cannot
say who waits where across processes or rank urgent callers first, so every
process keeps this mirror. Like rq's registries, this class owns the keys
(`keys.queue(name)`, one sorted set per priority: sid -> order score) and every
operation on them. Changes are returned as op lists so they join the call's
own atomic script (CallStore.apply_turn / record_once): a caller is in the
mirror exactly when the call record says so, whatever Twilio retries.
"""
from __future__ import annotations

from . import keys

NAMES = keys.QUEUES          # urgent before normal: agents always take urgent callers first

# The head caller not yet claimed by another agent who is being briefed right now:
# two agents dialling in together are briefed on two different callers, in queue order.
_CLAIM = """
local now, agent, hold, prefix = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4]
for _, q in ipairs(KEYS) do
  for _, sid in ipairs(redis.call('ZRANGE', q, 0, 19)) do
    local call = prefix .. sid
    local at = tonumber(redis.call('HGET', call, 'claimed_at') or '0')
    if redis.call('EXISTS', call) == 0 then
      -- The record expired (or was lost): nobody to brief; drop the stale entry, never recreate it.
      redis.call('ZREM', q, sid)
    elseif now - at > hold then
      redis.call('HSET', call, 'claimed_at', now, 'claimed_by', agent)
      return {q, sid}
    end
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
    def claim_next(self, agent: str, now: float, hold: float = 20) -> tuple | None:
        """(queue name, sid) of the caller the agent `agent` is briefed on, or None.

        Urgent before normal; within a queue, the longest wait first. A claim holds for
        `hold` seconds, long enough for the briefing and the bridge."""
        found = self._claim(keys=[keys.queue(q) for q in NAMES], args=[now, agent, hold, keys.CALL_PREFIX])
        if not found:
            return None
        qkey, sid = found
        return qkey.rsplit(":", 1)[-1], sid

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
