"""Queue membership on its own (ivr.queues) against the real Redis: joins and leaves ride in the
call's own script (CallStore), agents claim the caller to brief them on, urgent first."""
import pytest

from ivr import keys
from ivr.calls import CallStore
from ivr.queues import NAMES, Queues

RETENTION = 3600


@pytest.fixture
def store(redis):
    return CallStore(redis, RETENTION)


@pytest.fixture
def queues(redis):
    return Queues(redis, RETENTION)


def waiting(store, queues, n, queue, since):
    """Call n waits in `queue` since `since`, joined through its call record as a turn would."""
    sid = f"CA{n:032d}"
    store.open_call(sid, f"+1500555{n:04d}", {})
    assert store.apply_turn(sid, f"+1500555{n:04d}", 1, "R", {"status": "queued", "enqueued_at": since},
                            transfer=True,
                            ops=queues.join_ops(queue, sid, since)) is None
    return sid


def test_join_and_leave_go_through_the_call_script(store, queues, redis):
    sid = waiting(store, queues, 1, "urgent", 100.0)
    assert redis.zscore(keys.queue("urgent"), sid) == 100.0
    assert 0 < redis.ttl(keys.queue("urgent")) <= RETENTION
    assert queues.sizes() == {"urgent": 1, "normal": 0}
    # A retried turn does not join twice (or move the caller back in the queue).
    store.apply_turn(sid, "+15005550001", 1, "R", {}, ops=queues.join_ops("urgent", sid, 900.0))
    assert redis.zscore(keys.queue("urgent"), sid) == 100.0
    assert store.record_once(sid, "queue_result", {"status": "with_agent"}, "queue_result",
                             ops=queues.leave_ops(sid)) == 1
    assert queues.sizes() == {"urgent": 0, "normal": 0}


def test_leaving_one_queue_or_all(store, queues, redis):
    sid = waiting(store, queues, 1, "normal", 10.0)
    store.record_once(sid, "moved", {}, "handoff", ops=queues.join_ops("urgent", sid, 20.0))
    store.record_once(sid, "left_normal", {}, "queue_result", ops=queues.leave_ops(sid, "normal"))
    assert redis.zscore(keys.queue("normal"), sid) is None and redis.zscore(keys.queue("urgent"), sid) == 20.0
    assert Queues.leave_ops(sid) == [["ZREM", keys.queue(q), sid] for q in NAMES]


def test_only_known_queues(queues):
    assert Queues.check("normal") == "normal"
    with pytest.raises(ValueError, match="vip"):
        queues.join_ops("vip", "CA1", 1.0)
    with pytest.raises(ValueError, match="vip"):
        Queues.check("vip")


def test_agents_take_urgent_callers_first_then_the_longest_wait(store, queues, redis):
    late = waiting(store, queues, 1, "normal", 50.0)
    early = waiting(store, queues, 2, "normal", 10.0)
    urgent = waiting(store, queues, 3, "urgent", 90.0)            # joined last, still first
    now = 100.0
    assert queues.claim_next("agent-a", now) == ("queue", "urgent", urgent)
    assert queues.claim_next("agent-b", now) == ("queue", "normal", early)
    assert queues.claim_next("agent-c", now) == ("queue", "normal", late)
    assert queues.claim_next("agent-d", now) is None              # everyone is being briefed on
    assert redis.hget(keys.call(urgent), "claimed_by") == "agent-a"
    assert float(redis.hget(keys.call(early), "claimed_at")) == now


def test_a_claim_holds_for_its_time_then_lapses(store, queues):
    sid = waiting(store, queues, 1, "normal", 990.0)
    assert queues.claim_next("agent-a", 1000.0, hold=20) == ("queue", "normal", sid)
    assert queues.claim_next("agent-b", 1019.0, hold=20) is None     # agent-a is being briefed on it
    assert queues.claim_next("agent-b", 1021.0, hold=20) == ("queue", "normal", sid)   # that agent never bridged


def test_members_are_read_oldest_first(store, queues, redis):
    for n, at in [(1, 30.0), (2, 10.0), (3, 20.0)]:
        waiting(store, queues, n, "normal", at)
    pipe = redis.pipeline()
    Queues.read_members(pipe, 2)
    Queues.read_size(pipe, "normal")
    urgent, normal, size = pipe.execute()
    assert urgent == [] and normal == [f"CA{2:032d}", f"CA{3:032d}"] and size == 3


def test_an_expired_call_is_dropped_from_the_queue_not_recreated(store, queues, redis):
    """A caller whose record expired (retention, or lost in a failover) is nobody to brief an
    agent on: the claim removes the stale entry and takes the next caller, writing no record."""
    gone = waiting(store, queues, 1, "normal", 910.0)
    there = waiting(store, queues, 2, "normal", 920.0)
    redis.delete(keys.call(gone))
    assert queues.claim_next("agent-a", 1000.0) == ("queue", "normal", there)
    assert redis.zscore(keys.queue("normal"), gone) is None
    assert not redis.exists(keys.call(gone))
