"""Every caller turn in the stored transcript says what the engine decided, and why."""
import json

from ivr import keys
from tests.support import press, say


def caller_turns(redis, sid):
    return [t for t in (json.loads(x) for x in redis.lrange(keys.turns(sid), 0, -1)) if t["who"] == "caller"]


def test_urgent_turn_records_intent_confidence_and_reason(simulate, redis):
    report = simulate(say("I want to make a formal complaint about your store"), from_number="+15005550301")
    [turn] = caller_turns(redis, report["call_sid"])
    assert turn["intent"] == "complaint" and turn["decision"] == "handoff"
    assert 0.62 <= turn["intent_confidence"] <= 1
    assert turn["detail"].startswith(f"urgent intent complaint ({turn['intent_confidence']:.2f})")
    assert report["queue"] == "urgent" and report["intents"] == ["complaint"]


def test_second_miss_and_frustration_are_explained(simulate, redis):
    missed = simulate(say("tell me a joke"), say("what's the capital of peru"), from_number="+15005550302")
    first, second = caller_turns(redis, missed["call_sid"])
    assert first["decision"] == "clarify" and first["intent"] is None
    assert first["detail"].startswith("low confidence: best ")
    assert second["decision"] == "handoff" and second["detail"].endswith("second miss")
    fed_up = simulate(press("1"), say("oh for god's sake"), from_number="+15005550303")
    last = caller_turns(redis, fed_up["call_sid"])[-1]
    assert last["step"] == "ask_order_number" and last["detail"] == "frustration phrase 'for gods sake'"
    assert fed_up["queue"] == "normal" and redis.hget(keys.call(fed_up["call_sid"]), "reason") == "frustrated"


def test_answered_turn_names_the_target_step(simulate, redis):
    report = simulate(say("how much does it cost to ship to canada"), from_number="+15005550304")
    [turn] = caller_turns(redis, report["call_sid"])
    assert turn["intent"] == "shipping" and turn["decision"] == "answer"
    assert turn["detail"].endswith("-> shipping_answer")
    assert "free over 50 dollars" in report["turns"][1]["bot"]
