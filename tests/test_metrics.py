"""/metrics: events counted where they happen (summed across gunicorn workers), the present state read
from Redis in one round trip, Prometheus naming and content type; /healthz's model status."""
import json
import secrets
import threading
import time

import pytest
import redis as redis_lib
from prometheus_client.parser import text_string_to_metric_families

from ivr import keys
from ivr.simulate.call import CallSimulator
from ivr.simulate.twilio_client import TwilioClient
from tests.support.dashboard import write_call
from tests.support.procs import ServeProcess


@pytest.fixture
def config(make_config):
    return make_config(metrics_cache_seconds=0)      # every scrape fresh: the tests compare before and after


def scrape(client, **headers):
    resp = client.get("/metrics", headers=headers)
    assert resp.status_code == 200
    return parse(resp.get_data(as_text=True), resp.headers["Content-Type"])


def parse(text, content_type):
    # The exposition format's own type (with its version), never Flask's default text/plain.
    assert content_type == "text/plain; version=0.0.4; charset=utf-8", content_type
    samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_calls_handoffs_and_the_shared_state(app, redis, simulate):
    client = app.test_client()
    before = scrape(client)
    simulate(("press", "3"), ("press", "2"))
    simulate(("press", "0"))
    now = time.time()
    write_call(redis, "CA" + "1" * 32, started_at=now - 50, status="queued", queue="urgent", transfers=2,
               handoff_at=now - 40, enqueued_at=now - 40, queue_zset="urgent")
    m = scrape(client)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return m.get(key, 0) - before.get(key, 0)

    assert m[("ivr_redis_up", ())] == 1
    assert m[("ivr_queue_size", (("queue", "urgent"),))] == 1
    assert m[("ivr_queue_size", (("queue", "normal"),))] == 0          # the simulated caller was answered, left
    assert m[("ivr_calls_active", ())] >= 1
    assert delta("ivr_calls_total", lang="en", asr="dtmf") == 2
    # (the second call is a repeat caller: the urgent queue)
    assert sum(delta("ivr_handoffs_total", queue=q, reason="agent_request") for q in ("urgent", "normal")) == 1
    assert delta("ivr_http_request_duration_seconds_count", route="/voice", method="POST", code="200") == 2
    assert delta("ivr_turn_latency_seconds_count", input="keypad") >= 3
    assert not any(name.endswith("_last_24h") or "last_24h" in name for name, _ in m)   # no windowed names


def test_a_scrape_reads_no_call_record(app, redis):
    """Whatever the number of calls, a scrape is one Redis round trip of O(1) reads."""
    from tests.support.redis_count import CountingRedis
    counting = CountingRedis.from_url(app.extensions["ivr"].config.redis_url, decode_responses=True)
    for i in range(50):
        write_call(redis, f"CA{i:032x}", started_at=time.time(), status="in_bot")
    from ivr.metrics import exposition
    counting.round_trips.take()
    exposition(counting)
    assert counting.round_trips.take() == 1


def test_a_flood_of_scrapes_is_answered_from_the_cache(make_config, redis, build_app):
    from tests.support.redis_count import CountingRedis
    cfg = make_config(metrics_cache_seconds=30)
    counting = CountingRedis.from_url(cfg.redis_url, decode_responses=True)
    client = build_app(cfg, redis=counting).test_client()
    first = client.get("/metrics").get_data()
    counting.round_trips.take()
    assert all(client.get("/metrics").get_data() == first for _ in range(50))
    assert counting.round_trips.take() == 0


@pytest.mark.speech
def test_a_spoken_call_feeds_recognition_latency_and_open_streams(app, twilio, redis, ko_model):
    """A real Korean call through the simulator: /metrics counts its stream as open while it lasts,
    and each utterance the recognizer finished is one more recognition-latency sample."""
    client = app.test_client()
    latency = ("ivr_recognition_latency_seconds_count", (("engine", "vosk"),))
    streams = ("ivr_media_streams_active", ())
    before = scrape(client)
    highest, done = [before[streams]], threading.Event()

    def watch():
        watcher = app.test_client()
        while not done.is_set():
            highest.append(scrape(watcher)[streams])
            time.sleep(0.02)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        sim = CallSimulator(twilio, from_number="+15005550191",
                            stream_options=dict(barge_in_after=0.4, listen_to_end=False, end_wait=0.3))
        report = sim.run([("say", "시간")], "ko")
    finally:
        done.set()
        thread.join(5)
    assert report["asr"] == "vosk" and report["intents"] == ["opening_hours"]
    assert max(highest) >= before[streams] + 1                  # the stream counted itself open
    deadline = time.monotonic() + 5                             # the socket's handler ends just after
    while scrape(client)[streams] != before[streams] and time.monotonic() < deadline:
        time.sleep(0.02)
    after = scrape(client)
    assert after[streams] == before[streams]                    # ... and closed
    spoken = [t for t in map(json.loads, redis.lrange(keys.turns(report["call_sid"]), 0, -1))
              if t.get("who") == "caller" and t.get("input") == "speech"]
    assert spoken and after.get(latency, 0) - before.get(latency, 0) == len(spoken)


def test_made_up_methods_share_one_series(app):
    """Anyone can send a request line with a method of their own: each would be a new series, and
    /metrics (open unless a token is set) would grow until a restart."""
    client = app.test_client()
    for i in range(30):
        assert client.open(f"/x{i}", method=f"XQZ{i:04d}").status_code in (404, 405)
    client.open("/voice", method="BREW")
    m = scrape(client)
    methods = {dict(labels).get("method") for name, labels in m if name == "ivr_http_request_duration_seconds_count"}
    assert not any(str(x).startswith("XQZ") for x in methods), methods
    assert "BREW" not in methods
    assert m[("ivr_http_request_duration_seconds_count",
              (("code", "404"), ("method", "other"), ("route", "unmatched")))] >= 30


def test_openmetrics_when_asked(app):
    resp = app.test_client().get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    assert resp.get_data(as_text=True).rstrip().endswith("# EOF")


def test_metrics_token(make_config, redis, build_app):
    cfg = make_config(metrics_token="scrape-me-please", metrics_cache_seconds=0)
    client = build_app(cfg).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert scrape(client, Authorization="Bearer scrape-me-please")[("ivr_redis_up", ())] == 1


def test_metrics_and_health_when_redis_is_down(make_config, redis, build_app):
    cfg = make_config(redis_url="redis://127.0.0.1:1/0", metrics_cache_seconds=0)
    down = redis_lib.Redis.from_url(cfg.redis_url, decode_responses=True, socket_connect_timeout=0.5)
    client = build_app(cfg, redis=down).test_client()
    m = scrape(client)
    assert m[("ivr_redis_up", ())] == 0
    resp = client.get("/healthz")
    assert resp.status_code == 503 and resp.get_json()["redis"].startswith("down")


def test_healthz_reports_each_language(make_config, redis, build_app):
    """English has no model here (keypad only), Korean's ships with the package; speech off says so."""
    models = build_app(make_config(), redis=redis).test_client().get("/healthz").get_json()["models"]
    assert models["vosk-en"].startswith("missing: keypad only")
    assert models["vosk-ko"] in ("loaded", "available: loads on the first call")
    off = build_app(make_config(speech=False), redis=redis).test_client().get("/healthz").get_json()["models"]
    assert set(off.values()) == {"off (IVR_SPEECH=off): keypad"}


@pytest.mark.slow
def test_four_workers_counters_sum_across_them(redis_url, redis, tmp_path):
    """`ivr serve --workers 4`: calls land on any worker; every scrape, whichever worker answers it,
    shows all of them."""
    import urllib.request
    token, public = "m" * 32, "https://hotline.example"
    srv = ServeProcess({"TWILIO_AUTH_TOKEN": token, "PUBLIC_URL": public, "REDIS_URL": redis_url,
                        "IVR_SPEECH": "off", "IVR_DATA_DIR": str(tmp_path / "var"),
                        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}, threads=4, workers=4).start()
    try:
        twilio = TwilioClient(srv.url, token, public_url=public)
        calls = 40
        for i in range(calls):
            sid = "CA" + secrets.token_hex(16)
            # Distinct numbers: two calls from one number make a repeat caller, who goes to the urgent
            # queue (random 4-digit numbers collided in 7.5% of runs, and the normal-queue count fell short).
            assert twilio.post("/voice", {"CallSid": sid, "From": f"+1500555{i:04d}"})[0] == 200
            twilio.post("/voice/gather?turn=1", {"CallSid": sid, "Digits": "0"})
        seen = []
        for _ in range(12):
            with urllib.request.urlopen(srv.url + "/metrics", timeout=5) as resp:
                m = parse(resp.read().decode(), resp.headers["Content-Type"])
            seen.append((m[("ivr_calls_total", (("asr", "dtmf"), ("lang", "en")))],
                         m[("ivr_handoffs_total", (("queue", "normal"), ("reason", "agent_request")))],
                         m[("ivr_http_request_duration_seconds_count",
                            (("code", "200"), ("method", "POST"), ("route", "/voice/gather")))]))
        assert set(seen) == {(calls, calls, calls)}, seen
        pids = {f.stem.rsplit("_", 1)[-1] for f in (tmp_path / "metrics").glob("counter_*.db")}
        assert len(pids) >= 3, pids            # the calls really were spread over the workers
    finally:
        srv.kill()
