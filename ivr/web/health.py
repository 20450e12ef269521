"""Liveness and readiness for load balancers and the operator."""
from flask import Blueprint, jsonify

from ..redis_conn import describe
from .common import services

bp = Blueprint("health", __name__)


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
            "flows": {fid: f.languages for fid, f in svc.flows.items()}}
    return jsonify(body), 200 if redis_ok == "ok" else 503
