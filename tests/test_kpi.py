"""KPI figures against calls with known outcomes and waits (exact timestamps, exact numbers)."""
from datetime import UTC, datetime

import pytest

from ivr import keys
from ivr.dashboard import kpi
from ivr.stats import percentile
from tests.support import Clock
from tests.support.dashboard import add_operator, login, write_call
from tests.support.hotline import ask_callback, caller, end_call, post, verb

NOW = datetime(2026, 3, 11, 15, 0, 0, tzinfo=UTC).timestamp()
TODAY = datetime(2026, 3, 11, tzinfo=UTC).timestamp()
DAY = 86400


def seed(redis):
    """Ten calls today, two yesterday, one at the first midnight of the window, one just before it."""
    t = TODAY + 9 * 3600
    write_call(redis, "c1", started_at=t, outcome="answered", answered=1, status="ended", ended_at=t + 60)
    write_call(redis, "c2", started_at=t + 100, outcome="answered", answered=1, status="ended", ended_at=t + 150)
    write_call(redis, "c3", started_at=t + 200, outcome="handoff", status="ended", transfers=1, queue="normal",
               reason="agent_request", handoff_at=t + 230, answered_at=t + 240, wait_seconds=10, ended_at=t + 400,
               dial_status="completed")
    write_call(redis, "c4", started_at=t + 300, outcome="handoff", status="ended", transfers=2, queue="urgent",
               reason="complaint", handoff_at=t + 320, enqueued_at=t + 320, answered_at=t + 350, ended_at=t + 500)
    write_call(redis, "c5", started_at=t + 400, outcome="handoff", status="ended", transfers=1, queue="urgent",
               reason="fraud_security", handoff_at=t + 420, ended_at=t + 500, queue_result="hangup",
               abandoned_at=t + 500)
    write_call(redis, "c7", started_at=t + 600, outcome="hangup", status="ended", ended_at=t + 610)
    write_call(redis, "c8", started_at=NOW - 30, status="in_bot", step="menu")
    write_call(redis, "c9", started_at=NOW - 90, status="queued", transfers=1, queue="urgent",
               reason="safety_hazard", handoff_at=NOW - 60, enqueued_at=NOW - 60, queue_zset="urgent")
    write_call(redis, "c10", started_at=t + 700, outcome="handoff", status="ended", transfers=1, queue="normal",
               reason="agent_request", handoff_at=t + 720, ended_at=t + 800, waits=(5.0, t + 725))
    y = TODAY - DAY + 12 * 3600
    write_call(redis, "d1", started_at=y, outcome="answered", answered=1, status="ended", ended_at=y + 30)
    write_call(redis, "d2", started_at=y + 100, outcome="handoff", status="ended", transfers=1, queue="urgent",
               reason="complaint", handoff_at=y + 110, answered_at=y + 155, wait_seconds=45, ended_at=y + 300)
    first = TODAY - 6 * DAY
    write_call(redis, "e1", started_at=first, outcome="answered", answered=1, status="ended", ended_at=first + 20)
    write_call(redis, "f1", started_at=first - 1, outcome="answered", answered=1, status="ended", ended_at=first + 9)


def callback_call(serve):
    """c6, through the webhooks: starts at t+500, asks for a person at t+520, asks for a call back
    at t+590 (leaving the queue), hangs up at t+600."""
    t = TODAY + 9 * 3600 + 500
    clock = Clock(t)
    client = serve(clock=clock, callback_after=60)
    call = caller(6)
    post(client, "/voice", call)
    clock.advance(20)
    enqueue = verb(post(client, "/voice/gather?turn=1", dict(call, Digits="0")), "Enqueue")
    clock.advance(70)
    ask_callback(client, call, enqueue, queue_time=70)
    clock.advance(10)
    end_call(client, call)


@pytest.fixture
def figures(make_config, redis, build_app, serve):
    cfg = make_config(timezone="UTC", service_level_seconds=20)
    app = build_app(cfg, clock=lambda: NOW)
    seed(redis)
    callback_call(serve)
    add_operator(redis)
    client = app.test_client()
    login(client)
    resp = client.get("/dashboard/api/kpis")
    assert resp.status_code == 200
    return resp.get_json()


def test_today(figures):
    today = figures["today"]
    assert today["calls"] == 10
    assert today["ended"] == 8
    assert today["contained"] == 2 and today["containment"] == 0.25
    assert today["handoffs"] == 6
    assert today["handoffs_by_reason"] == {"agent_request": 3, "complaint": 1, "fraud_security": 1,
                                           "safety_hazard": 1}
    assert today["reached_person"] == 3          # c3 (record), c4 (answered_at), c10 (ivr:waits)
    assert today["avg_wait"] == 15.0             # (10 + 30 + 5) / 3
    assert today["p90_wait"] == 30.0
    assert today["abandoned"] == 1 and today["overflowed"] == 1 and today["offered"] == 5
    assert today["abandonment"] == 0.2
    assert today["service_level"] == 0.4         # c3 and c10 within 20 s, of 5 offered
    assert today["transfers"] == 7 and today["transfers_per_call"] == 0.7
    assert today["callbacks"] == 1


def test_last_seven_days(figures):
    week = figures["last7"]
    assert week["calls"] == 13                   # f1 started one second before the window
    assert week["contained"] == 4 and week["containment"] == round(4 / 11, 4)
    assert week["handoffs_by_reason"]["complaint"] == 2
    assert week["avg_wait"] == 22.5              # (10 + 30 + 5 + 45) / 4
    assert week["p90_wait"] == 45.0
    assert week["service_level"] == round(2 / 6, 4)
    assert week["abandonment"] == round(1 / 6, 4)
    assert week["transfers_per_call"] == round(8 / 13, 2)


def test_one_row_per_day_for_the_charts(figures):
    days = figures["days"]
    assert [d["start"] for d in days] == [TODAY - i * DAY for i in range(6, -1, -1)]
    assert [d["calls"] for d in days] == [1, 0, 0, 0, 0, 2, 10]
    assert days[5]["contained"] == 1 and days[5]["handoffs"] == 1 and days[5]["avg_wait"] == 45.0
    assert days[1]["containment"] is None and days[1]["avg_wait"] is None
    assert days[-1]["day"] == "Wed 11 Mar"


def test_p90_is_nearest_rank():
    assert percentile([], 90) is None
    assert percentile([7], 90) == 7
    assert percentile(list(range(1, 11)), 90) == 9
    assert percentile(list(range(1, 12)), 90) == 10


def test_days_follow_the_time_zone_across_dst():
    tz = kpi.tzinfo("Europe/Berlin")
    now = datetime(2026, 3, 30, 10, tzinfo=tz).timestamp()  # the day after clocks went forward
    starts = kpi.day_starts(now, 3, tz)
    assert [datetime.fromtimestamp(s, tz).strftime("%d %H:%M") for s in starts] == ["28 00:00", "29 00:00",
                                                                                    "30 00:00"]
    assert starts[2] - starts[1] == 23 * 3600


def test_kpis_from_calls_placed_through_the_webhooks(app, redis, simulate):
    simulate(("press", "3"), ("press", "2"))
    simulate(("press", "2"), ("press", "2"))
    simulate(("press", "0"))
    add_operator(redis)
    client = app.test_client()
    login(client)
    today = client.get("/dashboard/api/kpis").get_json()["today"]
    assert today["calls"] == 3 and today["ended"] == 3
    assert today["contained"] == 2 and today["containment"] == round(2 / 3, 4)
    assert today["handoffs"] == 1 and today["handoffs_by_reason"] == {"agent_request": 1}
    handed = [r for r in (redis.hgetall(keys.call(s)) for s in redis.zrange(keys.RECENT, 0, -1)) if r.get("reason")]
    wait = float(handed[0]["wait_seconds"])
    assert today["reached_person"] == 1 and today["avg_wait"] == round(wait, 1)
    assert today["service_level"] == (1.0 if wait <= 20 else 0.0)
    assert today["transfers_per_call"] == round(1 / 3, 2)
