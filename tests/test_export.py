"""The dashboard's CSV export offers what retention keeps (IVR_RETENTION_DAYS), no more and no less:
one setting, the export's periods derived from it (ivr/dashboard/export.py)."""
from __future__ import annotations

import csv
import io
import re
import time

import pytest

from ivr.config import Config
from ivr.dashboard.export import clamp_days, day_choices
from tests.support.dashboard import add_operator, login, write_call

DAY = 86400


@pytest.fixture
def dashboard(make_config, build_app, redis):
    def open_(retention_days):
        app = build_app(make_config(retention_seconds=retention_days * DAY))
        add_operator(redis)
        web = app.test_client()
        assert login(web).status_code == 302
        return web
    return open_


def offered(web) -> list:
    html = web.get("/dashboard").get_data(as_text=True)
    return sorted(int(d) for d in re.findall(r'data-export-days="(\d+)"', html))


def exported(web, days) -> set:
    body = web.get(f"/dashboard/export.csv?days={days}").get_data(as_text=True)
    return {row["sid"] for row in csv.DictReader(io.StringIO(body))}


@pytest.mark.parametrize("retention, choices", [(1, [1]), (3, [1, 3]), (7, [1, 7]), (31, [1, 7, 30, 31]),
                                                (90, [1, 7, 30, 90])])
def test_the_periods_offered_are_those_retention_keeps(retention, choices):
    assert day_choices(retention) == choices
    assert clamp_days("400", retention) == retention and clamp_days("x", retention) == min(7, retention)
    assert clamp_days("²", retention) == min(7, retention)             # a digit to str.isdigit, not to int()


def test_default_retention_and_export_agree():
    cfg = Config.from_env({})
    assert cfg.retention_days == 7 and day_choices(cfg.retention_days)[-1] == 7
    assert Config.from_env({"IVR_RETENTION_DAYS": "90"}).retention_days == 90


def test_a_short_retention_offers_and_exports_no_more_than_it_keeps(dashboard, redis):
    web = dashboard(3)
    assert offered(web) == [1, 3]
    now = time.time()
    write_call(redis, "CAkept", started_at=now - 2 * DAY, outcome="answered", status="ended")
    write_call(redis, "CAolder", started_at=now - 4 * DAY, outcome="answered", status="ended")
    assert exported(web, 31) == {"CAkept"}          # asked for 31 days: the 3 that are kept


def test_a_long_retention_exports_all_of_it(dashboard, redis):
    """Before, the export stopped at 31 days whatever the retention."""
    web = dashboard(90)
    assert offered(web) == [1, 7, 30, 90]
    now = time.time()
    write_call(redis, "CArecent", started_at=now - 60, outcome="answered", status="ended")
    write_call(redis, "CAspring", started_at=now - 60 * DAY, outcome="answered", status="ended")
    assert exported(web, 90) == {"CArecent", "CAspring"}
    assert exported(web, 7) == {"CArecent"}
