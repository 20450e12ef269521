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


def default_flow():
    svc = services()
    flow = svc.flows.get(svc.config.default_flow) or next(iter(svc.flows.values()))
    return svc, flow, flow.languages[0]


def count_failure(where):
    counter = services().extras.get("failure_counter")
    if counter is not None:
        counter(where)


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
            count_failure(request.path)
            svc, flow, lang = default_flow()
            return twiml(svc.twiml.emergency(flow.message("error", lang), flow.say_locale(lang)))
    return wrapper


def fail_safe_goodbye(view):
    """For the end of a call (rating, comment, voicemail): a failure says goodbye, it
    does not ring the human line for a caller who is leaving anyway."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except Exception:  # noqa: BLE001 - the caller still hears a proper goodbye
            log.exception("call %s: %s failed; ending politely", request.form.get("CallSid", "?"), request.path)
            count_failure(request.path)
            svc, flow, lang = default_flow()
            return twiml(svc.twiml.say_then_hangup([flow.message("goodbye", lang)], flow.say_locale(lang)))
    return wrapper
