"""Caller ratings and the unanswered-question log, through the real endpoints."""
import subprocess
import sys

import pytest

from ivr import keys, quality
from ivr.flows.intents import normalize
from ivr.simulate.call import CallSimulator
from tests.support import press, say


def test_rating_pressed_after_an_answer_is_stored_and_aggregated(simulate, redis):
    report = simulate(press("3"), press("2"), press("4"))
    rec = redis.hgetall(keys.call(report["call_sid"]))
    assert rec["rating"] == "4" and rec["rating_after"] == "bot"
    assert rec["comment_url"].startswith("https://")       # the simulator recorded a comment
    simulate(press("3"), press("2"), press("2"))
    today = quality.ratings_by_day(redis, days=1)
    [(day, per)] = today.items()
    assert per["opening_hours"] == {"count": 2, "average": 3.0}
    assert per["all"] == {"count": 2, "average": 3.0}


def test_rating_after_agent_call(simulate, redis):
    report = simulate(press("0"), press("5"))
    rec = redis.hgetall(keys.call(report["call_sid"]))
    assert rec["rating"] == "5" and rec["rating_after"] == "agent"


@pytest.mark.parametrize("lang,poor,excellent", [("en", "1 for poor", "5 for excellent"),
                                                 ("ko", "1번은 매우 불만족", "5번은 매우 만족")])
def test_both_rating_questions_say_which_end_is_good(serve, lang, poor, excellent):
    """In Korea grade 1 is often the best: each question says what 1 and 5 mean, in each language."""
    client = serve(speech=False)
    after_bot = CallSimulator(client).run([press("3"), press("2")], lang)
    after_agent = CallSimulator(client).run([press("0")], lang)
    for report in (after_bot, after_agent):
        question = report["turns"][-1]["bot"]
        assert poor in question and excellent in question, question
    assert after_bot["turns"][-1]["bot"] != after_agent["turns"][-1]["bot"]


def test_retried_rating_counts_once(twilio, redis):
    call = {"CallSid": "CA" + "4" * 32, "From": "+15005550144"}
    twilio.post("/voice", call)
    twilio.post("/voice/gather?turn=1", dict(call, Digits="3"))
    for _ in range(3):
        twilio.post("/voice/rating?after=bot", dict(call, Digits="5"))
    per = next(iter(quality.ratings_by_day(redis, days=1).values()))
    assert per["all"]["count"] == 1


def test_no_rating_prompt_when_bot_answered_nothing(simulate):
    report = simulate(press("0"), agent="busy")
    assert "how well did I help" not in " ".join(t["bot"] for t in report["turns"])


@pytest.mark.slow       # `ivr unanswered` in its own process
def test_unanswered_question_logged_with_count(simulate, redis):
    question = "do you sell garden furniture"
    simulate(say(question), press("3"), press("2"))
    simulate(say("Do you sell garden furniture?"), say("do you sell garden furniture"))
    top = quality.top_unanswered(redis, "hotline", "en")
    row = next(r for r in top if r["text"] == normalize(question))
    assert row["count"] == 3
    proc = subprocess.run([sys.executable, "-m", "ivr.cli", "unanswered", "--top", "5"], capture_output=True,
                          text=True, env=_env(redis))
    assert proc.returncode == 0, proc.stderr
    assert "3  do you sell garden furniture" in proc.stdout


def test_a_hello_is_no_unanswered_question(simulate, redis):
    """Fillers (the flow's hello, um, pardon) are asked again like any miss, but they are nothing a
    caller asked: the log of questions the bot could not place stays free of them."""
    for hello in ("hello", "um, hold on"):
        report = simulate(say(hello), press("3"), press("2"))
        assert report["intents"] == [None, "opening_hours", "goodbye"]
    assert not quality.top_unanswered(redis, "hotline", "en")


def _env(redis):
    import os
    kw = redis.connection_pool.connection_kwargs
    url = (f"unix://{kw['path']}?db={kw.get('db', 0)}" if "path" in kw
           else f"redis://{kw['host']}:{kw['port']}/{kw.get('db', 0)}")
    return dict(os.environ, REDIS_URL=url)


def test_spoken_call_that_was_answered_is_asked_for_a_rating(twilio, redis):
    call = {"CallSid": "CA" + "6" * 32, "From": "+15005550166"}
    status, body = twilio.post("/voice?lang=ko", call)
    assert status == 200 and "<Stream" in body
    # What the media session writes when the bot answered and said goodbye over the stream.
    redis.hset(keys.call(call["CallSid"]), mapping={"stream": "goodbye", "answered": "1"})
    status, body = twilio.post("/voice/stream-ended", call)
    assert status == 200 and "/voice/rating" in body and "1번부터 5번" in body
    status, _ = twilio.post("/voice/rating?after=bot", dict(call, Digits="4"))
    assert redis.hget(keys.call(call["CallSid"]), "rating") == "4"


def test_dashboard_shows_unanswered_questions_and_ratings(app, simulate, redis):
    from tests.support.dashboard import add_operator, login

    simulate(say("can you help with my garden hose"), press("3"), press("2"))
    simulate(press("4"), press("2"), press("5"))
    add_operator(redis)
    client = app.test_client()
    assert client.get("/dashboard").status_code == 302          # nothing without login
    login(client)
    page = client.get("/dashboard").get_data(as_text=True)
    section = page[page.index('id="unanswered"'):page.index('id="ratings"')]
    assert "can you help with my garden hose" in section
    ratings = page[page.index('id="ratings"'):]
    assert "warranty repair" in ratings and "5.0" in ratings
