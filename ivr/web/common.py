"""Helpers shared by the Twilio-facing blueprints: the CallSid, TwiML responses, the fail-safes."""
from __future__ import annotations

import logging
import math
from functools import wraps

from flask import Response, abort, request
from werkzeug.exceptions import HTTPException

from .. import streamauth
from ..calls import is_call_sid
from ..metrics import count_failure
from ..services import services

log = logging.getLogger("ivr.web")

def call_sid(value: str | None = None, name: str = "CallSid") -> str:
    """The request's CallSid (form field `name`, or the value given); 400 unless it is one."""
    value = request.form.get(name, "") if value is None else value
    if not is_call_sid(value):
        abort(400, description=f"{name} is missing or invalid")
    return value


def whole_seconds(raw, default: int = 0) -> int:
    """A count of seconds Twilio sends as text (QueueTime, AvgQueueTime): a bad value (":", "nan",
    "1e999") is the default, never an error that would send the caller to the fallback."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return default
    return int(value) if math.isfinite(value) else default


def request_flow(svc, args=None) -> tuple:
    """(flow, language) of the call this request is about, without trusting anything to work:
    its record when Redis answers, else `?flow=`/`?lang=` (of `args` when given, else of this
    request's URL) and the number dialled (`To`), as POST /voice picks them, else the default
    flow. So an apology after a failure is in the caller's own language."""
    sid = request.form.get("CallSid", "")
    if is_call_sid(sid):
        try:
            record, _ = svc.store.load(sid)
            if record.get("flow"):
                return svc.flow_for_record(record)
        except Exception:  # noqa: BLE001 - Redis may be what failed; the request itself still says enough
            pass
    args = request.args if args is None else args
    flow = svc.pick_flow(args.get("flow"), request.form.get("To"))
    lang = args.get("lang")
    if lang not in flow.languages and not args.get("flow"):
        flow = svc.flow_for_lang(lang or "") or flow
    return flow, lang if lang in flow.languages else flow.languages[0]


def twiml(xml: str) -> Response:
    return Response(xml, mimetype="text/xml")


def stream_twiml(svc, sid: str, leg: int, **params) -> str:
    """<Connect><Stream> for stream `leg` of call `sid`, with its single-use credential (ivr/streamauth.py)."""
    params[streamauth.PARAMETER] = streamauth.issue(svc.keyring.stream_key, sid, leg, svc.clock())
    return svc.twiml.stream(params=params)


def _log_failure(what):
    sid = request.form.get("CallSid", "?")
    log.exception("call %s: %s failed; %s", sid if is_call_sid(sid) else "?", request.path, what)
    count_failure(request.path)


def _guarded(what, answer):
    """A view whose every failure (not a 400) is logged, counted, and answered with `answer`."""
    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            try:
                return view(*args, **kwargs)
            except HTTPException:
                raise    # a request Twilio would never send (400): a clear error, and Twilio's fallback URL
            except Exception:  # noqa: BLE001 - the caller is answered whatever broke
                _log_failure(what)
                svc = services()
                flow, lang = request_flow(svc)
                return twiml(answer(svc, flow, lang))
        return wrapper
    return decorate


# Whatever breaks inside (Redis down, a flow bug), the caller goes to a person. The fallback
# TwiML needs only configuration, so it works when nothing else does.
fail_safe = _guarded("sending the caller to the human line", lambda svc, flow, lang: svc.twiml.emergency(
    flow.message("error", lang), flow.say_locale(lang)))

# For the end of a call (rating, comment, voicemail): a failure says goodbye, it does not ring the
# human line for a caller who is leaving anyway.
fail_safe_goodbye = _guarded("ending politely", lambda svc, flow, lang: svc.twiml.say_then_hangup(
    [flow.message("goodbye", lang)], flow.say_locale(lang)))
