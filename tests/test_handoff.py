"""Human handoff: priority queues, exact waits, idempotent transfer counts, whisper, callbacks."""
import json
import os
import re
import subprocess
import sys

import pytest

from ivr import keys, stats
from ivr.simulate.call import CallSimulator
from ivr.simulate.twilio_client import parse_twiml
from tests.support import Clock, press

AGENT = {"From": "+15005550777", "To": "+15005550001"}


def caller(n):
    return {"CallSid": f"CA{n:032d}", "From": f"+1500555{n:04d}", "To": "+15005550100"}


def start_and_press(client, call, *inputs):
    """Place a call and give it inputs; returns the last TwiML root."""
    status, body = client.post("/voice", call)
    assert status == 200
    for i, inp in enumerate(inputs, 1):
        params = dict(call, Digits=inp) if inp.isdigit() else dict(call, SpeechResult=inp, Confidence="0.9")
        status, body = client.post(f"/voice/gather?turn={i}", params)
        assert status == 200, body
    return parse_twiml(body)


def enqueue_verb(root):
    return next(v for v in root if v.tag == "Enqueue")


def agent_dials_in(client, n):
    status, body = client.post("/voice/agent", dict(AGENT, CallSid=f"CA{n:032d}"))
    assert status == 200
    root = parse_twiml(body)
    briefing = " ".join(v.text for v in root if v.tag == "Say")
    queue = next((q for d in root if d.tag == "Dial" for q in d if q.tag == "Queue"), None)
    return briefing, queue


def test_urgent_caller_dequeued_before_normal_who_waited_longer(serve, redis):
    clock = Clock()
    client = serve(clock=clock)
    normal, urgent = caller(1), caller(2)
    assert enqueue_verb(start_and_press(client, normal, "0")).text == "ivr-normal"
    clock.advance(120)
    assert enqueue_verb(start_and_press(client, urgent, "my phone is smoking and smells like burning")).text == \
        "ivr-urgent"
    assert redis.zrange(keys.queue("normal"), 0, -1) == [normal["CallSid"]]
    assert redis.zrange(keys.queue("urgent"), 0, -1) == [urgent["CallSid"]]

    briefing, queue = agent_dials_in(client, 900)
    assert queue.text == "ivr-urgent" and briefing.startswith("Urgent caller")
    assert "safety hazard" in briefing and "smoking" in briefing
    briefing2, queue2 = agent_dials_in(client, 901)
    assert queue2.text == "ivr-normal" and "asked for a person" in briefing2


def test_waits_and_transfers_match_the_timeline_exactly(serve, redis):
    clock = Clock(1_800_000_000.0)
    client = serve(clock=clock)
    call = caller(3)
    clock.advance(10)
    root = start_and_press(client, call, "2", "0")     # handoff at t0+10
    enq = enqueue_verb(root)
    clock.advance(37)
    _, queue = agent_dials_in(client, 902)
    client.post(queue.get("url"), dict(call, QueueTime="37", DequeingCallSid="CA" + "9" * 32))
    clock.advance(300)                                # the conversation with the agent
    for _ in range(2):                                # Twilio retries the action
        client.post(enq.get("action"), dict(call, QueueResult="bridged", QueueTime="37"))
    client.post("/voice/status", dict(call, CallStatus="completed", CallDuration="347"))
    rec = redis.hgetall(keys.call(call["CallSid"]))
    assert float(rec["handoff_at"]) == 1_800_000_010.0
    assert float(rec["answered_at"]) == 1_800_000_047.0
    assert float(rec["wait_seconds"]) == 37.0
    assert rec["transfers"] == "1" and rec["outcome"] == "handoff" and rec["queue_result"] == "bridged"
    assert redis.zcard(keys.WAITS) == 1
    s = stats.wait_stats(redis, clock(), stats.HOUR)
    assert s == {"answered": 1, "abandoned": 0, "avg_wait": 37.0, "p90_wait": 37.0}


def test_second_process_and_retries_leave_same_counts(serve, redis):
    clock = Clock()
    a, b = serve(clock=clock), serve(clock=clock)
    call = caller(4)
    start_and_press(a, call, "0")
    for client in (a, b, a, b):
        client.post("/voice/gather?turn=1", dict(call, Digits="0"))
        client.post("/voice/queue/result?turn=2", dict(call, QueueResult="hangup", QueueTime="12"))
        client.post("/voice/status", dict(call, CallStatus="completed"))
    rec = redis.hgetall(keys.call(call["CallSid"]))
    assert rec["transfers"] == "1" and rec["status"] == "ended" and rec["queue_result"] == "hangup"
    assert redis.zcard(keys.ABANDONED) == 1 and redis.zcard(keys.queue("normal")) == 0
    types = [e["type"] for _, e in redis.xrange(keys.EVENTS)]
    assert types.count("handoff") == 1 and types.count("queue_result") == 1 and types.count("call_ended") == 1


def test_wait_announcements_vary_and_count_urgent_callers_ahead(serve, redis):
    client = serve()
    urgent, normal = caller(5), caller(6)
    start_and_press(client, urgent, "9")
    wait_url = enqueue_verb(start_and_press(client, normal, "0")).get("waitUrl")
    texts = []
    for round_ in range(4):
        _, body = client.post(wait_url, dict(normal, QueuePosition="1", QueueTime=str(45 * round_),
                                             AvgQueueTime="60"))
        root = parse_twiml(body)
        texts.append(" ".join(v.text for v in root if v.tag == "Say"))
        assert any(v.tag == "Play" for v in root)
    assert all(a != b for a, b in zip(texts, texts[1:]))   # never the same words twice running
    assert "one caller ahead" in texts[0]                  # the urgent caller is ahead
    # Nobody answered yet: no wait is made up (Twilio's AvgQueueTime is what callers now waiting
    # have waited so far, not how long they will wait).
    assert "don't know exactly how long" in texts[0] and not any("minute" in t for t in texts)


def answered_after(client, n, seconds):
    """Caller n is handed off to the normal queue and an agent takes them after `seconds` there."""
    call = caller(n)
    start_and_press(client, call, "0")
    _, queue = agent_dials_in(client, 800 + n)
    client.post(queue.get("url"), dict(call, QueueTime=str(seconds), DequeingCallSid=f"CA{800 + n:032d}"))


def test_the_wait_told_is_what_callers_who_waited_as_long_went_on_to_wait(serve, redis):
    """A Korean caller on hold: the figure comes from the waits measured in the last hour, beyond
    what this caller has already waited; once they have waited longer than anyone answered, no
    figure is promised (never "about 1 minute" half an hour in)."""
    clock = Clock()
    client = serve(clock=clock, speech=False)
    for n, seconds in ((21, 60), (22, 90), (23, 240)):
        answered_after(client, n, seconds)
    call = caller(24)
    client.post("/voice?lang=ko", call)
    _, body = client.post("/voice/gather?turn=1", dict(call, Digits="0"))
    wait_url = enqueue_verb(parse_twiml(body)).get("waitUrl")

    def told(position, queue_time):
        _, body = client.post(wait_url, dict(call, QueuePosition=str(position), QueueTime=str(queue_time)))
        return " ".join(v.text for v in parse_twiml(body).iter("Say"))

    assert "약 2분" in told(1, 0)          # those answered waited 130 s on average
    assert "약 2분" in told(1, 100)        # only the 240 s wait was longer: 140 s still to come
    assert "약 4분" in told(2, 0)          # and one caller ahead: another average wait
    for position, queue_time in ((1, 600), (1, 1200), (1, 1800), (2, 300)):
        text = told(position, queue_time)
        assert not re.search(r"\d+분", text), (position, queue_time, text)
        assert "앞에 한 분이" in text if position == 2 else "다음 차례" in text
    assert "정확한 대기 시간은 말씀드리기 어렵" in told(1, 2400) + told(1, 2445)    # in one round or the next


@pytest.mark.parametrize("lang,label", [("en", "Priority: called in the last {hours} hours."),
                                        ("ko", "우선 연결 사유: 최근 {hours}시간 안에 전화하신 적 있음.")])
def test_a_caller_who_rang_moments_ago_is_briefed_by_the_repeat_caller_window(serve, redis, lang, label):
    """Seconds after their first call, the agent hears what the repeat-caller rule means (a call in the
    last keys.CALLER_TTL), not "called before today"."""
    client = serve(speech=False)
    first, again = caller(31), dict(caller(32), From=caller(31)["From"])
    client.post(f"/voice?lang={lang}", first)
    client.post("/voice/status", dict(first, CallStatus="completed"))
    client.post(f"/voice?lang={lang}", again)
    _, body = client.post("/voice/gather?turn=1", dict(again, Digits="0"))
    assert enqueue_verb(parse_twiml(body)).text == "ivr-urgent"
    assert redis.hget(keys.call(again["CallSid"]), "boost") == "repeat_caller"
    briefing, _ = agent_dials_in(client, 931)
    assert label.format(hours=keys.CALLER_TTL // 3600) in briefing, briefing


def test_callback_offer_keeps_place(serve, redis):
    clock = Clock()
    client = serve(clock=clock, callback_after=60)
    report = CallSimulator(client, agent="no-answer", queue_wait=90, queue_choice="callback").run([press("0")])
    rec = redis.hgetall(keys.call(report["call_sid"]))
    assert rec["status"] in ("callback", "ended") and rec["queue_choice"] == "callback"
    assert rec["queue_result"] == "leave"
    assert redis.zscore(keys.CALLBACKS, report["call_sid"]) == float(rec["enqueued_at"])
    assert "call you back" in report["turns"][-1]["bot"]


def test_voicemail_path(serve, redis):
    client = serve(callback_after=60)
    report = CallSimulator(client, agent="no-answer", queue_wait=90, queue_choice="voicemail").run([press("0")])
    rec = redis.hgetall(keys.call(report["call_sid"]))
    assert rec["queue_choice"] == "voicemail" and rec["voicemail_url"].startswith("https://")


def test_dial_no_answer_overflows_to_queue_counted_once(serve, redis):
    clock = Clock()
    client = serve(clock=clock, handoff_mode="dial", dial_overflow="queue")
    call = caller(7)
    root = start_and_press(client, call, "0")
    dial = next(v for v in root if v.tag == "Dial")
    clock.advance(25)
    bodies = {client.post(dial.get("action"), dict(call, DialCallStatus="no-answer"))[1] for _ in range(3)}
    assert len(bodies) == 1
    overflow = parse_twiml(bodies.pop())
    assert enqueue_verb(overflow).text == "ivr-normal"
    rec = redis.hgetall(keys.call(call["CallSid"]))
    assert rec["transfers"] == "2" and rec["overflowed_from"] == "dial" and rec["dial_status"] == "no-answer"
    assert redis.zrange(keys.queue("normal"), 0, -1) == [call["CallSid"]]
    # Waited 25 s on the ringing line, then 15 s in the queue: 40 s in all.
    clock.advance(15)
    _, queue = agent_dials_in(client, 903)
    client.post(queue.get("url"), dict(call, QueueTime="15"))
    assert float(redis.hget(keys.call(call["CallSid"]), "wait_seconds")) == 40.0


@pytest.mark.parametrize("talk", ["-1e308", "-5", "nan", "99999"])
def test_an_impossible_talk_time_does_not_enter_the_waits(serve, redis, talk):
    """DialCallDuration dates the answer when the whisper did not: a value that cannot be true
    (negative, longer than the call, not a number) must not make a wait of its own."""
    clock = Clock()
    client = serve(clock=clock, handoff_mode="dial")
    call = caller(8)
    dial = next(v for v in start_and_press(client, call, "0") if v.tag == "Dial")
    clock.advance(30)
    client.post(dial.get("action"), dict(call, DialCallStatus="completed", DialCallDuration=talk))
    wait = float(redis.hget(keys.call(call["CallSid"]), "wait_seconds"))
    assert 0.0 <= wait <= 30.0, wait


def test_dial_mode_whisper_has_intent_and_words(serve, redis):
    client = serve(handoff_mode="dial")
    call = caller(8)
    root = start_and_press(client, call, "someone charged my card and i did not make it")
    number = next(n for d in root if d.tag == "Dial" for n in d if n.tag == "Number")
    _, body = client.post(number.get("url"), dict(call, CallSid="CA" + "8" * 32))
    whisper = " ".join(v.text for v in parse_twiml(body) if v.tag == "Say")
    assert "fraud or account security" in whisper and "someone charged my card" in whisper


@pytest.mark.slow       # `ivr simulate` in its own process, with its own embedded Redis
def test_simulate_reports_transfers_queue_and_wait():
    env = dict(os.environ, IVR_HOURS="open")   # the shipped flows close at night
    proc = subprocess.run([sys.executable, "-m", "ivr.cli", "simulate", "--press", "0", "--json"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["outcome"] == "handoff" and report["transfers"] == 1
    assert report["queue"] == "normal" and report["wait_seconds"] == 35.0


def test_every_key_has_a_retention_ttl(serve, redis, config):
    client = serve(callback_after=60)
    CallSimulator(client, queue_wait=90).run([press("0")])
    CallSimulator(client, agent="no-answer", queue_wait=90, queue_choice="callback").run([press("0")])
    CallSimulator(client, agent="no-answer", queue_wait=90).run([press("9")])
    found = list(redis.scan_iter("ivr:*"))
    assert keys.WAITS in found and keys.CALLBACKS in found and keys.ABANDONED in found
    for key in found:
        if key == keys.SECRET_KEY:      # the server secret (IVR_SECRET_KEY unset) lives as long as the hotline
            continue
        if key == keys.AGENTS:
            continue    # the agent registry is configuration, kept until removed (like operator accounts)
        assert redis.ttl(key) > 0, f"{key} has no TTL"


def test_closing_keeps_how_the_call_ended(serve, redis):
    client = serve(callback_after=60)
    report = CallSimulator(client, agent="no-answer", queue_wait=90, queue_choice="callback").run([press("0")])
    rec = redis.hgetall(keys.call(report["call_sid"]))
    assert rec["status"] == "ended" and rec["last_status"] == "callback"
