"""Caller ratings (1-5) and the optional spoken comment after them."""
from __future__ import annotations

import logging

from flask import Blueprint, request

from .. import quality
from ..flows.digits import spoken_digits
from ..signature import twilio_signed
from .common import call_sid, fail_safe_goodbye, services, twiml

log = logging.getLogger("ivr.feedback")
bp = Blueprint("feedback", __name__, url_prefix="/voice")


@bp.post("/rating")
@twilio_signed
@fail_safe_goodbye
def rating():
    svc = services()
    sid = call_sid()
    after = "agent" if request.args.get("after") == "agent" else "bot"
    report = svc.store.report(sid) or {"record": {}, "turns": []}
    flow, lang = svc.flow_for_record(report["record"])
    locale = flow.say_locale(lang)
    raw = request.form.get("Digits") or spoken_digits(request.form.get("SpeechResult", ""), lang)
    if not (len(raw) == 1 and raw in "12345"):
        return twiml(svc.twiml.say_then_hangup([flow.message("goodbye", lang)], locale))
    value = int(raw)
    now = svc.store.now()
    svc.store.record_once(sid, "rating", {"rating": value, "rating_after": after, "rated_at": now}, "rating",
                          ops=quality.rating_ops(value, quality.call_topic(report["turns"]), now))
    return twiml(svc.twiml.ask_comment(flow.message("rating_thanks", lang), flow.message("goodbye", lang),
                                       locale=locale))


@bp.post("/comment")
@twilio_signed
@fail_safe_goodbye
def comment():
    """The caller's spoken comment: kept as a recording link, transcribed offline when a model exists."""
    svc = services()
    sid = call_sid()
    url = request.form.get("RecordingUrl", "")[:300]
    record, _ = svc.store.load(sid)
    flow, lang = svc.flow_for_record(record)
    if url:
        svc.store.record_once(sid, "comment", {"comment_url": url,
                                               "comment_seconds": request.form.get("RecordingDuration", "")[:6]},
                              "comment")
        svc.transcriber.submit(sid, url, lang)
    return twiml(svc.twiml.say_then_hangup([flow.message("goodbye", lang)], flow.say_locale(lang)))
