"""/metrics (Prometheus text read from Redis at scrape time) and /healthz's model status."""
import time

import redis as redis_lib
from prometheus_client.parser import text_string_to_metric_families

from ivr import create_app
from ivr.metrics import ACTIVE_STREAMS, RECOGNITION_LATENCY
from tests.support.dashboard import write_call


def scrape(client, **headers):
    resp = client.get("/metrics", headers=headers)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for fam in text_string_to_metric_families(resp.get_data(as_text=True)):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_metrics_read_calls_from_redis(app, redis, simulate):
    simulate(("press", "3"), ("press", "2"))
    simulate(("press", "0"))
    now = time.time()
    write_call(redis, "CAq1", started_at=now - 50, status="queued", queue="urgent", transfers=2,
               handoff_at=now - 40, enqueued_at=now - 40, queue_zset="urgent")
    write_call(redis, "CAq2", started_at=now - 20, status="queued", queue="normal", transfers=1,
               handoff_at=now - 10, enqueued_at=now - 10, queue_zset="normal")
    m = scrape(app.test_client())
    assert m[("ivr_redis_up", ())] == 1
    assert m[("ivr_queue_size", (("queue", "urgent"),))] == 1
    assert m[("ivr_queue_size", (("queue", "normal"),))] == 1
    assert m[("ivr_calls_active", (("state", "waiting"),))] == 2
    assert m[("ivr_calls_last_24h", (("outcome", "answered"),))] == 1
    assert m[("ivr_calls_last_24h", (("outcome", "handoff"),))] == 1
    assert m[("ivr_calls_last_24h", (("outcome", "in_progress"),))] == 2
    assert m[("ivr_handoffs_last_24h", (("result", "reached_person"),))] == 1
    assert m[("ivr_handoffs_last_24h", (("result", "waiting"),))] == 2
    assert m[("ivr_wait_seconds_last_24h_bucket", (("le", "+Inf"),))] == 1
    assert m[("ivr_transfers_per_call_last_24h_bucket", (("le", "0"),))] == 1
    assert m[("ivr_transfers_per_call_last_24h_bucket", (("le", "1"),))] == 3
    assert m[("ivr_transfers_per_call_last_24h_bucket", (("le", "+Inf"),))] == 4
    assert m[("ivr_transfers_per_call_last_24h_gsum", ())] == 4


def test_every_process_reports_the_same_queue(make_config, redis):
    cfg = make_config()
    apps = [create_app(cfg, redis=redis_lib.Redis.from_url(cfg.redis_url, decode_responses=True)) for _ in range(2)]
    write_call(redis, "CAq", started_at=time.time(), status="queued", queue="urgent", transfers=1,
               handoff_at=time.time(), queue_zset="urgent")
    for app in apps:
        assert scrape(app.test_client())[("ivr_queue_size", (("queue", "urgent"),))] == 1


def test_process_metrics_for_speech(app):
    RECOGNITION_LATENCY.labels(engine="test").observe(0.25)
    ACTIVE_STREAMS.inc()
    try:
        m = scrape(app.test_client())
        assert m[("ivr_recognition_latency_seconds_count", (("engine", "test"),))] >= 1
        assert m[("ivr_media_streams_active", ())] >= 1
    finally:
        ACTIVE_STREAMS.dec()


def test_metrics_token(make_config, redis):
    cfg = make_config(metrics_token="scrape-me-please")
    client = create_app(cfg, redis=redis_lib.Redis.from_url(cfg.redis_url, decode_responses=True)).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert scrape(client, Authorization="Bearer scrape-me-please")[("ivr_redis_up", ())] == 1


def test_metrics_and_health_when_redis_is_down(make_config, redis):
    cfg = make_config(redis_url="redis://127.0.0.1:1/0")
    down = redis_lib.Redis.from_url(cfg.redis_url, decode_responses=True, socket_connect_timeout=0.5)
    client = create_app(cfg, redis=down).test_client()
    m = scrape(client)
    assert m[("ivr_redis_up", ())] == 0
    resp = client.get("/healthz")
    assert resp.status_code == 503 and resp.get_json()["redis"].startswith("down")


def test_healthz_reports_each_language(make_config, redis):
    """English has no model here (keypad only), Korean's ships with the package; speech off says so."""
    models = create_app(make_config(), redis=redis).test_client().get("/healthz").get_json()["models"]
    assert models["vosk-en"].startswith("missing: keypad only")
    assert models["vosk-ko"] in ("loaded", "available: loads on the first call")
    off = create_app(make_config(speech=False), redis=redis).test_client().get("/healthz").get_json()["models"]
    assert set(off.values()) == {"off (IVR_SPEECH=off): keypad"}
