"""The live view, the call page, the event stream and the CSV export, over real HTTP and Redis."""
import json
import time
import urllib.request

import pytest

from ivr import keys
from ivr.dashboard import sse
from ivr.dashboard.queries import Queries
from tests.support.dashboard import HeldCall, add_operator, login, write_call
from tests.support.hotline import ask_callback, caller, enqueued


@pytest.fixture
def client(app, redis):
    add_operator(redis)
    c = app.test_client()
    login(c)
    return c


def test_waiting_caller_appears_in_the_queue(client, twilio, simulate):
    with HeldCall(twilio, [("press", "2"), ("press", "0")], from_number="+15005550177") as held:
        sid = held.start()
        live = client.get("/dashboard/api/live").get_json()
        normal = next(q for q in live["queues"] if q["name"] == "normal")
        row = next(c for c in normal["calls"] if c["sid"] == sid)
        assert row["from"] == "+150****0177"
        assert row["reason"] == "agent_request" and row["transfers"] == 1
        assert row["seconds"] >= 0 and row["late"] is False
        assert "+15005550177" not in json.dumps(live)
        held.finish()
    live = client.get("/dashboard/api/live").get_json()
    assert all(c["sid"] != sid for q in live["queues"] for c in q["calls"])


def test_live_panels_order_and_highlight(client, redis, app, twilio):
    now = time.time()
    write_call(redis, "CAbot", started_at=now - 40, status="in_bot", step="ask_order_number",
               turns=[{"who": "bot", "text": "Your order number?"},
                      {"who": "caller", "input": "speech", "text": "it is 5551234567", "confidence": 0.82}])
    write_call(redis, "CAold", started_at=now - 200, status="queued", queue="normal", reason="agent_request",
               transfers=2, handoff_at=now - 95, enqueued_at=now - 90, queue_zset="normal")
    write_call(redis, "CAnew", started_at=now - 30, status="queued", queue="normal", reason="agent_request",
               transfers=1, handoff_at=now - 5, enqueued_at=now - 5, queue_zset="normal")
    write_call(redis, "CAurg", started_at=now - 60, status="handoff", queue="urgent", reason="safety_hazard",
               transfers=1, handoff_at=now - 50, boost="repeat_caller")
    write_call(redis, "CAagent", started_at=now - 300, status="with_agent", queue="urgent", reason="complaint",
               transfers=1, answered_at=now - 100)
    cb = caller(77, "+14155550177")
    ask_callback(twilio, cb, enqueued(twilio, cb, "0"))          # a call back, through the webhooks
    live = client.get("/dashboard/api/live").get_json()
    normal = next(q for q in live["queues"] if q["name"] == "normal")["calls"]
    assert [c["sid"] for c in normal] == ["CAold", "CAnew"]          # longest wait first
    assert normal[0]["late"] and normal[0]["bounced"] and 89 <= normal[0]["seconds"] <= 95
    assert not normal[1]["late"] and not normal[1]["bounced"]
    urgent = next(q for q in live["queues"] if q["name"] == "urgent")["calls"]
    assert urgent[0]["sid"] == "CAurg" and urgent[0]["boost"] == "repeat_caller"  # a handoff without a queue entry
    bot = live["in_bot"][0]
    assert bot["sid"] == "CAbot" and bot["step"] == "ask_order_number"
    assert bot["last_said"] == "it is ••••4567" and bot["confidence"] == 0.82
    assert [c["sid"] for c in live["with_agent"]] == ["CAagent"]
    [callback] = live["callbacks"]
    assert callback["sid"] == cb["CallSid"] and callback["number"] == "+14155550177" and callback["state"] == "waiting"


def test_a_call_quiet_for_fifteen_minutes_is_no_longer_in_the_bot(client, redis):
    """A call in the bot takes a turn at least every prompt and no-input timeout. One whose end was
    lost (Redis down when Twilio's status callback came) stays in the active calls until their daily
    sweep; the live view leaves it off instead of showing a caller who is gone."""
    now = time.time()
    write_call(redis, "CAtalking", started_at=now - 3600, updated_at=now - 30, status="in_bot", step="welcome")
    write_call(redis, "CAgone", started_at=now - 3600, updated_at=now - 901, status="in_bot", step="welcome")
    write_call(redis, "CAnoturn", started_at=now - 1000, status="in_bot", step="welcome")
    write_call(redis, "CAfresh", started_at=now - 5, status="in_bot", step="welcome")
    live = client.get("/dashboard/api/live").get_json()
    assert sorted(c["sid"] for c in live["in_bot"]) == ["CAfresh", "CAtalking"]
    assert redis.zscore(keys.ACTIVE, "CAgone") is not None     # nothing written: only left off the view


def test_call_page_shows_timeline_summary_and_masks(client, simulate, redis):
    report = simulate(("say", "my card 4111 1111 1111 1111 was charged twice, call 555 123 4567"),
                      from_number="+15005550142")
    sid = report["call_sid"]
    redis.hset(keys.call(sid), "rating", 4)
    page = client.get(f"/dashboard/calls/{sid}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "+150****0142" in html and "+15005550142" not in html
    assert "4111" not in html and "555 123 4567" not in html and "••••4567" in html
    assert "Caller said" in html and "confidence 0.90" in html and "intent fraud_security" in html
    assert "Transferred to a person" in html and "Call ended" in html
    assert "What the agent heard" in html and "reason fraud security" in html
    assert "4 / 5" in html
    data = client.get(f"/dashboard/api/calls/{sid}").get_json()
    kinds = [e["kind"] for e in data["timeline"]]
    assert kinds[0] == "event" and "caller" in kinds and "bot" in kinds and "transfer" in kinds
    assert [e["ts_sort"] for e in data["timeline"]] == sorted(e["ts_sort"] for e in data["timeline"])


def test_unrated_call_and_unknown_call(client, simulate):
    report = simulate(("press", "3"), ("press", "2"))
    assert "not rated" in client.get(f"/dashboard/calls/{report['call_sid']}").get_data(as_text=True)
    assert client.get("/dashboard/calls/CAnope").status_code == 404


def test_csv_export_masks_numbers(client, simulate):
    simulate(("press", "0"), from_number="+15005550188")
    simulate(("press", "3"), ("press", "2"), from_number="+15005550189")
    resp = client.get("/dashboard/export.csv?days=1")
    body = resp.get_data(as_text=True)
    assert resp.mimetype == "text/csv" and "attachment" in resp.headers["Content-Disposition"]
    lines = body.strip().splitlines()
    assert lines[0].startswith("sid,started_at,ended_at,from,")
    assert len(lines) == 3
    assert "+150****0188" in body and "+15005550188" not in body and "+15005550189" not in body


def test_csv_cells_cannot_become_formulas():
    from ivr.dashboard.export import _cell
    assert _cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert _cell("-cmd") == "'-cmd" and _cell("@x") == "'@x"
    assert _cell("+150****0188") == "+150****0188" and _cell("-3") == "-3"


def test_recent_calls_list(client, simulate):
    report = simulate(("press", "3"), ("press", "2"))
    calls = client.get("/dashboard/api/calls").get_json()["calls"]
    assert calls[0]["sid"] == report["call_sid"] and calls[0]["outcome"] == "answered"


def _open_stream(server, client):
    cookie = client.get_cookie("ivr_session").value
    req = urllib.request.Request(server.url + "/dashboard/events", headers={"Cookie": f"ivr_session={cookie}"})
    return urllib.request.urlopen(req, timeout=10)


def _next_event(resp, name):
    event = None
    for raw in resp:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event == name:
            return json.loads(line[6:])


def test_event_stream_pushes_a_new_call(client, server, twilio):
    with _open_stream(server, client) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        first = _next_event(resp, "live")
        assert first["queues"] and all(not q["calls"] for q in first["queues"])
        with HeldCall(twilio, [("press", "0")]) as held:
            sid = held.start()
            started = time.monotonic()
            while time.monotonic() - started < 5:
                snap = _next_event(resp, "live")
                if any(c["sid"] == sid for q in snap["queues"] for c in q["calls"]):
                    break
            else:
                pytest.fail("the waiting caller never reached the stream")
            assert time.monotonic() - started < 2
            held.finish()


def test_event_stream_refuses_without_login(server):
    req = urllib.request.Request(server.url + "/dashboard/events")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 401


def test_a_live_view_holds_its_place_until_the_browser_goes(client, server, app):
    """A live view counts against the process's share (ivr/slots.py) while it is open, and gives its place
    back within a second or two of the browser closing the connection (not at a later heartbeat)."""
    views = app.extensions["ivr"].shares.live_views
    resp = _open_stream(server, client)
    _next_event(resp, "live")
    assert views.taken == 1
    resp.close()
    deadline = time.monotonic() + 3
    while views.taken and time.monotonic() < deadline:
        time.sleep(0.05)
    assert views.taken == 0


class _FakeClock:
    """Steps time forward on every read, so a stream's lifetime passes in a few iterations."""

    def __init__(self, step):
        self.t, self.step = 0.0, step

    def __call__(self):
        self.t += self.step
        return self.t


def busy(redis, data):
    """A snapshot followed by a call event, as on a busy hotline: the stream's XREAD answers at
    once instead of waiting out its second, so only the stream's own clock decides when it ends."""
    def snapshot():
        redis.xadd(keys.EVENTS, {"type": "turn", "sid": "CA" + "d" * 32, "ts": "0"})
        return data
    return snapshot


def test_stream_ends_after_its_lifetime_and_when_logged_out(redis):
    q = Queries(redis)
    frames = list(sse.live_stream(q, snapshot=busy(redis, {"n": 1}), logged_in=lambda: True,
                                  clock=_FakeClock(100), max_seconds=1000))
    assert frames[0].startswith("retry:") and "event: live" in frames[1]
    assert any(f.startswith(": heartbeat") for f in frames)
    assert len(frames) < 30
    frames = list(sse.live_stream(q, snapshot=busy(redis, {}), logged_in=lambda: False, clock=_FakeClock(20)))
    assert "event: logout" in frames[-1]


def test_stream_ends_when_the_server_stops(redis):
    """SIGTERM: open dashboards end their stream at once (the browser reconnects elsewhere) instead of
    holding a worker thread for the whole graceful timeout."""
    q, calls = Queries(redis), {"n": 0}

    def stopping():
        calls["n"] += 1
        return calls["n"] > 3
    t0 = time.monotonic()
    frames = list(sse.live_stream(q, snapshot=busy(redis, {}), logged_in=lambda: True, stopping=stopping))
    assert frames[0].startswith("retry:") and all("event: live" in f for f in frames[1:])
    assert 2 <= len(frames) <= 5 and time.monotonic() - t0 < 5
