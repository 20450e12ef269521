"""Opening hours: out of hours a request for a person becomes an offer of a call back or a message
(urgent ones with the flow's guidance, and flagged urgent); in hours it queues; holidays are closed;
bad hours are reported by check-flows with file and line."""
import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from ivr import keys
from ivr.config import ROOT
from ivr.flows.loader import load_flow
from tests.support import Clock
from tests.support.dashboard import add_operator, login
from tests.support.hotline import caller, post, said, start, verb

NY = ZoneInfo("America/New_York")


def at(text, tz=NY) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


NIGHT = at("2026-03-04 03:10")       # a Wednesday, 3 a.m. in New York
NOON = at("2026-03-04 12:00")
CHRISTMAS = at("2026-12-25 12:00")   # a Friday, but a holiday


def test_opening_hours_of_the_shipped_flows():
    hours = load_flow(ROOT / "flows" / "hotline.yaml").hours
    assert hours.is_open(NOON) and not hours.is_open(NIGHT) and not hours.is_open(CHRISTMAS)
    assert hours.is_open(at("2026-03-04 08:00")) and not hours.is_open(at("2026-03-04 22:00"))
    ko = load_flow(ROOT / "flows" / "hotline_ko.yaml").hours
    seoul = ZoneInfo("Asia/Seoul")
    assert ko.is_open(at("2026-03-04 12:00", seoul)) and not ko.is_open(at("2026-02-17 12:00", seoul))  # 설날


@pytest.fixture
def closed_line(serve):
    return serve(clock=Clock(NIGHT), hours="flow")


def test_out_of_hours_the_caller_hears_so_and_a_person_becomes_a_callback_offer(closed_line, redis):
    call = caller(1)
    greeting = post(closed_line, "/voice", call)
    assert said(greeting).startswith("Our team is away right now.")
    assert verb(greeting, "Gather") is not None                          # the bot still answers
    answer = post(closed_line, "/voice/gather?turn=1", dict(call, Digits="3"))   # opening hours: answered
    assert "staffed every day" in said(answer)
    root = post(closed_line, "/voice/gather?turn=2", dict(call, Digits="0"))
    assert verb(root, "Enqueue") is None and verb(root, "Dial") is None
    offer = verb(root, "Gather")
    assert "Our team is not available at the moment." in said(root)
    assert "Press 1 and we will call you back" in said(offer) and "/voice/closed" in offer.get("action")
    rec = redis.hgetall(keys.call(call["CallSid"]))
    assert rec["status"] == "closed_offer" and rec["after_hours"] == "1" and rec["transfers"] == "1"
    assert redis.zcard(keys.queue("normal")) == 0

    bye = post(closed_line, offer.get("action"), dict(call, Digits="1"))
    assert "call you back as soon as we open" in said(bye) and verb(bye, "Hangup") is not None
    rec = redis.hgetall(keys.call(call["CallSid"]))
    assert rec["callback_state"] == "waiting" and rec["callback_after_hours"] == "1"
    assert redis.zscore(keys.CALLBACKS, call["CallSid"]) == float(rec["handoff_at"])


def test_in_hours_the_same_request_queues(serve, redis):
    client = serve(clock=Clock(NOON), hours="flow")
    root = start(client, caller(2), "0")
    assert verb(root, "Enqueue").text == "ivr-normal" and "Our team" not in said(root)


def test_holidays_are_closed(serve, redis):
    client = serve(clock=Clock(CHRISTMAS), hours="flow")
    root = start(client, caller(3), "0")
    assert verb(root, "Enqueue") is None and "call you back" in said(verb(root, "Gather"))


@pytest.mark.parametrize("words, guidance", [
    ("my phone battery is smoking", "For your safety"),
    ("someone charged my card and i did not make it", "call your bank now"),
])
def test_urgent_out_of_hours_hears_guidance_and_the_callback_is_flagged_urgent(closed_line, redis, words, guidance):
    call = caller(4)
    root = start(closed_line, call, words)
    assert guidance in said(root) and verb(root, "Enqueue") is None
    post(closed_line, verb(root, "Gather").get("action"), dict(call, Digits="1"))
    add_operator(redis)
    web = closed_line.app.test_client()
    login(web)
    [row] = web.get("/dashboard/api/live").get_json()["callbacks"]
    assert row["sid"] == call["CallSid"] and row["urgent"] is True and row["after_hours"] is True


def test_out_of_hours_a_message_silence_and_a_withheld_number(closed_line, redis):
    call = caller(5)
    offer = verb(start(closed_line, call, "0"), "Gather")
    record = post(closed_line, offer.get("action"), dict(call, Digits="2"))
    assert "leave your name and your message" in said(record) and verb(record, "Record") is not None

    quiet = caller(6)
    root = start(closed_line, quiet, "0")
    again = post(closed_line, verb(root, "Redirect").text, quiet)          # no key: asked once more
    assert "Press 1" in said(again)
    bye = post(closed_line, verb(again, "Redirect").text, quiet)           # still nothing: a call back
    assert "call you back" in said(bye)
    assert redis.hget(keys.call(quiet["CallSid"]), "callback_state") == "waiting"

    hidden = caller(7, "anonymous")
    root = start(closed_line, hidden, "0")
    assert "can't see your phone number" in said(root) and verb(root, "Record") is not None
    assert verb(root, "Gather") is None


def test_a_simulated_caller_silent_at_the_offer_follows_its_redirect_to_the_call_back(serve, redis):
    """`IVR_HOURS=closed ivr simulate --press 0 --press "" --press ""`: silence at a <Gather> is what Twilio
    does when it times out (no actionOnEmptyResult): the <Redirect> after it, asked once more, then the
    call back; never an empty key posted to the offer, which only repeats it."""
    from ivr.simulate.call import CallSimulator

    client = serve(hours="closed")
    report = CallSimulator(client).run([("press", "0"), ("press", ""), ("press", "")])
    offers = [t for t in report["turns"] if "Press 1 and we will call you back" in t["bot"]]
    assert len(offers) == 2
    assert report["turns"][-1]["caller"] == "(silence)" and "We have your request" in report["turns"][-1]["bot"]
    rec = redis.hgetall(keys.call(report["call_sid"]))
    assert rec["callback_state"] == "waiting" and rec["callback_after_hours"] == "1"


def test_korean_keypad_call_out_of_hours_is_offered_in_korean(serve, redis):
    client = serve(clock=Clock(at("2026-03-04 23:30", ZoneInfo("Asia/Seoul"))), hours="flow", speech=False)
    call = caller(8)
    greeting = post(client, "/voice?lang=ko", call)
    assert said(greeting).startswith("지금은 상담원 연결 시간이 아닙니다")
    root = post(client, "/voice/gather?turn=1", dict(call, Digits="0"))
    assert "1번을" in said(verb(root, "Gather")) and verb(root, "Enqueue") is None


def test_ivr_hours_closed_closes_every_flow(serve, redis):
    client = serve(clock=Clock(NOON), hours="closed")
    assert verb(start(client, caller(9), "0"), "Enqueue") is None


@pytest.mark.speech
@pytest.mark.slow
def test_spoken_korean_call_out_of_hours_gets_the_offer_after_the_stream(serve, redis, ko_model):
    from ivr.simulate.call import CallSimulator

    client = serve(clock=Clock(at("2026-03-04 23:30", ZoneInfo("Asia/Seoul"))), hours="flow")
    # Into the welcome 0.4 s in (barge-in): the offer after the stream is what is under test, not the welcome.
    report = CallSimulator(client, stream_options={"barge_in_after": 0.4}).run([("say", "사람 연결")], "ko")
    rec = redis.hgetall(keys.call(report["call_sid"]))
    assert rec["status"] in ("closed_offer", "ended") and rec.get("after_hours") == "1"
    assert "1번을" in report["turns"][-1]["bot"]


@pytest.mark.speech
@pytest.mark.slow
def test_a_key_pressed_after_the_spoken_korean_call_takes_the_call_back_out_of_hours(serve, redis, ko_model):
    """`ivr simulate --lang ko --say 상담원 --press 1`: the stream ends after the bot says nobody is free;
    the key answers the offer Twilio plays next (the <Connect action>'s TwiML), not the stream."""
    from ivr.simulate.call import CallSimulator

    client = serve(hours="closed")
    sim = CallSimulator(client)
    report = sim.run([("say", "상담원"), ("press", "1")], "ko")
    assert sim.stream_result.rest == [("press", "1")] and sim.stream_result.closed_by_server
    assert "1번을" in report["turns"][-2]["bot"] and report["turns"][-1]["caller"] == "press 1"
    rec = redis.hgetall(keys.call(report["call_sid"]))
    assert rec["callback_state"] == "waiting" and rec["callback_after_hours"] == "1"


BAD_HOURS = [
    ("timezone: America/New_York", "timezone: Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ("timezone: America/New_York", "timezone: America", "unknown time zone 'America'"),
    ('mon: ["08:00-22:00"]', 'mon: ["08:00-25:00"]', "mon '08:00-25:00' is not a time span"),
    ('tue: ["08:00-22:00"]', 'tue: ["22:00-08:00"]', "ends before it starts"),
    ('wed: ["08:00-22:00"]', 'wed: ["08:00-14:00", "13:00-22:00"]', "wed has overlapping spans"),
    ("holidays: [2025-12-25,", "holidays: [2025-13-45,", "is not a date"),
    ("safety_hazard: guidance_safety", "safety_hazard: guidance_safty", "guidance message 'guidance_safty'"),
    ('fri: ["08:00-22:00"]', 'fry: ["08:00-22:00"]', "Additional properties are not allowed ('fry'"),
]


@pytest.mark.parametrize("good, bad, message", BAD_HOURS)
def test_check_flows_reports_bad_hours_with_file_and_line(tmp_path, good, bad, message):
    text = (ROOT / "flows" / "hotline.yaml").read_text()
    assert good in text
    text = text.replace(good, bad, 1)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "orders.yaml").write_text((ROOT / "flows" / "data" / "orders.yaml").read_text())
    path = tmp_path / "hotline.yaml"
    path.write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if bad.split(":")[0] in row and
                (bad.split(":", 1)[1].strip()[:6] in row))
    proc = subprocess.run([sys.executable, "-m", "ivr.cli", "check-flows", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert f"{path}:{line}: " in proc.stderr and message in proc.stderr, proc.stderr
