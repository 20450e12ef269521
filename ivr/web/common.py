"""Helpers shared by the Twilio-facing blueprints."""
from __future__ import annotations

import logging
from functools import wraps

from flask import Response, current_app, request

log = logging.getLogger("ivr.web")


def services():
    return current_app.extensions["ivr"]


def twiml(xml: str) -> Response:
    return Response(xml, mimetype="text/xml")


def fail_safe(view):
    """Whatever breaks inside (Redis down, a flow bug), the caller goes to a person.

    The fallback TwiML needs only configuration, so it works when nothing else does.
    """
    @wraps(view)
    def wrapper(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except Exception:  # noqa: BLE001 - any failure must end at a human, not a dropped call
            log.exception("call %s: %s failed; sending the caller to the human line",
                          request.form.get("CallSid", "?"), request.path)
            svc = services()
            flow = svc.flows.get(svc.config.default_flow) or next(iter(svc.flows.values()))
            lang = flow.languages[0]
            return twiml(svc.twiml.emergency(flow.message("error", lang), flow.say_locale(lang)))
    return wrapper
