"""Webhook security and idempotency over a real socket and a real Redis."""
import json
import urllib.request

import pytest

from ivr import keys

CALL = {"CallSid": "CA" + "1" * 32, "From": "+15005550111", "To": "+15005550100"}


def _snapshot(redis):
    keys_now = {k: redis.dump(k) for k in redis.scan_iter("*") if not k.startswith(keys.EVENTS)}
    return keys_now, redis.exists(keys.EVENTS) and redis.xlen(keys.EVENTS)


def test_signed_webhook_accepted(twilio, redis):
    status, body = twilio.post("/voice", CALL)
    assert status == 200 and "<Gather" in body
    rec = redis.hgetall(keys.call(CALL["CallSid"]))
    assert rec["from"] == CALL["From"] and rec["status"] == "in_bot" and rec["step"] == "welcome"


@pytest.mark.parametrize("signature", ["", "not-a-signature", "wrong"])
def test_unsigned_or_wrongly_signed_rejected_without_writes(twilio, redis, signature):
    if signature == "wrong":
        # A valid signature for other parameters: tampering with the body must fail.
        signature = twilio.validator.compute_signature(twilio.absolute("/voice"), dict(CALL, From="+19999999999"))
    before = _snapshot(redis)
    status, body = twilio.post("/voice", CALL, signature=signature)
    assert status == 403
    assert "X-Twilio-Signature" in body
    assert _snapshot(redis) == before
    assert not redis.exists(keys.call(CALL["CallSid"]))


def test_signature_for_other_host_rejected(twilio, server, redis):
    # Signed for the local URL while PUBLIC_URL says otherwise: a proxy must not be bypassed.
    from twilio.request_validator import RequestValidator
    sig = RequestValidator("test-token-" + "x" * 20).compute_signature("http://evil.example/voice", CALL)
    status, _ = twilio.post("/voice", CALL, signature=sig)
    assert status == 403 and not redis.exists(keys.call(CALL["CallSid"]))


def test_retried_webhook_counts_transfer_once(twilio, redis):
    sid = CALL["CallSid"]
    twilio.post("/voice", CALL)
    first = twilio.post("/voice/gather?turn=1", dict(CALL, Digits="0"))
    events_before = redis.xlen(keys.EVENTS)
    for _ in range(3):  # Twilio retries on timeouts; a second process may get a copy too
        again = twilio.post("/voice/gather?turn=1", dict(CALL, Digits="0"))
        assert again == first
    rec = redis.hgetall(keys.call(sid))
    assert rec["transfers"] == "1"
    assert redis.xlen(keys.EVENTS) == events_before
    caller_turns = [json.loads(t) for t in redis.lrange(keys.turns(sid), 0, -1) if '"caller"' in t]
    assert len(caller_turns) == 1


def test_retried_incoming_call_is_idempotent(twilio, redis):
    a = twilio.post("/voice", CALL)
    b = twilio.post("/voice", CALL)
    assert a == b
    assert redis.llen(keys.turns(CALL["CallSid"])) == 1
    assert redis.zcard(keys.ACTIVE) == 1


def test_status_callback_closes_record_once(twilio, redis):
    sid = CALL["CallSid"]
    twilio.post("/voice", CALL)
    for _ in range(2):
        status, _ = twilio.post("/voice/status", dict(CALL, CallStatus="completed", CallDuration="17"))
        assert status == 204
    rec = redis.hgetall(keys.call(sid))
    assert rec["status"] == "ended" and rec["outcome"] == "hangup" and rec["duration"] == "17"
    assert redis.zscore(keys.ACTIVE, sid) is None
    ended = [e for _, e in redis.xrange(keys.EVENTS) if e["type"] == "call_ended"]
    assert len(ended) == 1


def test_keys_expire_after_retention(twilio, redis, config, app):
    sid = CALL["CallSid"]
    twilio.post("/voice", CALL)
    twilio.post("/voice/gather?turn=1", dict(CALL, Digits="3"))
    for key in keys.call_keys(sid)[:3]:
        ttl = redis.ttl(key)
        assert 0 < ttl <= config.retention_seconds, key
    assert 0 < redis.ttl(keys.caller(CALL["From"], app.extensions["ivr"].keyring.hash_key)) <= keys.CALLER_TTL


def test_unknown_call_goes_to_human(twilio, redis):
    status, body = twilio.post("/voice/gather?turn=4", dict(CALL, CallSid="CA" + "9" * 32, Digits="1"))
    assert status == 200 and "<Dial" in body and "+15005550006" in body


def test_healthz_reports_redis_and_flows(server):
    with urllib.request.urlopen(server.url + "/healthz") as resp:
        body = json.loads(resp.read())
    assert body["redis"] == "ok" and "hotline" in body["flows"]
    # A test server's configuration (a loopback PUBLIC_URL, Twilio's test HUMAN_LINE) is what
    # production must not run with: reported, at 200 (tests/test_preflight.py).
    assert body["status"] == "degraded" and len(body["reasons"]) == 2


def test_oversized_webhook_rejected(twilio, redis):
    status, _ = twilio.post("/voice", dict(CALL, Junk="x" * 100_000))
    assert status == 413
    assert not redis.exists(keys.call(CALL["CallSid"]))


def test_healthz_reports_each_language_model(server):
    with urllib.request.urlopen(server.url + "/healthz") as resp:
        models = json.loads(resp.read())["models"]
    assert models["vosk-en"].startswith("missing: keypad only")       # no English model here
    assert models["vosk-ko"] in ("loaded", "available: loads on the first call")
