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

After a Redis failover the promoted replica may lack the master's last writes
(replication is asynchronous, docs/scaling.md). Both halves of such a loss are
mended here, on read: Twilio's wait page for a caller is proof that they wait,
so it puts back an entry (and the record's "queued") that a lost write took
away; an entry whose record is gone, says the caller left, or whose caller
Twilio has stopped asking wait pages for is a ghost, skipped and removed by the
agent's claim and by a sweep that runs inside the wait page's own script at
most once every SWEEP_EVERY seconds. Neither counts a transfer twice: the only
count made here is for a caller whose record has no handoff at all.
"""
from __future__ import annotations

from . import keys
from .callbacks import STALE_CALLING_SECONDS

NAMES = keys.QUEUES          # urgent before normal: agents always take urgent callers first

# Twilio asks for the wait page after every announcement and hold-music round (announce_every
# seconds plus the words); a caller it has not asked about for this many rounds is not waiting.
STALE_ROUNDS = 3
SWEEP_EVERY = 30          # seconds between sweeps of the whole mirror (one process does it)
SWEEP_LIMIT = 500         # entries looked at per queue per sweep
MAX_CALL_SECONDS = 24 * 3600   # no call lasts longer (Twilio ends calls well before): not active any more

_GHOST = """
-- A queue entry nobody waits behind: its record is gone (lost in a failover, or expired), the record
-- says the caller left the queue (the write removing the entry was lost), or Twilio stopped asking
-- for the caller's wait page.
local function ghost(prefix, sid, now, stale)
  local st = redis.call('HMGET', prefix .. sid, 'status', 'enqueued_at', 'waiting_seen_at')
  if not st[1] or st[1] ~= 'queued' then return true end
  local seen = math.max(tonumber(st[2] or '0') or 0, tonumber(st[3] or '0') or 0)
  return now - seen > stale
end
"""

# Who an agent takes next. Per priority (urgent first): the head caller of the queue not yet
# claimed by another agent being briefed right now, or the longest-waiting callback of that
# priority (ivr.callbacks) whose place, the moment that caller first joined the queue, comes
# before the head's: a callback keeps the caller's place against everyone who came after them.
# Two agents dialling in together are briefed on two different callers, in that order. Ghost entries
# met on the way are removed.
_CLAIM = _GHOST + """
local now, agent, hold, prefix, nq, stale, waited = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4],
  tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
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
  local name = ARGV[7 + i]
  local head = nil
  local members = redis.call('ZRANGE', KEYS[i], 0, 19, 'WITHSCORES')
  for j = 1, #members, 2 do
    local call = prefix .. members[j]
    if ghost(prefix, members[j], now, waited) then
      -- Nobody waits behind it (record expired or lost, caller left, Twilio stopped asking about
      -- them): drop the entry, never recreate the record.
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

# Twilio's wait page for a caller in queue `name`: count the round, note that Twilio still holds the
# caller, put back what a lost write took away, sweep the mirror if it is due. Returns
# {record exists, rounds, callers waiting in the urgent queue, restored (0 | 1 entry | 2 record and entry)}.
_WAITING = _GHOST + """
local call, q, events, sweep_lock, active = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local sid, now, since, name, ttl, maxlen, prefix, stale, sweep_every, limit, max_call =
  ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7], tonumber(ARGV[8]),
  tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local queues = {}
for i = 6, #KEYS do queues[#queues + 1] = KEYS[i] end
local exists, rounds, restored = 0, 1, 0
if redis.call('EXISTS', call) == 1 then
  exists = 1
  rounds = redis.call('HINCRBY', call, 'announcements', 1)
  redis.call('HSET', call, 'waiting_seen_at', now)
  local status = redis.call('HGET', call, 'status') or ''
  local left = {with_agent = true, agent_done = true, callback = true, voicemail = true, abandoned = true,
                ended = true}
  if status ~= 'queued' and not left[status] then
    -- The write that queued this caller was lost: Twilio holds them in `name`. A handoff with no trace
    -- at all was not counted on this Redis; one that left handoff_at (dial mode) was.
    if not redis.call('HGET', call, 'handoff_at') then
      redis.call('HINCRBY', call, 'transfers', 1)
      redis.call('HSET', call, 'handoff_at', since, 'reason', 'restored')
    end
    redis.call('HSET', call, 'status', 'queued', 'queue', name, 'enqueued_at', since, 'queue_restored_at', now)
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'queue_restored', 'sid', sid, 'ts', now)
    status, restored = 'queued', 2
  end
  if status == 'queued' then
    -- In no queue of the mirror: put back, in the queue the record names (else the wait page's).
    local target, where = q, redis.call('HGET', call, 'queue') or name
    for _, qk in ipairs(queues) do
      if string.sub(qk, -(#where + 1)) == ':' .. where then target = qk end
    end
    for _, qk in ipairs(queues) do
      if redis.call('ZSCORE', qk, sid) then target = nil end
    end
    if target then
      redis.call('ZADD', target, redis.call('HGET', call, 'enqueued_at') or since, sid)
      redis.call('EXPIRE', target, ttl)
      if restored == 0 then restored = 1 end
    end
  end
end
if redis.call('SET', sweep_lock, now, 'NX', 'EX', sweep_every) then
  for _, qk in ipairs(queues) do
    for _, other in ipairs(redis.call('ZRANGE', qk, 0, limit - 1)) do
      if ghost(prefix, other, now, stale) then redis.call('ZREM', qk, other) end
    end
  end
  -- Calls whose record is gone, or that started longer ago than any call lasts, are not active.
  for _, other in ipairs(redis.call('ZRANGEBYSCORE', active, '-inf', '+inf', 'LIMIT', 0, limit)) do
    local started = tonumber(redis.call('ZSCORE', active, other))
    if redis.call('EXISTS', prefix .. other) == 0 or now - started > max_call then
      redis.call('ZREM', active, other)
    end
  end
end
return {exists, rounds, redis.call('ZCARD', queues[1]), restored}
"""


class Queues:
    def __init__(self, redis, retention_seconds: int, announce_every: int = 45):
        self.r = redis
        self.ttl = int(retention_seconds)
        # Seconds without a wait page after which an entry is a ghost (3 rounds of music and words).
        self.stale_after = STALE_ROUNDS * (int(announce_every) + 20)
        self._claim = redis.register_script(_CLAIM)
        self._waiting = redis.register_script(_WAITING)

    @staticmethod
    def check(name: str) -> str:
        if name not in NAMES:
            raise ValueError(f"unknown queue {name!r}")
        return name

    # -- changes, as ops for the call's atomic script --------------------------------
    def join_ops(self, name: str, sid: str, score: float) -> list:
        """The caller starts waiting in `name`; the score orders the queue (enqueue time). A caller
        already there keeps their place (NX): a retried or restored handoff does not send them back."""
        key = keys.queue(self.check(name))
        return [["ZADD", key, "NX", score, sid], ["EXPIRE", key, self.ttl]]

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
        found = self._claim(keys=qkeys, args=[now, agent, hold, keys.CALL_PREFIX, len(NAMES),
                                              STALE_CALLING_SECONDS, self.stale_after, *NAMES])
        return tuple(found) if found else None

    def waiting(self, sid: str, name: str, now: float, queue_time: float) -> tuple:
        """Twilio asks for the wait page of `sid`, in queue `name` for `queue_time` seconds.

        One script: the announcement round is counted, the mirror mended if a lost write left it
        wrong, the whole mirror swept if due. Returns (record exists, round, callers in the urgent
        queue, restored: 0 nothing, 1 the entry, 2 the record's queued state and the entry)."""
        exists, rounds, urgent, restored = self._waiting(
            keys=[keys.call(sid), keys.queue(self.check(name)), keys.EVENTS, keys.QUEUE_SWEEP, keys.ACTIVE]
            + [keys.queue(q) for q in NAMES],
            args=[sid, now, round(now - max(0.0, queue_time), 3), name, self.ttl, keys.EVENTS_MAXLEN,
                  keys.CALL_PREFIX, self.stale_after, SWEEP_EVERY, SWEEP_LIMIT, MAX_CALL_SECONDS])
        return bool(exists), int(rounds), int(urgent), int(restored)

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
