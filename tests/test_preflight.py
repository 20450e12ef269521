"""Configuration that would fail real callers: the findings, `ivr serve`'s warnings and URLs, /healthz."""
from __future__ import annotations

import subprocess
import sys

import pytest

from ivr import keys, preflight
from ivr.config import Config

GOOD = {"TWILIO_AUTH_TOKEN": "t" * 32, "PUBLIC_URL": "https://hotline.example.com", "HUMAN_LINE": "+4930123456"}


def findings(**env):
    return preflight.problems(Config.from_env({**GOOD, **env}))


def test_a_production_configuration_has_no_findings():
    assert findings() == []


@pytest.mark.parametrize("line", ["", "+15005550006", "+15005551234"])
def test_human_line_unset_or_a_twilio_test_number(line):
    found = findings(HUMAN_LINE=line)
    assert len(found) == 1 and found[0].startswith("HUMAN_LINE is a Twilio test number")


def test_human_line_that_twilio_cannot_dial_is_named_masked():
    found = findings(HUMAN_LINE="0301234567")
    assert len(found) == 1 and "not an E.164 number" in found[0] and "0301234567" not in found[0]


@pytest.mark.parametrize("url", ["http://localhost:5000", "https://127.0.0.1:8443", "http://[::1]:5000",
                                 "https://10.1.2.3", "http://0.0.0.0:5000", "https://ivr.localhost"])
def test_local_public_url(url):
    found = findings(PUBLIC_URL=url)
    assert len(found) == 1 and found[0].startswith(f"PUBLIC_URL ({url}) is local")


def test_public_url_over_plain_http():
    found = findings(PUBLIC_URL="http://hotline.example.com")
    assert len(found) == 1 and "is not https" in found[0]


def test_unset_token_and_every_finding_in_order():
    found = preflight.problems(Config.from_env({}))
    assert [f.split(" ", 1)[0] for f in found] == ["TWILIO_AUTH_TOKEN", "PUBLIC_URL", "HUMAN_LINE"]


def test_urls_cover_the_console_and_the_operators():
    urls = {u for _, _, u in preflight.urls(Config.from_env(GOOD))}
    for path in ("/voice", "/voice/fallback", "/voice/status", "/voice/agent", "/dashboard/", "/healthz"):
        assert "https://hotline.example.com" + path in urls


def test_serving_several_flows_each_number_gets_its_voice_and_fallback_url(serve, redis):
    """The URLs `ivr serve` prints, used as Twilio would: each flow's Voice URL opens its calls, and
    its fallback URL apologises in that flow's language."""
    from ivr.simulate.twilio_client import parse_twiml
    client = serve(speech=False)
    svc = client.app.extensions["ivr"]
    urls = {what: url for what, _, url in preflight.urls(svc.config, svc.flows)}
    assert len(svc.flows) == 2 and "Every phone number > Call status changes" in urls
    for n, (fid, flow) in enumerate(sorted(svc.flows.items())):
        voice = urls[f"Phone number for flow {fid} > A call comes in"]
        fallback = urls[f"Phone number for flow {fid} > Primary handler fails"]
        assert fallback == voice.replace("/voice?", "/voice/fallback?")
        sid = f"CA{n:032d}"
        assert client.post(voice, {"CallSid": sid, "From": "+15005550142"})[0] == 200
        assert redis.hget(keys.call(sid), "flow") == fid
        _, body = client.post(fallback, {"CallSid": f"CA{n + 10:032d}", "From": "+15005550142", "ErrorCode": "11200"})
        say = parse_twiml(body).find("Say")
        lang = flow.languages[0]
        assert (say.get("language"), say.text) == (flow.say_locale(lang), flow.message("error", lang))


def test_healthz_ok_for_a_production_configuration(make_config, redis, build_app):
    cfg = make_config(public_url="https://hotline.example.com", human_line="+4930123456")
    resp = build_app(cfg, redis=redis).test_client().get("/healthz")
    assert resp.status_code == 200 and resp.get_json()["status"] == "ok" and resp.get_json()["reasons"] == []


def test_healthz_degraded_with_its_reasons_stays_200(make_config, redis, build_app):
    """Every server shares its configuration: a 503 would take all of them out of a balancer."""
    cfg = make_config(public_url="https://hotline.example.com", human_line="+15005550006")
    resp = build_app(cfg, redis=redis).test_client().get("/healthz")
    body = resp.get_json()
    assert resp.status_code == 200 and body["status"] == "degraded"
    assert body["reasons"] == preflight.problems(cfg) and body["reasons"][0].startswith("HUMAN_LINE")


def test_healthz_redis_down_is_503_with_the_reason(make_config, build_app):
    import redis as redis_lib
    cfg = make_config(public_url="https://hotline.example.com", human_line="+4930123456",
                      redis_url="redis://127.0.0.1:1/0")
    down = redis_lib.Redis.from_url(cfg.redis_url, decode_responses=True, socket_connect_timeout=0.5)
    resp = build_app(cfg, redis=down).test_client().get("/healthz")
    assert resp.status_code == 503 and resp.get_json()["reasons"][0].startswith("Redis down")


@pytest.mark.slow
def test_serve_warns_once_per_finding_and_prints_every_url(tmp_path, redis_url):
    """The real `ivr serve`: its banner and warnings, read until the server is up, then stopped."""
    from tests.support.procs import ServeProcess
    srv = ServeProcess({"REDIS_URL": redis_url, "IVR_SPEECH": "off", "IVR_DATA_DIR": str(tmp_path / "var"),
                        "TWILIO_AUTH_TOKEN": "", "PUBLIC_URL": "", "HUMAN_LINE": ""}).start()
    out = srv.terminate()
    warnings = [line for line in out.splitlines() if " WARNING ivr.preflight: " in line]
    assert [w.split(": ", 1)[1].split(" ", 1)[0] for w in warnings] == ["TWILIO_AUTH_TOKEN", "PUBLIC_URL",
                                                                          "HUMAN_LINE", "/metrics"][:len(warnings)]
    assert len(warnings) == 3                  # bound to 127.0.0.1: /metrics is not open to others
    base = f"http://localhost:{srv.port}"
    for path in ("/voice?flow=hotline", "/voice/fallback?flow=hotline", "/voice?flow=hotline_ko",
                 "/voice/fallback?flow=hotline_ko", "/voice/status", "/voice/agent", "/dashboard/", "/healthz"):
        assert f" {base}{path}\n" in out, (path, out)


def test_serve_refuses_a_bad_log_level(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ivr.cli", "serve"], env={"IVR_LOG_LEVEL": "loud", "PATH": ""},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "IVR_LOG_LEVEL must be one of" in proc.stderr


def test_holidays_that_run_out_are_a_finding(make_config):
    """설날 and 추석 move every year: a list that ends makes the next ones open days, so two months
    before its last date the flow is named, and the shipped flows reach past that from today."""
    from datetime import date

    from ivr.flows.loader import load_flows
    flows = load_flows(make_config().flows_dir)
    assert preflight.holiday_problems(flows, date.today()) == []
    soon = preflight.holiday_problems(flows, date(2028, 11, 1))
    assert [p.split(":")[0] for p in soon] == ["flow hotline_ko"], soon
    assert "hours.holidays ends at 2028-10-04" in soon[0]
    late = preflight.holiday_problems(flows, date(2029, 1, 1))
    assert [p.split(":")[0] for p in late] == ["flow hotline", "flow hotline_ko"]
    # The next 설날 and 추석 (lunar 1/1 and 8/15: 2027-02-07, 2027-09-15, 2028-01-27) are closed days.
    from datetime import datetime
    ko = flows["hotline_ko"]
    for day in ("2027-02-08", "2027-09-15", "2028-01-27", "2028-10-03"):
        assert not ko.is_open(datetime.fromisoformat(day + "T12:00:00+09:00").timestamp()), day
    assert ko.is_open(datetime.fromisoformat("2027-02-10T12:00:00+09:00").timestamp())
