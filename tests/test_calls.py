"""The call store on its own (ivr.calls) against the real Redis of conftest: each script applies
once, whatever Twilio retries, and counts a transfer once."""
import json

import pytest

from ivr import keys
from ivr.calls import CallStore, num, read_report
from ivr.queues import Queues
from tests.support import Clock

RETENTION = 3600
A, B = "+15005550101", "+15005550102"


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(redis, clock):
    return CallStore(redis, RETENTION, clock=clock)


def sid(n):
    return f"CA{n:032d}"


def caller_key(store, number):
    """The caller-history key of a number (a keyed hash: the store's keyring holds the key)."""
    return keys.caller(number, store.keyring.hash_key)


def snapshot(redis):
    """Every key and its value (events included): 'nothing changed' means this is equal."""
    return {k: redis.dump(k) for k in sorted(redis.scan_iter("*"))}


def events(redis, kind=None):
    return [e for _, e in redis.xrange(keys.EVENTS) if kind is None or e["type"] == kind]


def test_open_call_creates_the_record_once(store, redis, clock):
    assert store.open_call(sid(1), A, {"from": A, "flow": "hotline", "lang": "en"}) == (True, None, None)
    rec = redis.hgetall(keys.call(sid(1)))
    assert rec == {"sid": sid(1), "from": A, "flow": "hotline", "lang": "en", "started_at": str(clock()),
                   "transfers": "0", "boost": "", "status": "in_bot"}
    assert redis.zscore(keys.ACTIVE, sid(1)) == redis.zscore(keys.RECENT, sid(1)) == clock()
    assert 0 < redis.ttl(keys.call(sid(1))) <= RETENTION
    history = caller_key(store, A)
    assert 0 < redis.ttl(history) <= keys.CALLER_TTL and redis.hget(history, "last_sid") == sid(1)
    before = snapshot(redis)
    clock.advance(5)
    # Twilio retries /voice (or a second process gets it): nothing changes, not even the fields.
    assert store.open_call(sid(1), A, {"from": A, "flow": "hotline_ko", "lang": "ko"}) == (False, None, None)
    assert snapshot(redis) == before and len(events(redis, "call_started")) == 1


def test_a_retried_open_call_returns_the_first_answer(store):
    store.open_call(sid(1), A, {})
    store.apply_turn(sid(1), A, 0, "<Response>welcome</Response>", {"step": "welcome"})
    assert store.open_call(sid(1), A, {}) == (False, None, "<Response>welcome</Response>")


def test_repeat_callers_are_boosted(store, redis, clock):
    store.open_call(sid(1), A, {})
    clock.advance(60)
    assert store.open_call(sid(2), A, {}) == (True, "repeat_caller", None)
    store.apply_turn(sid(2), A, 1, "R", {}, transfer=True)        # this time A went to a person
    clock.advance(60)
    assert store.open_call(sid(3), A, {}) == (True, "transferred_before", None)
    assert redis.hget(keys.call(sid(3)), "boost") == "transferred_before"
    assert store.open_call(sid(4), B, {}) == (True, None, None)   # somebody else: no boost


def test_a_turn_applies_once_and_a_retry_gets_the_same_reply(store, redis, clock):
    store.open_call(sid(1), A, {})
    queues = Queues(redis, RETENTION)
    turns = [{"who": "caller", "input": "dtmf", "text": "0"}, {"who": "bot", "text": "Connecting you."}]
    applied = store.apply_turn(sid(1), A, 1, "<Response>R1</Response>", {"step": "", "status": "queued", "answered": 1},
                               turns=turns, transfer=True, event="handoff", data={"queue": "normal"},
                               ops=queues.join_ops("normal", sid(1), clock()))
    assert applied is None
    rec = redis.hgetall(keys.call(sid(1)))
    assert rec["status"] == "queued" and rec["answered"] == "1" and rec["transfers"] == "1" and rec["step"] == ""
    assert [json.loads(t) for t in redis.lrange(keys.turns(sid(1)), 0, -1)] == turns
    assert redis.hget(keys.replies(sid(1)), "1") == "<Response>R1</Response>"
    assert redis.zscore(keys.queue("normal"), sid(1)) == clock()
    assert redis.hget(caller_key(store, A), "transferred") == "1"
    [handoff] = events(redis, "handoff")
    assert handoff["sid"] == sid(1) and json.loads(handoff["data"]) == {"queue": "normal"}
    before = snapshot(redis)
    clock.advance(3)
    for reply in ("<Response>R1</Response>", "<Response>something else</Response>"):
        again = store.apply_turn(sid(1), A, 1, reply, {"status": "in_bot"}, turns=turns, transfer=True,
                                 event="handoff", ops=queues.leave_ops(sid(1)))
        assert again == "<Response>R1</Response>"
    assert snapshot(redis) == before                # no second transfer, transcript entry or event
    assert store.apply_turn(sid(1), A, 2, "R2", {}, transfer=True) is None
    assert redis.hget(keys.call(sid(1)), "transfers") == "2"


def test_only_known_side_effects_may_ride_along(store, redis):
    store.open_call(sid(1), A, {})
    before = snapshot(redis)
    with pytest.raises(ValueError, match="DEL"):
        store.apply_turn(sid(1), A, 1, "R1", {"step": "x"}, ops=[["DEL", keys.ACTIVE]])
    with pytest.raises(ValueError, match="FLUSHDB"):
        store.record_once(sid(1), "dial_result", {"dial_status": "completed"}, "dial_result", ops=[["FLUSHDB"]])
    assert snapshot(redis) == before                # refused before anything was written


def test_a_one_time_effect_applies_once(store, redis, clock):
    store.open_call(sid(1), A, {})
    ops = Queues(redis, RETENTION).join_ops("urgent", sid(1), clock())
    assert store.record_once(sid(1), "dial_result", {"dial_status": "no-answer"}, "dial_result", transfer=True,
                             ops=ops) == 1
    rec = redis.hgetall(keys.call(sid(1)))
    assert rec["dial_status"] == "no-answer" and rec["transfers"] == "1"
    assert redis.zscore(keys.queue("urgent"), sid(1)) == clock()
    assert len(events(redis, "dial_result")) == 1
    before = snapshot(redis)
    assert store.record_once(sid(1), "dial_result", {"dial_status": "busy"}, "dial_result", transfer=True,
                             ops=ops) == 0
    assert snapshot(redis) == before
    assert store.record_once(sid(1), "other_marker", {}, "dial_result") == 1      # markers are per effect


def test_a_one_time_effect_for_an_unknown_call_writes_nothing(store, redis):
    before = snapshot(redis)
    assert store.record_once(sid(9), "dial_result", {"dial_status": "busy"}, "dial_result") == -1
    assert store.close(sid(9), {"status": "ended"}) == (-1, None)
    assert snapshot(redis) == before


@pytest.mark.parametrize("fields,transfer,outcome", [
    ({}, False, "hangup"),
    ({"answered": 1}, False, "answered"),
    ({"answered": 1}, True, "handoff"),
])
def test_close_sets_the_outcome_once(store, redis, clock, fields, transfer, outcome):
    store.open_call(sid(1), A, {})
    store.apply_turn(sid(1), A, 1, "R1", dict(fields, status="callback"), transfer=transfer)
    clock.advance(30)
    assert store.close(sid(1), {"status": "ended"}, ops=Queues.leave_ops(sid(1))) == (1, outcome)
    rec = redis.hgetall(keys.call(sid(1)))
    assert rec["outcome"] == outcome and rec["status"] == "ended" and rec["last_status"] == "callback"
    assert float(rec["ended_at"]) == clock()
    assert redis.zscore(keys.ACTIVE, sid(1)) is None and redis.zscore(keys.RECENT, sid(1)) is not None
    clock.advance(30)
    assert store.close(sid(1), {"status": "ended"}) == (0, None)
    assert float(redis.hget(keys.call(sid(1)), "ended_at")) == clock() - 30
    assert len(events(redis, "call_ended")) == 1


def test_every_key_of_a_call_expires(store, redis):
    store.open_call(sid(1), A, {})
    store.apply_turn(sid(1), A, 1, "R1", {}, turns=[{"who": "bot", "text": "hi"}])
    store.record_once(sid(1), "closed", {"status": "ended"}, "call_ended", close=True)
    for key in keys.call_keys(sid(1)) + [keys.RECENT, keys.EVENTS, caller_key(store, A)]:
        assert redis.exists(key) and 0 < redis.ttl(key) <= max(RETENTION, keys.CALLER_TTL), key
    assert not redis.exists(keys.ACTIVE)            # its only call ended


def test_report_leaves_the_engine_state_out_and_skips_broken_entries(store, redis):
    store.open_call(sid(1), A, {"state": json.dumps({"step": "welcome"})})
    store.apply_turn(sid(1), A, 1, "R1", {}, turns=[{"who": "caller", "text": "hi"}])
    redis.rpush(keys.turns(sid(1)), "{not json", "[1, 2]")
    report = read_report(redis, sid(1))
    assert "state" not in report["record"] and report["record"]["sid"] == sid(1)
    assert report["turns"] == [{"who": "caller", "text": "hi"}]
    assert read_report(redis, sid(9)) is None and store.report(sid(1)) == report


@pytest.mark.parametrize("raw,value", [("3.5", 3.5), ("0", 0.0), (None, None), ("", None), ("soon", None)])
def test_num(raw, value):
    assert num(raw) == value
