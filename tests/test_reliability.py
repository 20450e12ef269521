"""Faults injected on purpose: the caller is never dropped, and no count is corrupted."""
import logging

import pytest
import redis as redis_lib

from ivr import keys
from ivr.server import LoopbackServer
from ivr.simulate.twilio_client import TwilioClient, parse_twiml
from tests.support import port_of, press, say
from tests.support.fault_table import record
from tests.support.procs import RedisProcess, ServeProcess

CALL = {"CallSid": "CA" + "5" * 32, "From": "+15005550155", "To": "+15005550100"}
HUMAN = "+15005550006"


def dials_human(body):
    root = parse_twiml(body)
    return any(n.text == HUMAN for d in root if d.tag == "Dial" for n in d if n.tag == "Number")


def test_redis_down_from_the_start_caller_goes_to_human(make_config, tmp_path, build_app):
    dead = RedisProcess(tmp_path / "r")          # never started: nothing listens on its port
    cfg = make_config(redis_url=dead.url)
    app = build_app(cfg, redis=redis_lib.Redis.from_url(dead.url, socket_timeout=1, socket_connect_timeout=1,
                                                          decode_responses=True))
    with LoopbackServer(app, port=port_of(cfg)) as srv:
        client = TwilioClient(srv.url, cfg.twilio_auth_token)
        status, body = client.post("/voice", CALL)
        assert status == 200 and dials_human(body)
        assert "went wrong" in body
        status, body = client.post("/voice/gather?turn=1", dict(CALL, Digits="3"))
        assert status == 200 and dials_human(body)
        status, _ = client.post("/voice/status", dict(CALL, CallStatus="completed"))
        assert status in (204, 503)
    record("webhook_redis_down", what="Redis unreachable from the first webhook", tried="3 webhooks",
           outcome="apology + <Dial> HUMAN_LINE from configuration alone; status callback 503", dropped_calls=0)


@pytest.mark.slow       # a redis-server process, stopped and restarted
def test_redis_outage_mid_call_then_records_resume_with_exact_counts(make_config, tmp_path, build_app):
    rp = RedisProcess(tmp_path / "r").start()
    try:
        cfg = make_config(redis_url=rp.url)
        conn = redis_lib.Redis.from_url(rp.url, socket_timeout=1, socket_connect_timeout=1, decode_responses=True)
        app = build_app(cfg, redis=conn)
        with LoopbackServer(app, port=port_of(cfg)) as srv:
            client = TwilioClient(srv.url, cfg.twilio_auth_token)
            client.post("/voice", CALL)
            client.post("/voice/gather?turn=1", dict(CALL, Digits="3"))         # answered by the bot
            rp.stop()                                                           # Redis goes away
            status, body = client.post("/voice/gather?turn=2", dict(CALL, Digits="1"))
            assert status == 200 and dials_human(body)                          # caller not dropped
            dial = next(v for v in parse_twiml(body) if v.tag == "Dial")
            rp.start()                                                          # Redis is back, data intact
            for _ in range(2):                                                  # Twilio may retry the action
                client.post(dial.get("action"), dict(CALL, DialCallStatus="completed", DialCallDuration="60"))
            client.post("/voice/status", dict(CALL, CallStatus="completed", CallDuration="95"))
            check = redis_lib.Redis.from_url(rp.url, decode_responses=True)
            rec = check.hgetall(keys.call(CALL["CallSid"]))
            assert rec["transfers"] == "1"              # the emergency transfer, counted once
            assert rec["answered"] == "1" and rec["status"] == "ended" and rec["outcome"] == "handoff"
            assert check.llen(keys.turns(CALL["CallSid"])) == 3   # greeting, caller turn 1, bot reply
        record("webhook_redis_outage", what="Redis stopped mid-call, restarted (AOF)", tried="1 call, 2 dial retries",
               outcome="caller sent to HUMAN_LINE; when Redis was back the emergency transfer was counted once, "
                       "the call closed as handoff", dropped_calls=0, transfers=1)
    finally:
        rp.stop()


def test_replayed_request_for_ended_call_changes_nothing(twilio, redis):
    twilio.post("/voice", CALL)
    twilio.post("/voice/gather?turn=1", dict(CALL, Digits="3"))
    twilio.post("/voice/status", dict(CALL, CallStatus="completed"))
    before = (redis.hgetall(keys.call(CALL["CallSid"])), redis.llen(keys.turns(CALL["CallSid"])),
              redis.xlen(keys.EVENTS))
    status, body = twilio.post("/voice/gather?turn=2", dict(CALL, Digits="0"))
    assert status == 200 and "<Dial" not in body and "<Enqueue" not in body
    twilio.post("/voice/status", dict(CALL, CallStatus="completed"))
    after = (redis.hgetall(keys.call(CALL["CallSid"])), redis.llen(keys.turns(CALL["CallSid"])),
             redis.xlen(keys.EVENTS))
    assert after == before
    record("webhook_replay_after_end", what="Signed request replayed after the call ended", tried="2 requests",
           outcome="harmless hang-up TwiML; record, transcript and events unchanged", writes=0)


def test_logs_hold_no_phone_numbers_or_secrets(simulate, caplog, config):
    caplog.set_level(logging.DEBUG)
    number = "+15005559876"
    simulate(press("0"), from_number=number)
    simulate(say("my card 4111 1111 1111 1111 was charged twice"), from_number=number)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "ivr.voice" in {r.name for r in caplog.records}          # the calls were logged ...
    assert number not in text and "5559876" not in text             # ... without the caller's number
    assert config.twilio_auth_token not in text
    assert "4111 1111" not in text
    record("logs_secrets", what="Logs during calls with a card number spoken", tried="2 calls",
           outcome="no phone number, auth token or card number in any log line",
           log_lines=len(caplog.records), leaks=0)


@pytest.mark.slow       # two `ivr serve` processes, one killed
def test_process_killed_mid_call_next_webhook_served_by_another(redis_url, tmp_path):
    env = {"TWILIO_AUTH_TOKEN": "t" * 32, "PUBLIC_URL": "https://hotline.example", "REDIS_URL": redis_url,
           "IVR_DATA_DIR": str(tmp_path / "var"), "IVR_HANDOFF_MODE": "queue"}
    a, b = ServeProcess(env).start(), ServeProcess(env).start()
    try:
        via_a = TwilioClient(a.url, env["TWILIO_AUTH_TOKEN"], public_url=env["PUBLIC_URL"])
        via_b = TwilioClient(b.url, env["TWILIO_AUTH_TOKEN"], public_url=env["PUBLIC_URL"])
        call = dict(CALL, CallSid="CA" + "6" * 32)
        assert via_a.post("/voice", call)[0] == 200
        assert via_a.post("/voice/gather?turn=1", dict(call, Digits="2"))[0] == 200
        a.kill()                                                         # the process dies mid-call
        status, body = via_b.post("/voice/gather?turn=2", dict(call, Digits="0"))
        assert status == 200 and parse_twiml(body).find("Enqueue").text == "ivr-normal"
        r = redis_lib.Redis.from_url(redis_url, decode_responses=True)
        rec = r.hgetall(keys.call(call["CallSid"]))
        assert rec["transfers"] == "1" and rec["answered"] == "1" and rec["status"] == "queued"
        intents = [t for t in r.lrange(keys.turns(call["CallSid"]), 0, -1) if '"who": "caller"' in t]
        assert len(intents) == 2
        record("process_killed", what="`ivr serve` killed (SIGKILL) mid-call", tried="1 call, 2 real servers",
               outcome="the next webhook, on the other server, continued from Redis to the queue",
               lost_records=0, transfers=1)
    finally:
        a.kill()
        b.kill()
