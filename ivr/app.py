"""The application factory: one Flask app per process, or per test."""
from __future__ import annotations

import logging
import time

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from . import faults, logs
from .calls import is_call_sid
from .config import Config, ConfigError, default_flow_problem
from .flows.loader import load_flows
from .redis_conn import for_config, refuse_cluster
from .services import Services

log = logging.getLogger("ivr")

MAX_WEBHOOK_BYTES = 64 * 1024  # Twilio's webhooks are a few KB; anything larger is not Twilio.


def create_app(config: Config | None = None, redis=None, clock=time.time, engines: dict | None = None) -> Flask:
    """Build the app. Raises FlowError for an invalid flow, ConfigError for an IVR_DEFAULT_FLOW
    that is not among the flows and UnsupportedRedis for a Redis Cluster: the server must not start
    with any of them.

    `engines` ({flow id: flows.engine.Engine}) are config.flows_dir's flows, already loaded and
    built. An Engine keeps no call state, so one set can serve every app of a process: the test
    suite builds them once per session instead of once per app (~0.6 s of CPU each, parsing the
    YAML and indexing the intents). None: load and build them here, as a server does."""
    from . import dashboard
    from .web import api, callback, feedback, health, queue, stream, voice

    config = config or Config.from_env()
    flows = load_flows(config.flows_dir) if engines is None else {fid: e.flow for fid, e in engines.items()}
    problem = default_flow_problem(config.default_flow, flows, config.flows_dir)
    if problem:
        raise ConfigError(problem)
    redis = redis or for_config(config)
    refuse_cluster(redis)          # UnsupportedRedis: the server must not start on a Redis Cluster
    faults.configure(config.faults)  # off unless IVR_FAULTS is set (reliability tests)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_WEBHOOK_BYTES
    app.extensions["ivr"] = Services(config=config, redis=redis, initial_flows=flows, clock=clock,
                                       initial_engines=engines)
    for bp in (voice.bp, stream.bp, queue.bp, callback.bp, feedback.bp, api.bp, health.bp):
        app.register_blueprint(bp)
    dashboard.init_app(app)  # operator dashboard, its login, session key and security headers

    @app.before_request
    def bind_call():
        """Twilio's webhooks name their call: every line logged while one is handled carries it."""
        sid = request.form.get("CallSid") if request.mimetype == "application/x-www-form-urlencoded" else None
        logs.bind_call(sid if is_call_sid(sid) else None)

    @app.teardown_request
    def unbind_call(_exc):
        logs.bind_call(None)        # the thread serves another call next

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return jsonify(error=exc.name, detail=exc.description), exc.code

    return app
