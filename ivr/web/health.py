"""Liveness and readiness for load balancers and the operator."""
from flask import Blueprint, jsonify

from ..redis_conn import describe
from .common import services

bp = Blueprint("health", __name__)

# name -> function returning the status of a model ("ok", "loading", "missing: ...").
# The speech engine registers its models here, e.g. at start-up:
#     from ivr.web.health import register_model_check
#     register_model_check("vosk-en", lambda: "ok" if model_loaded else "loading")
# Until something registers, /healthz reports the models as "unknown".
_MODEL_CHECKS = {}


def register_model_check(name: str, check) -> None:
    _MODEL_CHECKS[name] = check


def model_status() -> dict:
    out = {}
    for name, check in list(_MODEL_CHECKS.items()):
        try:
            out[name] = str(check())
        except Exception as exc:  # noqa: BLE001 - a broken check is a status, not a crash
            out[name] = f"error: {type(exc).__name__}"
    return out or {"speech": "unknown"}


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
            "flows": {fid: f.languages for fid, f in svc.flows.items()}, "models": model_status()}
    return jsonify(body), 200 if redis_ok == "ok" else 503
