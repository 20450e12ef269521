"""Monitoring: liveness and readiness for load balancers (/healthz), Prometheus figures (/metrics)."""
import hmac

from flask import Blueprint, Response, jsonify, request
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..metrics import exposition
from ..redis_conn import describe
from .common import services

bp = Blueprint("health", __name__)


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
    body = {"status": "ok" if redis_ok == "ok" else "degraded", "redis": redis_ok,
            "redis_backend": describe(svc.config.redis_url),
            "flows": {fid: f.languages for fid, f in svc.flows.items()}, "models": model_status(svc)}
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
    return Response(exposition(svc.redis, svc.clock), mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                    headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})
