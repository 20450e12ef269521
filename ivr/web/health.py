"""Monitoring: liveness and readiness for load balancers (/healthz, with configuration that fails callers
reported as "degraded": ivr/preflight.py), Prometheus figures (/metrics),
and the duration of every request, per route (ivr_http_request_duration_seconds)."""
import hmac
import time

from flask import Blueprint, Response, g, jsonify, request

from .. import preflight
from ..metrics import HTTP_DURATION, TURN_LATENCY
from ..redis_conn import describe_config
from .common import services

bp = Blueprint("health", __name__)

# Requests that last as long as a call or a dashboard session: not what a latency histogram is for.
UNTIMED = {"stream.media", "dashboard.events"}
# The method label takes these values and "other": a label taken from the request line as sent would
# let anyone grow /metrics by a series per made-up method, unauthenticated, until a restart.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@bp.before_app_request
def _start_timer():
    g.ivr_t0 = time.perf_counter()


@bp.after_app_request
def _observe(resp):
    t0 = g.get("ivr_t0")
    if t0 is not None and request.endpoint not in UNTIMED:
        seconds = time.perf_counter() - t0
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        method = request.method if request.method in METHODS else "other"
        HTTP_DURATION.labels(route=rule, method=method, code=str(resp.status_code)).observe(seconds)
        if request.endpoint == "voice.gather":
            TURN_LATENCY.labels(input="keypad").observe(seconds)
    return resp


def model_status(svc) -> dict:
    """Each language of the loaded flows: spoken (its model loaded or available) or keypad only."""
    out = {}
    for lang in sorted({lang for f in svc.flows.values() for lang in f.languages}):
        try:
            out[f"vosk-{lang}"] = svc.speech.status(lang)
        except Exception as exc:  # noqa: BLE001 - a broken check is a status, not a crash
            out[f"vosk-{lang}"] = f"error: {type(exc).__name__}"
    return out


@bp.get("/healthz")
def healthz():
    svc = services()
    try:
        svc.redis.ping()
        redis_ok = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        redis_ok = f"down: {type(exc).__name__}"
    reasons = ([] if redis_ok == "ok" else [f"Redis {redis_ok}: every caller goes to a person"]) + \
        preflight.problems(svc.config, svc.flows)
    body = {"status": "degraded" if reasons else "ok", "reasons": reasons, "redis": redis_ok,
            "redis_backend": describe_config(svc.config),
            "flows": {fid: f.languages for fid, f in svc.flows.items()}, "models": model_status(svc)}
    # 503 only when this server cannot serve calls normally (Redis down): a load balancer then takes it
    # out of rotation. Configuration findings leave it at 200: every server shares them, and taking them
    # all out would leave callers nothing; monitoring alerts on "degraded" instead (docs/dashboard.md).
    return jsonify(body), 200 if redis_ok == "ok" else 503


@bp.get("/metrics")
def metrics():
    svc = services()
    token = svc.config.metrics_token
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return Response("unauthorized\n", status=401, mimetype="text/plain",
                            headers={"WWW-Authenticate": 'Bearer realm="ivr metrics"'})
    body, content_type = svc.metrics_cache.get(svc.redis, request.headers.get("Accept", ""))
    # content_type, not mimetype: Flask would replace the exposition format's version with its own charset.
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})
