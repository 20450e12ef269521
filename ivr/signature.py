"""Twilio request signatures: every webhook and the media handshake must carry one."""
from __future__ import annotations

import logging
from functools import wraps

from flask import abort, request
from twilio.request_validator import RequestValidator

from .services import services

log = logging.getLogger(__name__)


def signed_url(config, req=None) -> str:
    """The URL Twilio signed: the public base URL plus the path and query as received.

    Behind a proxy or tunnel the local URL differs from what Twilio called, so
    the configured PUBLIC_URL decides, never the Host header.
    """
    req = req or request
    query = req.query_string.decode("latin-1")
    return config.public_url + req.path + ("?" + query if query else "")


def is_valid(config, url, params, signature) -> bool:
    if not signature:
        return False
    return RequestValidator(config.twilio_auth_token).validate(url, params, signature)


def twilio_signed(view):
    """Reject (403) any request without a valid X-Twilio-Signature before it touches state."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        cfg = services().config
        params = request.form if request.method == "POST" else {}
        if not is_valid(cfg, signed_url(cfg), params, request.headers.get("X-Twilio-Signature", "")):
            log.warning("rejected %s %s: missing or invalid X-Twilio-Signature", request.method, request.path)
            abort(403, description="invalid or missing X-Twilio-Signature")
        return view(*args, **kwargs)
    return wrapper
