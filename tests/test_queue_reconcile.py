"""What a Redis failover can leave behind, mended without counting a transfer twice (ivr.queues).

A failover loses the master's last writes: the promoted replica holds the state from before them.
These tests produce exactly that state on a real Redis (DUMP before the webhooks whose writes are
"lost", RESTORE after) and check what the next webhooks make of it; tests/test_redis_ha.py does the
same with a real master killed under Sentinel."""
from ivr import keys, queues
from ivr.keyring import Keyring
from ivr.simulate.twilio_client import parse_twiml
from tests.support import Clock

AGENT = {"From": "+15005550777", "To": "+15005550001"}


def caller(n):
    return {"CallSid": f"CA{n:032x}", "From": f"+1500555{n:04d}", "To": "+15005550100"}


class Lost:
    """The keys of a call (and the shared ones it touches) as they were: restore() undoes every write since."""

    def __init__(self, redis, sid, number):
        self.r = redis
        shared = [keys.queue(q) for q in keys.QUEUES] + [keys.ACTIVE, keys.EVENTS]
        self.keys = keys.call_keys(sid) + shared + [keys.caller(number, Keyring(redis).hash_key)]
        self.saved = {k: redis.dump(k) for k in self.keys}

    def restore(self):
        for k, blob in self.saved.items():
            self.r.delete(k)
            if blob is not None:
                self.r.restore(k, 0, blob)


def wait_page(client, c, queue="normal", queue_time=4):
    return client.post(f"/voice/queue/wait?sid={c['CallSid']}&queue={queue}",
                       dict(c, QueuePosition="1", QueueTime=str(queue_time), AvgQueueTime="0"))


def agent(client, n):
    return parse_twiml(client.post("/voice/agent", dict(AGENT, CallSid=f"CA{n:032d}"))[1])


def test_lost_handoff_is_restored_by_the_wait_page_and_the_retry_counts_nothing(serve, redis):
    clock = Clock()
    client = serve(clock=clock)
    c = caller(1)
    client.post("/voice", c)
    client.post("/voice/gather?turn=1", dict(c, Digits="2"))
    lost = Lost(redis, c["CallSid"], c["From"])
    clock.advance(3)
    status, body = client.post("/voice/gather?turn=2", dict(c, Digits="0"))   # the handoff ...
    assert parse_twiml(body).find("Enqueue").text == "ivr-normal"
    lost.restore()                                                             # ... lost in a failover
    rec = redis.hgetall(keys.call(c["CallSid"]))
    assert rec["status"] == "in_bot" and rec["transfers"] == "0" and redis.zcard(keys.queue("normal")) == 0

    clock.advance(4)
    assert wait_page(client, c, queue_time=4)[0] == 200         # Twilio holds the caller in its queue
    rec = redis.hgetall(keys.call(c["CallSid"]))
    assert rec["status"] == "queued" and rec["transfers"] == "1" and rec["reason"] == "restored"
    assert float(rec["enqueued_at"]) == clock() - 4              # their place: when Twilio queued them
    assert redis.zscore(keys.queue("normal"), c["CallSid"]) == clock() - 4
    assert [e["type"] for _, e in redis.xrange(keys.EVENTS)].count("queue_restored") == 1

    # Twilio retries the turn whose answer it never trusted: the same TwiML, nothing counted again,
    # the caller keeps their place.
    clock.advance(1)
    assert client.post("/voice/gather?turn=2", dict(c, Digits="0")) == (status, body)
    rec = redis.hgetall(keys.call(c["CallSid"]))
    assert rec["transfers"] == "1" and rec["reason"] == "agent_request"
    assert redis.zscore(keys.queue("normal"), c["CallSid"]) == clock() - 5
    for _ in range(3):                                           # later rounds change nothing more
        wait_page(client, c)
    assert redis.hget(keys.call(c["CallSid"]), "transfers") == "1"


def test_retry_before_the_wait_page_counts_once_and_nothing_is_restored(serve, redis):
    client = serve(clock=Clock())
    c = caller(2)
    client.post("/voice", c)
    lost = Lost(redis, c["CallSid"], c["From"])
    first = client.post("/voice/gather?turn=1", dict(c, Digits="0"))
    lost.restore()
    assert client.post("/voice/gather?turn=1", dict(c, Digits="0")) == first
    wait_page(client, c)
    rec = redis.hgetall(keys.call(c["CallSid"]))
    assert rec["transfers"] == "1" and "queue_restored_at" not in rec


def test_a_wait_page_naming_another_queue_adds_no_second_entry(serve, redis):
    client = serve(clock=Clock())
    c = caller(10)
    client.post("/voice", c)
    client.post("/voice/gather?turn=1", dict(c, Digits="9"))                     # urgent
    assert wait_page(client, c, queue="normal")[0] == 200
    assert redis.zrange(keys.queue("urgent"), 0, -1) == [c["CallSid"]] and redis.zcard(keys.queue("normal")) == 0
    redis.zrem(keys.queue("urgent"), c["CallSid"])                                # the entry lost, the record not
    wait_page(client, c, queue="normal")
    assert redis.zrange(keys.queue("urgent"), 0, -1) == [c["CallSid"]]          # back where the record says


def test_a_caller_who_left_is_never_put_back(serve, redis):
    client = serve(clock=Clock())
    c = caller(3)
    client.post("/voice", c)
    client.post("/voice/gather?turn=1", dict(c, Digits="0"))
    client.post("/voice/queue/connect?queue=normal", dict(c, QueueTime="10"))     # bridged to an agent
    wait_page(client, c)                                                           # a late wait page
    assert redis.zcard(keys.queue("normal")) == 0
    assert redis.hget(keys.call(c["CallSid"]), "status") == "with_agent"


def test_ghosts_are_skipped_by_the_claim_and_swept(serve, redis):
    clock = Clock()
    client = serve(clock=clock)
    ghost, gone, live = caller(4), caller(5), caller(6)
    for c in (ghost, gone, live):
        client.post("/voice", c)
        client.post("/voice/gather?turn=1", dict(c, Digits="0"))
        clock.advance(1)
    # ghost: it hung up, but the writes saying so were lost (its record still says queued).
    lost = Lost(redis, ghost["CallSid"], ghost["From"])
    client.post("/voice/queue/result?turn=2", dict(ghost, QueueResult="hangup", QueueTime="30"))
    client.post("/voice/status", dict(ghost, CallStatus="completed"))
    lost.restore()
    # gone: its record was lost altogether (or expired), its entry was not.
    redis.delete(keys.call(gone["CallSid"]))
    assert redis.zrange(keys.queue("normal"), 0, -1) == [ghost["CallSid"], gone["CallSid"], live["CallSid"]]

    # Twilio keeps asking for the wait page of the caller who really waits, never for the ghost's.
    stale = queues.STALE_ROUNDS * (45 + 20)
    for _ in range(4):
        clock.advance(stale / 3)
        wait_page(client, live)
    root = agent(client, 900)
    assert root.find("Dial") is not None
    assert redis.hget(keys.call(live["CallSid"]), "claimed_at")                  # the agent got the live one
    assert redis.zrange(keys.queue("normal"), 0, -1) == [live["CallSid"]]
    assert redis.hget(keys.call(ghost["CallSid"]), "claimed_at") is None


def test_the_sweep_runs_from_the_wait_page_once_per_period(serve, redis):
    clock = Clock()
    client = serve(clock=clock)
    waiting, gone = caller(7), caller(8)
    for c in (waiting, gone):
        client.post("/voice", c)
        client.post("/voice/gather?turn=1", dict(c, Digits="9"))                   # urgent
    redis.delete(keys.call(gone["CallSid"]))
    redis.delete(keys.QUEUE_SWEEP)
    wait_page(client, waiting, queue="urgent")
    assert redis.zrange(keys.queue("urgent"), 0, -1) == [waiting["CallSid"]]
    assert gone["CallSid"] not in redis.zrange(keys.ACTIVE, 0, -1)               # nor active any more
    assert 0 < redis.ttl(keys.QUEUE_SWEEP) <= queues.SWEEP_EVERY
    # Within the period nobody sweeps again (one process per period does it).
    redis.zadd(keys.queue("urgent"), {gone["CallSid"]: 1})
    wait_page(client, waiting, queue="urgent")
    assert redis.zcard(keys.queue("urgent")) == 2


def test_emergency_dial_result_is_not_counted_when_the_handoff_was_recorded(serve, redis):
    client = serve(clock=Clock(), handoff_mode="dial")
    c = caller(9)
    client.post("/voice", c)
    client.post("/voice/gather?turn=1", dict(c, Digits="0"))   # the handoff landed; say its answer was lost
    client.post("/voice/dial?turn=emergency", dict(c, DialCallStatus="completed", DialCallDuration="20"))
    assert redis.hget(keys.call(c["CallSid"]), "transfers") == "1"
