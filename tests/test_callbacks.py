"""Call backs, delivered: requested through the real webhooks, placed through Twilio's REST API
(the real `twilio` Client pointed at a local stand-in speaking Twilio's wire format), each attempt's
result from the signed status callback, retries, failure, done; and a call back keeps its place."""
import csv
import io

import pytest

from ivr import keys
from tests.support import Clock
from tests.support.dashboard import add_operator, csrf_from, login
from tests.support.hotline import (
    HOTLINE,
    agent_line,
    agent_sid,
    ask_callback,
    caller,
    dial_queue,
    enqueued,
    post,
    said,
    verb,
    wait_round,
)
from tests.support.twilio_api import ACCOUNT_SID, TwilioStandIn, _basic

TOKEN = "test-token-" + "x" * 20     # conftest's make_config


@pytest.fixture
def rest():
    with TwilioStandIn(TOKEN, api_key="SK" + "b2" * 16, api_secret="key-secret") as srv:
        yield srv


@pytest.fixture
def hotline(serve, rest):
    def start(**overrides):
        base = dict(twilio_account_sid=ACCOUNT_SID, twilio_api_url=rest.url, callback_after=60)
        base.update(overrides)
        return serve(**base)
    return start


def operator(client, redis, name="alice"):
    if not redis.exists(keys.operator(name)):
        add_operator(redis, name)
    web = client.app.test_client()
    assert login(web, name).status_code == 302
    return web


def act(web, sid, action):
    """An operator presses a button on the call page (the real form, CSRF token included)."""
    token = csrf_from(web.get(f"/dashboard/calls/{sid}").get_data(as_text=True))
    return web.post(f"/dashboard/calls/{sid}/{action}", data={"csrf_token": token})


def callback_rows(web):
    return {row["sid"]: row for row in web.get("/dashboard/api/live").get_json()["callbacks"]}


def test_queued_caller_asks_for_a_call_back_and_operators_see_it(hotline, redis):
    client = hotline()
    call = caller(1, "+14155550101")
    enqueue = enqueued(client, call, "0")
    bye = ask_callback(client, call, enqueue)
    assert "call you back" in said(bye)
    sid = call["CallSid"]
    assert redis.zscore(keys.CALLBACKS, sid) is not None and redis.zcard(keys.queue("normal")) == 0

    web = operator(client, redis)
    page = web.get(f"/dashboard/calls/{sid}").get_data(as_text=True)
    assert "Callback requested" in page                      # the field the webhook writes is the one read
    assert 'href="tel:+14155550101"' in page and "Call back now" in page
    row = callback_rows(web)[sid]
    assert row["number"] == "+14155550101" and row["state"] == "waiting" and row["from"] == "+141****0101"
    # Masked everywhere else: the list of calls, the plain CSV, the logs' format.
    assert "+14155550101" not in web.get("/dashboard/api/calls").get_data(as_text=True)
    assert "+14155550101" not in web.get("/dashboard/export.csv?days=1").get_data(as_text=True)
    assert redis.xlen(keys.AUDIT) == 0


def test_csv_unmasks_call_back_numbers_only_on_a_recorded_choice(hotline, redis):
    client = hotline()
    waiting, other = caller(2, "+14155550102"), caller(3, "+14155550103")
    ask_callback(client, waiting, enqueued(client, waiting, "0"))
    post(client, "/voice", other)
    web = operator(client, redis, "bob")
    body = web.get("/dashboard/export.csv?days=1&numbers=callbacks").get_data(as_text=True)
    rows = {r["sid"]: r for r in csv.DictReader(io.StringIO(body))}
    assert rows[waiting["CallSid"]]["from"] == "+14155550102" and rows[waiting["CallSid"]]["callback"] == "waiting"
    assert rows[other["CallSid"]]["from"] == "+141****0103"           # not a call back: still masked
    [(_, entry)] = redis.xrange(keys.AUDIT)
    assert entry["operator"] == "bob" and entry["action"] == "csv_with_numbers" and entry["numbers"] == "1"
    assert float(entry["ts"]) > 0


def test_call_back_now_places_the_call_through_twilio_and_bridges_to_the_human_line(hotline, rest, redis):
    client = hotline()
    call = caller(4, "+14155550104")
    ask_callback(client, call, enqueued(client, call, "my order never arrived", "0"))
    sid = call["CallSid"]
    web = operator(client, redis)

    resp = act(web, sid, "callback")
    assert resp.status_code == 302
    assert "Calling back now (attempt 1)" in web.get(f"/dashboard/calls/{sid}").get_data(as_text=True)
    placed = rest.last_call()
    assert rest.requests[-1]["auth"] == _basic(ACCOUNT_SID, TOKEN)
    assert rest.requests[-1]["path"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    assert placed["To"] == "+14155550104" and placed["From"] == HOTLINE
    assert placed["Url"].startswith(client.public_url + "/voice/callback/answer?") and "attempt=1" in placed["Url"]
    assert placed["StatusCallback"].startswith(client.public_url + "/voice/callback/status?")
    assert placed["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert redis.hget(keys.call(sid), "callback_call") == placed["_sid"]
    assert callback_rows(web)[sid]["state"] == "calling"
    assert act(web, sid, "callback").status_code == 302             # a second click while it rings
    assert len(rest.calls) == 1

    # Twilio: the caller answers; the human line picks up and hears the same briefing an agent would.
    outbound = {"CallSid": placed["_sid"], "From": HOTLINE, "To": call["From"], "CallStatus": "in-progress"}
    root = post(client, placed["Url"], outbound)
    assert "returning your call" in said(root)
    number = next(n for d in root if d.tag == "Dial" for n in d if n.tag == "Number")
    assert number.text == "+15005550006"
    whisper = post(client, number.get("url"), {"CallSid": "CA" + "7" * 32})
    assert said(whisper).startswith("Call back for a caller") and "order never arrived" in said(whisper)
    for event in ("ringing", "in-progress", "completed"):
        status, _ = client.post(placed["StatusCallback"], dict(outbound, CallStatus=event))
        assert status == 204
    dial = next(d for d in root if d.tag == "Dial")
    assert "Goodbye" in said(post(client, dial.get("action"), dict(outbound, DialCallStatus="completed")))

    rec = redis.hgetall(keys.call(sid))
    assert rec["callback_state"] == "done" and rec["callback_last_result"] == "answered"
    assert rec["callback_by"] == "alice" and rec["callback_done_by"] == "human line"
    assert sid not in callback_rows(web) and redis.zscore(keys.CALLBACKS, sid) is None
    page = web.get(f"/dashboard/calls/{sid}").get_data(as_text=True)
    assert "alice: call back, attempt 1" in page and "Call back attempt 1: answered" in page
    assert "Call back reached a person" in page
    assert "tel:" not in page                                   # done: the number is masked again
    types = [e["type"] for _, e in redis.xrange(keys.EVENTS) if e.get("sid") == sid]
    assert types.count("callback_result") == 1                 # answered once, however often it was reported


def test_failed_attempts_retry_then_mark_the_call_back_failed(hotline, rest, redis):
    clock = Clock()
    client = hotline(clock=clock, callback_max_attempts=2, callback_retry_seconds=60)
    call = caller(5, "+14155550105")
    ask_callback(client, call, enqueued(client, call, "0"))
    sid = call["CallSid"]
    web = operator(client, redis)

    act(web, sid, "callback")
    first = rest.last_call()
    client.post(first["StatusCallback"], {"CallSid": first["_sid"], "CallStatus": "no-answer"})
    row = callback_rows(web)[sid]
    assert row["state"] == "waiting" and row["attempts"] == 1 and row["last_result"] == "no-answer"
    assert float(redis.hget(keys.call(sid), "callback_next_at")) == clock() + 60

    # The agent line does not ring them again before the retry time...
    clock.advance(30)
    assert "No callers are waiting" in said(agent_line(client, 1))
    # ...and does after it: the second attempt, by the agent who asked.
    clock.advance(31)
    root = agent_line(client, 2)
    assert verb(root, "Enqueue").text == f"ivr-cb-{sid}" and len(rest.calls) == 2
    second = rest.last_call()
    assert "agent=sim" in second["Url"]
    client.post(second["StatusCallback"], {"CallSid": second["_sid"], "CallStatus": "busy"})
    row = callback_rows(web)[sid]
    assert row["state"] == "failed" and row["attempts"] == 2
    assert redis.zscore(keys.CALLBACKS, sid) is None and redis.zscore(keys.CALLBACKS_FAILED, sid) is not None
    # The agent waiting for that caller is let go, and the list no longer offers it to agents.
    wait = post(client, verb(root, "Enqueue").get("waitUrl"), {"CallSid": agent_sid(2), "QueueTime": "30"})
    assert verb(wait, "Leave") is not None and "did not pick up" in said(wait)
    assert "No callers are waiting" in said(agent_line(client, 3))

    # Failed stays in sight until an operator closes it; the history stays on the call page.
    act(web, sid, "callback/done")
    assert sid not in callback_rows(web)
    page = web.get(f"/dashboard/calls/{sid}").get_data(as_text=True)
    for line in ("alice: call back, attempt 1", "Call back attempt 1: no answer", "sim: call back, attempt 2",
                 "Call back attempt 2: line busy", "alice: marked the call back done"):
        assert line in page, line


def test_agent_line_call_back_bridges_the_caller_to_the_agent_who_asked(hotline, rest, redis):
    client = hotline()
    call = caller(6, "+14155550106")
    ask_callback(client, call, enqueued(client, call, "0"))
    sid = call["CallSid"]
    root = agent_line(client, 7)
    briefing = said(root)
    assert briefing.startswith("Call back for a caller") and "asked for a person" in briefing
    assert "dialling them now" in briefing
    enqueue = verb(root, "Enqueue")
    assert enqueue.text == f"ivr-cb-{sid}"
    wait = post(client, enqueue.get("waitUrl"), {"CallSid": agent_sid(7), "QueueTime": "4"})
    assert verb(wait, "Pause") is not None and verb(wait, "Leave") is None

    placed = rest.last_call()
    answered = post(client, placed["Url"], {"CallSid": placed["_sid"], "CallStatus": "in-progress"})
    queue = dial_queue(answered)
    assert queue.text == f"ivr-cb-{sid}"
    post(client, queue.get("url"), {"CallSid": agent_sid(7), "DequeingCallSid": placed["_sid"]})
    assert redis.hget(keys.call(sid), "callback_state") == "done"
    web = operator(client, redis)
    agents = web.get("/dashboard/api/live").get_json()["agents"]
    sim = next(a for a in agents["agents"] if a["name"] == "sim")
    assert sim["state"] == "on_call" and sim["caller"] == sid and sim["caller_from"] == "+141****0106"
    # The bridge ends on the agent's side: available again.
    post(client, "/voice/agent/done", {"CallSid": agent_sid(7), "QueueResult": "bridged"})
    agents = web.get("/dashboard/api/live").get_json()["agents"]
    assert next(a for a in agents["agents"] if a["name"] == "sim")["state"] != "on_call"


def test_a_call_back_keeps_the_callers_place(hotline, rest, redis):
    """t=0 A joins, t=30 B joins, t=130 A asks to be called back, t=140 C joins, t=200 D joins and asks
    for a call back at t=330. Agents asking at t=340 get A (kept their place ahead of B), then B,
    then C, then D (whose place, t=200, comes after C's)."""
    clock = Clock()
    client = hotline(clock=clock)
    a, b, c, d = (caller(n, f"+1415555011{n}") for n in range(4))
    enq_a = enqueued(client, a, "0")
    clock.advance(30)
    enq_b = enqueued(client, b, "0")
    clock.advance(100)
    ask_callback(client, a, enq_a, queue_time=130)
    clock.advance(10)
    enq_c = enqueued(client, c, "0")
    clock.advance(60)
    enq_d = enqueued(client, d, "0")
    clock.advance(130)
    ask_callback(client, d, enq_d, queue_time=130)
    clock.advance(10)
    # Twilio keeps asking for the wait page of everyone on hold (here the latest round, for B and C):
    # that is what tells the queue mirror they are still there.
    wait_round(client, b, enq_b, queue_time=310)
    wait_round(client, c, enq_c, queue_time=200)

    order = []
    for n in range(4):
        root = agent_line(client, 10 + n)
        if verb(root, "Enqueue") is not None:           # ring a caller back
            order.append(("callback", rest.last_call()["To"]))
            client.post(rest.last_call()["StatusCallback"], {"CallSid": rest.last_call()["_sid"],
                                                             "CallStatus": "in-progress"})
        else:
            queue = dial_queue(root)
            head = redis.zrange(keys.queue("normal"), 0, 0)[0]
            order.append(("queue", redis.hget(keys.call(head), "from")))
            post(client, queue.get("url"), {"CallSid": head, "QueueTime": "300", "DequeingCallSid": agent_sid(10 + n)})
    assert order == [("callback", a["From"]), ("queue", b["From"]), ("queue", c["From"]), ("callback", d["From"])]


def test_urgent_callers_come_first_even_over_an_older_call_back(hotline, rest, redis):
    clock = Clock()
    client = hotline(clock=clock)
    old, urgent = caller(20), caller(21)
    ask_callback(client, old, enqueued(client, old, "0"))
    clock.advance(200)
    enqueued(client, urgent, "my phone is smoking and smells like burning")
    root = agent_line(client, 20)
    assert said(root).startswith("Urgent caller") and dial_queue(root).text == "ivr-urgent"
    assert rest.calls == []


def test_call_back_with_an_api_key_and_refused_by_twilio(hotline, rest, redis):
    client = hotline(twilio_api_key="SK" + "b2" * 16, twilio_api_secret="key-secret")
    call = caller(30, "+14155550130")
    ask_callback(client, call, enqueued(client, call, "0"))
    web = operator(client, redis)
    act(web, call["CallSid"], "callback")
    assert rest.requests[-1]["auth"] == _basic("SK" + "b2" * 16, "key-secret")

    rest.fail_calls_with = (400, 21211, "Invalid 'To' Phone Number")
    client.post(rest.last_call()["StatusCallback"], {"CallSid": rest.last_call()["_sid"], "CallStatus": "failed"})
    act(web, call["CallSid"], "callback")
    page = web.get(f"/dashboard/calls/{call['CallSid']}").get_data(as_text=True)
    assert "Not called: Twilio did not place the call" in page
    assert "Call back attempt 2: could not be placed" in page
    assert redis.hget(keys.call(call["CallSid"]), "callback_failures") == "2"


def test_without_a_twilio_account_nothing_is_placed(serve, rest, redis):
    client = serve(callback_after=60)          # no TWILIO_ACCOUNT_SID
    call = caller(31)
    ask_callback(client, call, enqueued(client, call, "0"))
    web = operator(client, redis)
    act(web, call["CallSid"], "callback")
    page = web.get(f"/dashboard/calls/{call['CallSid']}").get_data(as_text=True)
    assert "Not called: call backs need TWILIO_ACCOUNT_SID" in page
    assert rest.requests == [] and redis.hget(keys.call(call["CallSid"]), "callback_state") == "waiting"
    # The agent line does not stall on a call back it cannot place: the caller behind it is taken.
    behind = caller(33)
    enqueued(client, behind, "0")
    assert dial_queue(agent_line(client, 33)).text == "ivr-normal"
    assert redis.hget(keys.call(behind["CallSid"]), "claimed_by") == agent_sid(33)


def test_a_withheld_number_is_asked_for_a_message_instead(hotline, redis):
    client = hotline()
    call = caller(32, "+266696687")          # Twilio's "anonymous"
    root = ask_callback(client, call, enqueued(client, call, "0"))
    assert "can't see your phone number" in said(root) and verb(root, "Record") is not None
    assert redis.zscore(keys.CALLBACKS, call["CallSid"]) is None



def test_answered_but_nobody_free_goes_back_on_the_list_and_may_leave_a_message(hotline, rest, redis):
    client = hotline()
    call = caller(34, "+14155550134")
    ask_callback(client, call, enqueued(client, call, "0"))
    client.post("/voice/status", dict(call, CallStatus="completed"))        # the first call is long over
    sid = call["CallSid"]
    web = operator(client, redis)
    act(web, sid, "callback")
    placed = rest.last_call()
    outbound = {"CallSid": placed["_sid"], "From": HOTLINE, "To": call["From"]}
    root = post(client, placed["Url"], dict(outbound, CallStatus="in-progress"))
    busy = post(client, verb(root, "Dial").get("action"), dict(outbound, DialCallStatus="no-answer"))
    assert "leave your name and a short message" in said(busy)
    record = verb(busy, "Record")
    post(client, record.get("action"), dict(outbound, RecordingUrl=rest.url + "/x", RecordingDuration="5"))
    rec = redis.hgetall(keys.call(sid))
    assert rec["callback_state"] == "waiting" and rec["callback_failures"] == "0"
    assert rec["callback_last_result"] == "no-person" and rec["voicemail_state"] == "new"
    assert rec["status"] == "ended"                     # the message belongs to the call; it stays ended
    assert "Call back answered, but nobody was free" in web.get(f"/dashboard/calls/{sid}").get_data(as_text=True)
