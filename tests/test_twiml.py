"""The TwiML renderer on its own (ivr.twiml): engine replies in, Twilio's XML out, read back with
an XML parser the way Twilio reads it."""
from urllib.parse import parse_qs, urlsplit

import pytest

from ivr.config import Config
from ivr.flows.engine import Expect, Reply, Route
from ivr.simulate.twilio_client import parse_twiml
from ivr.twiml import TwimlRenderer

PUBLIC = "https://hotline.example"
SID = "CA" + "1" * 32
MENU = Expect("welcome", ["1", "2", "0"], False, [], False)
ORDER_NUMBER = Expect("ask_order_number", ["0"], True, [], False)


def renderer(**overrides):
    return TwimlRenderer(Config(**dict(dict(twilio_auth_token="t" * 32, public_url=PUBLIC, gather_timeout=7,
                                            dial_timeout=21, human_line="+15005550006"), **overrides)))


def url(value):
    """(path, query as a dict) of an absolute callback URL on our host."""
    parts = urlsplit(value)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC, value
    return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}


def says(element, locale="en-US"):
    spoken = [s for s in element if s.tag == "Say"]
    assert all(s.get("language") == locale for s in spoken)
    return [s.text for s in spoken]


def test_a_menu_gathers_one_key_and_asks_again_on_silence():
    root = parse_twiml(renderer().reply(Reply(["Welcome.", "Press 1."], expect=MENU), sid=SID, turn=3,
                                        locale="en-US"))
    gather, redirect = list(root)
    assert gather.tag == "Gather" and gather.get("input") == "dtmf" and gather.get("numDigits") == "1"
    assert gather.get("timeout") == "7" and gather.get("method") == "POST" and gather.get("finishOnKey") is None
    assert url(gather.get("action")) == ("/voice/gather", {"turn": "3"})
    assert says(gather) == ["Welcome.", "Press 1."]
    assert redirect.tag == "Redirect" and redirect.text == gather.get("action") and redirect.get("method") == "POST"


def test_a_digit_string_is_ended_by_the_hash_key():
    root = parse_twiml(renderer().reply(Reply(["Your order number?"], expect=ORDER_NUMBER), sid=SID, turn=2,
                                        locale="ko-KR"))
    gather = root.find("Gather")
    assert gather.get("finishOnKey") == "#" and gather.get("numDigits") is None
    assert gather.get("actionOnEmptyResult") == "false"
    assert says(gather, "ko-KR") == ["Your order number?"]


def test_handoff_in_queue_mode_enqueues_with_a_wait_page():
    reply = Reply(["Connecting you."], route=Route("urgent", "complaint"))
    root = parse_twiml(renderer(queue_prefix="acme-").reply(reply, sid=SID, turn=4, locale="en-US"))
    assert says(root) == ["Connecting you."]
    enqueue = root.find("Enqueue")
    assert enqueue.text == "acme-urgent" and enqueue.get("method") == "POST"
    assert url(enqueue.get("action")) == ("/voice/queue/result", {"turn": "4"})
    assert url(enqueue.get("waitUrl")) == ("/voice/queue/wait", {"sid": SID, "queue": "urgent"})
    assert enqueue.get("waitUrlMethod") == "POST" and root.find("Dial") is None


def test_handoff_in_dial_mode_rings_the_human_line_with_a_whisper():
    reply = Reply(["Connecting you."], route=Route("normal", "agent_request"))
    root = parse_twiml(renderer(handoff_mode="dial").reply(reply, sid=SID, turn=4, locale="en-US"))
    dial = root.find("Dial")
    assert dial.get("timeout") == "21" and url(dial.get("action")) == ("/voice/dial", {"turn": "4"})
    number = dial.find("Number")
    assert number.text == "+15005550006" and url(number.get("url")) == ("/voice/whisper", {"sid": SID})
    assert root.find("Enqueue") is None


def test_a_reply_without_a_next_step_hangs_up():
    root = parse_twiml(renderer().reply(Reply(["Goodbye."], hangup=True), sid=SID, turn=5, locale="en-US"))
    assert [e.tag for e in root] == ["Say", "Hangup"]


@pytest.mark.parametrize("public,stream", [("https://hotline.example", "wss://hotline.example/media"),
                                           ("http://127.0.0.1:5000", "ws://127.0.0.1:5000/media")])
def test_the_media_stream_url_and_its_parameters(public, stream):
    root = parse_twiml(renderer(public_url=public).stream(params={"flow": "hotline_ko", "lang": "ko", "resume": "1"}))
    connect = root.find("Connect")
    assert connect.get("action") == public + "/voice/stream-ended" and connect.get("method") == "POST"
    element = connect.find("Stream")
    assert element.get("url") == stream and "?" not in element.get("url")     # Twilio allows no query string
    assert {p.get("name"): p.get("value") for p in element.findall("Parameter")} == \
        {"flow": "hotline_ko", "lang": "ko", "resume": "1"}


def test_the_rating_question_then_goodbye():
    root = parse_twiml(renderer().ask_rating(["Glad to help."], "Press 1 to 5.", "Goodbye.", sid=SID, after="bot",
                                             locale="en-US"))
    assert [e.tag for e in root] == ["Say", "Gather", "Say", "Hangup"]
    gather = root.find("Gather")
    assert gather.get("numDigits") == "1" and url(gather.get("action")) == ("/voice/rating", {"after": "bot"})
    assert says(gather) == ["Press 1 to 5."] and says(root) == ["Glad to help.", "Goodbye."]


def test_voicemail_records_until_the_hash_key():
    root = parse_twiml(renderer().voicemail(["Leave a message."], sid=SID, locale="en-US"))
    record = root.find("Record")
    assert says(root) == ["Leave a message."]
    assert url(record.get("action")) == ("/voice/voicemail", {"sid": SID})
    assert record.get("maxLength") == "120" and record.get("finishOnKey") == "#" and record.get("playBeep") == "true"


def test_the_emergency_answer_needs_nothing_but_configuration():
    root = parse_twiml(renderer().emergency("Sorry, connecting you to a person.", "en-US"))
    assert says(root) == ["Sorry, connecting you to a person."]
    dial = root.find("Dial")
    assert dial.find("Number").text == "+15005550006" and dial.get("timeout") == "21"
    assert url(dial.get("action")) == ("/voice/dial", {"turn": "emergency"})


def test_the_agent_line_briefs_then_bridges_the_queue():
    root = parse_twiml(renderer().agent_connect("Urgent caller, complaint.", queue="urgent", agent="alice",
                                                locale="en-US", turn=3))
    assert says(root) == ["Urgent caller, complaint."]
    queue = root.find("Dial").find("Queue")
    assert queue.text == "ivr-urgent"
    assert url(queue.get("url")) == ("/voice/queue/connect", {"queue": "urgent", "agent": "alice"})
    # After that caller the agent line's next request is its next turn (a repeat takes nobody).
    assert url(root.find("Dial").get("action")) == ("/voice/agent/done", {"turn": "3"})


def test_a_wait_page_offers_a_key_then_plays_music():
    root = parse_twiml(renderer().hold(["You are number 2."], locale="en-US", music_url="https://music.example/a.mp3",
                                       offer=("Press 1 for a call back.", PUBLIC + "/voice/queue/option?sid=" + SID)))
    assert [e.tag for e in root] == ["Gather", "Say", "Play"]
    assert says(root.find("Gather")) == ["Press 1 for a call back."] and root.find("Play").text.endswith("a.mp3")


def test_callback_urls_drop_empty_parameters_and_escape_the_rest():
    r = renderer()
    assert r.url("/voice/dial", turn=None) == PUBLIC + "/voice/dial"
    assert url(r.url("/voice/queue/wait", sid="CA1&x=2", queue="normal")) == \
        ("/voice/queue/wait", {"sid": "CA1&x=2", "queue": "normal"})


def test_words_are_escaped_not_markup():
    root = parse_twiml(renderer().say(["Tom & Jerry <said> \"hi\""], "en-US"))
    assert says(root) == ["Tom & Jerry <said> \"hi\""]
