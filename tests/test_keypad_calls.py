"""Whole calls over HTTP, signed like Twilio's, against a real Redis."""
import json

from ivr import keys
from ivr.simulate.call import CallSimulator
from tests.support import press, say


def test_keypad_call_is_answered(simulate, redis):
    report = simulate(press("3"), press("2"))
    assert report["outcome"] == "answered"
    assert report["intents"] == ["opening_hours", "goodbye"]
    assert report["queue"] is None and report["transfers"] == 0
    assert "Monday to Saturday" in report["turns"][1]["bot"]
    rec = redis.hgetall(keys.call(report["call_sid"]))
    assert rec["status"] == "ended" and rec["outcome"] == "answered" and rec["ended_at"]
    assert not redis.zscore(keys.ACTIVE, report["call_sid"])


def test_press_zero_reaches_human_and_records_wait(simulate, redis):
    report = simulate(press("2"), press("0"), queue_wait=37)
    assert report["outcome"] == "handoff"
    assert report["intents"] == ["return_refund", "agent_request"]
    assert report["queue"] == "normal" and report["transfers"] == 1
    assert report["wait_seconds"] == 37
    rec = redis.hgetall(keys.call(report["call_sid"]))
    assert rec["queue_result"] == "bridged" and rec["reason"] == "agent_request"
    assert float(rec["answered_at"]) >= float(rec["handoff_at"])


def test_dial_mode_records_result_and_wait(serve, redis):
    client = serve(handoff_mode="dial")
    report = CallSimulator(client, agent_seconds=30).run([press("2"), press("0")])
    assert report["outcome"] == "handoff" and report["transfers"] == 1
    rec = redis.hgetall(keys.call(report["call_sid"]))
    assert rec["dial_status"] == "completed"
    assert 0 <= float(rec["wait_seconds"]) < 5
    assert float(rec["answered_at"]) >= float(rec["handoff_at"])


def test_order_status_reads_demo_data(simulate):
    report = simulate(press("1"), press("100561#"), press("2"))
    assert "being packed" in report["turns"][2]["bot"]
    assert report["outcome"] == "answered"


def test_busy_human_line_offers_voicemail(serve, redis):
    client = serve(handoff_mode="dial", dial_overflow="callback")
    report = CallSimulator(client, agent="busy").run([press("0")])
    rec = redis.hgetall(keys.call(report["call_sid"]))
    assert rec["dial_status"] == "busy"
    assert rec["voicemail_url"].startswith("https://")
    assert "leave" in report["turns"][-2]["bot"] or "message" in report["turns"][-1]["bot"] + report["turns"][-2]["bot"]


def test_two_misses_go_to_human_never_a_loop(simulate):
    # Every key of the welcome is an option (8: a charge or account change the caller did not make):
    # the misses are words the bot cannot place.
    report = simulate(say("purple monkey dishwasher"), say("purple monkey dishwasher"))
    assert report["outcome"] == "handoff"
    assert report["transfers"] == 1
    assert "didn't catch" in report["turns"][1]["bot"]


def test_key_8_puts_a_caller_with_a_charge_they_did_not_make_ahead(simulate):
    """Money safety reaches a person first on a keypad line too: the welcome's 8, as in the Korean flow."""
    report = simulate(press("8"))
    assert report["intents"][0] == "fraud_security"
    assert report["outcome"] == "handoff" and report["queue"] == "urgent"


def test_transcript_redacts_card_numbers(simulate, redis):
    report = simulate(say("my card 4111 1111 1111 1111 was charged twice"))
    turns = [json.loads(t) for t in redis.lrange(keys.turns(report["call_sid"]), 0, -1)]
    stored = json.dumps(turns)
    assert "4111" not in stored and "[card number removed]" in stored
    assert report["queue"] == "urgent"


def test_repeat_caller_gets_priority(simulate, redis):
    first = simulate(press("3"), press("2"), from_number="+15005550199")
    assert first["queue"] is None
    second = simulate(press("0"), from_number="+15005550199")
    assert second["queue"] == "urgent"
    assert redis.hget(keys.call(second["call_sid"]), "boost") == "repeat_caller"
