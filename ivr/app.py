"""The application factory: one Flask app per process, or per test."""
from __future__ import annotations

import logging
import time

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from .config import Config
from .flows.loader import load_flows
from .redis_conn import connect
from .services import Services

log = logging.getLogger("ivr")

MAX_WEBHOOK_BYTES = 64 * 1024  # Twilio's webhooks are a few KB; anything larger is not Twilio.


def create_app(config: Config | None = None, redis=None, clock=time.time) -> Flask:
    """Build the app. Raises FlowError for an invalid flow: the server must not start with one."""
    config = config or Config.from_env()
    flows = load_flows(config.flows_dir)
    redis = redis or connect(config.redis_url, config.data_dir)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_WEBHOOK_BYTES
    app.extensions["ivr"] = Services(config=config, redis=redis, flows=flows, clock=clock)
    from . import faults
    from .metrics import count_failure
    faults.configure(config.faults)  # off unless IVR_FAULTS is set (reliability tests)
    app.extensions["ivr"].extras.setdefault("failure_counter", count_failure)

    from .web import api, feedback, health, media, queue, voice
    app.register_blueprint(voice.bp)
    media.init_app(app)  # speech over Twilio Media Streams: /media and /voice/stream-ended
    from .speech.transcribe import CommentTranscriber
    svc = app.extensions["ivr"]
    svc.extras.setdefault("comment_transcriber", CommentTranscriber(  # spoken comments -> text, one thread
        svc.store, app.extensions["ivr.speech"].models, config.twilio_account_sid, config.twilio_auth_token))
    app.register_blueprint(queue.bp)
    app.register_blueprint(feedback.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)

    from . import dashboard, metrics
    app.register_blueprint(metrics.bp)
    dashboard.init_app(app)  # operator dashboard, its login, session key and security headers

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return jsonify(error=exc.name, detail=exc.description), exc.code

    return app
