"""Dashboard routes: login, the live page, one call's page, data for the page, SSE, CSV.

Nothing about a call leaves without a valid session: pages redirect to the login,
data and the event stream answer 401.
"""
from __future__ import annotations

import logging
from datetime import datetime
from functools import wraps
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFError

from .. import callbacks, quality, voicemail
from ..calls import num
from ..redact import mask_digits
from ..server import STOPPING
from ..services import services
from ..slots import Full
from ..summary import agent_summary  # the words the agent heard, from the function that spoke them
from ..web.common import is_call_sid
from . import audit, export, kpi, security, sse, timeline
from .auth import Lockout, Operators, Sessions
from .queries import Queries

log = logging.getLogger("ivr.dashboard")

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="../web/templates",
               static_folder="../web/static", static_url_path="/static")

RECENT_LIMIT = 100


def _queries():
    return Queries(services().redis)


def _sessions():
    return Sessions(services().redis, services().config.session_hours, clock=services().clock)


def _tz():
    return kpi.tzinfo(services().config.timezone)


def login_required(api=False):
    def deco(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            operator = _sessions().operator(session.get("token"))
            if operator is None:
                if api:
                    return jsonify(error="Unauthorized", detail="log in at /dashboard/login"), 401
                return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))
            g.operator = operator
            return view(*args, **kwargs)
        return wrapper
    return deco


@bp.before_request
def check_csrf():
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        security.csrf.protect()


bp.after_request(security.page_headers)


@bp.errorhandler(CSRFError)
def csrf_failed(exc):
    return render_template("login.html", error="The form expired. Please try again.", next=""), 400


@bp.app_template_filter("clock")
def clock_filter(ts, fmt="%H:%M:%S"):
    ts = num(ts)
    if ts is None:
        return ""
    tz = _tz()
    return (datetime.fromtimestamp(ts, tz) if tz else datetime.fromtimestamp(ts)).strftime(fmt)


def _client_ip() -> str:
    return request.remote_addr or ""


def _safe_next(target: str) -> str:
    """Only back into the dashboard: never an open redirect to another site, never a header
    broken by a control character (CR/LF would make the redirect itself fail)."""
    target = target or ""
    if any(ord(c) < 32 or ord(c) == 127 for c in target):
        return url_for("dashboard.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/dashboard") or "\\" in target:
        return url_for("dashboard.index")
    return target


# -- login ---------------------------------------------------------------------------------------
@bp.route("/login", methods=["GET", "POST"])
def login():
    svc = services()
    nxt = request.values.get("next", "")
    if request.method == "GET":
        return render_template("login.html", error=None, next=nxt)
    name = (request.form.get("name") or "").strip().lower()[:64]
    password = request.form.get("password") or ""
    lock = Lockout(svc.redis, svc.config.login_max_failures, svc.config.login_lock_seconds, svc.keyring.hash_key)
    ip = _client_ip()
    wait = lock.attempt(name, ip)
    if wait:
        log.warning("dashboard login refused while locked (account %r)", name)
        minutes = max(1, round(wait / 60))
        return render_template("login.html", error=f"Too many failed attempts. Try again in {minutes} min.",
                               next=nxt), 429
    if not Operators(svc.redis, clock=svc.clock).verify(name, password):
        log.warning("dashboard login failed for %r", name)  # never the password
        return render_template("login.html", error="Wrong name or password.", next=nxt), 401
    lock.succeeded(name, ip)
    session.clear()  # a fresh session (and CSRF token) at every login: no session fixation
    session["token"] = _sessions().create(name, ip)
    session.permanent = True
    log.info("dashboard login: %s", name)
    return redirect(_safe_next(nxt))


@bp.post("/logout")
def logout():
    _sessions().end(session.get("token"))
    session.clear()
    return redirect(url_for("dashboard.login"))


# -- pages ---------------------------------------------------------------------------------------
@bp.get("/")
@bp.get("")
@login_required()
def index():
    svc = services()
    return render_template("dashboard.html", operator=g.operator, sl=svc.config.service_level_seconds,
                           **knowledge_base(svc))


def knowledge_base(svc, top=10, days=7):
    """What the support manager improves next: the questions the bot did not understand most
    often, per flow and language, and how callers rated each topic over the last week."""
    unanswered = []
    for flow in svc.flows.values():
        for lang in flow.languages:
            for row in quality.top_unanswered(svc.redis, flow.id, lang, top):
                unanswered.append({"flow": flow.id, "lang": lang, "text": mask_digits(row["text"]),
                                   "count": row["count"]})
    unanswered.sort(key=lambda r: -r["count"])
    totals = {}
    for per_day in quality.ratings_by_day(svc.redis, days, now=svc.clock()).values():
        for intent, figures in per_day.items():
            t = totals.setdefault(intent, [0, 0.0])
            t[0] += figures["count"]
            t[1] += (figures["average"] or 0) * figures["count"]
    ratings = sorted(({"intent": k, "count": n, "average": round(total / n, 2)} for k, (n, total) in totals.items()
                      if n), key=lambda r: (r["intent"] != "all", -r["count"]))
    return {"unanswered": unanswered[:top], "ratings": ratings}


@bp.get("/calls/<sid>")
@login_required()
def call_page(sid):
    report = _queries().call(sid[:64])
    if report is None:
        abort(404, description="no such call (it may have expired)")
    svc = services()
    rec = report["record"]
    flow, lang = svc.flow_for_record(rec)
    summary = agent_summary(flow, lang, report, queue=rec.get("queue"))
    return render_template("call.html", operator=g.operator, call=timeline.header(rec),
                           timeline=timeline.build(report), summary=mask_digits(summary),
                           sl=svc.config.service_level_seconds, callback=_callback_view(svc, rec),
                           voicemail=_voicemail_view(svc, sid, rec))


def _callback_view(svc, rec):
    """The call back on a call page; the full number only while the call back is open."""
    state = rec.get("callback_state")
    if not state:
        return None
    queue = rec.get("callback_queue") or rec.get("queue") or "normal"
    return {"state": state, "attempts": int(num(rec.get("callback_attempts")) or 0),
            "failures": int(num(rec.get("callback_failures")) or 0), "max": svc.config.callback_max_attempts,
            "last_result": rec.get("callback_last_result") or None, "urgent": queue == "urgent",
            "after_hours": rec.get("callback_after_hours") == "1",
            "requested_at": num(rec.get("callback_requested_at")), "done_by": rec.get("callback_done_by"),
            "done_at": num(rec.get("callback_done_at")),
            "number": rec.get("from") if callbacks.is_open(rec) else None,
            "reachable": callbacks.reachable(rec.get("from")), "can_call": svc.twilio_api.available}


def _voicemail_view(svc, sid, rec):
    """The voicemail on a call page: player (when stored here), transcript, handled or not."""
    if not rec.get("voicemail_state"):
        return None
    stored = voicemail.audio_path(svc.config.data_dir, sid).is_file()
    return {"state": rec.get("voicemail_state"), "seconds": num(rec.get("voicemail_seconds")),
            "at": num(rec.get("voicemail_at")), "text": mask_digits(rec.get("voicemail_text") or "") or None,
            "asr": rec.get("voicemail_asr"), "stored": stored,
            "audio_url": url_for("dashboard.voicemail_audio", sid=sid) if stored else None,
            "handled_by": rec.get("voicemail_handled_by"), "handled_at": num(rec.get("voicemail_handled_at")),
            "number": rec.get("from") if rec.get("voicemail_state") == "new" else None}


@bp.get("/calls/<sid>/voicemail.wav")
@login_required(api=True)
def voicemail_audio(sid):
    """The voicemail's audio, for operators only (range requests: the player can seek)."""
    if not is_call_sid(sid):
        abort(404)
    path = voicemail.audio_path(services().config.data_dir, sid)
    if not path.is_file():
        abort(404, description="no voicemail stored for this call")
    return send_file(path, mimetype="audio/wav", conditional=True, max_age=0)


# -- operators' actions --------------------------------------------------------------------------
def _back(sid):
    return redirect(_safe_next(request.form.get("next") or url_for("dashboard.call_page", sid=sid)))


def _known_call(sid):
    if not is_call_sid(sid):
        abort(404)
    record, _ = services().store.load(sid)
    if not record:
        abort(404, description="no such call (it may have expired)")
    return record


@bp.post("/calls/<sid>/callback")
@login_required()
def call_back_now(sid):
    """"Call back now": ring the caller through Twilio and bridge them to the human line."""
    _known_call(sid)
    try:
        n = services().callbacks.call_back(sid, by=g.operator, via="dashboard")
        flash(f"Calling back now (attempt {n}). The human line rings when the caller answers.", "ok")
    except callbacks.CallbackError as exc:
        flash(f"Not called: {exc}.", "error")
    return _back(sid)


@bp.post("/calls/<sid>/callback/done")
@login_required()
def callback_done(sid):
    svc = services()
    record = _known_call(sid)
    if callbacks.is_open(record):
        fields, ops = callbacks.close(sid, operator=g.operator, now=svc.store.now(), ttl=svc.config.retention_seconds)
        svc.store.record_once(sid, "callback:done", fields, "callback_done", ops=ops)
        log.info("call back for %s marked done by %s", sid, g.operator)
    return _back(sid)


@bp.post("/calls/<sid>/voicemail/handled")
@login_required()
def voicemail_handled(sid):
    svc = services()
    record = _known_call(sid)
    if record.get("voicemail_state") == "new":
        fields, ops = voicemail.handled(sid, g.operator, svc.store.now(), svc.config.retention_seconds)
        svc.store.record_once(sid, "voicemail:handled", fields, "voicemail_handled", ops=ops)
        log.info("voicemail of %s marked handled by %s", sid, g.operator)
    return _back(sid)


# -- data ----------------------------------------------------------------------------------------
@bp.get("/api/live")
@login_required(api=True)
def live():
    svc = services()
    return jsonify(_queries().live(svc.clock(), svc.config.service_level_seconds))


@bp.get("/api/kpis")
@login_required(api=True)
def kpis():
    svc = services()
    now = svc.clock()
    tz = _tz()
    start = kpi.day_starts(now, 7, tz)[0]
    inputs = _queries().kpi_inputs(start, now)
    return jsonify(kpi.report(inputs, now, svc.config.service_level_seconds, tz))


@bp.get("/api/calls")
@login_required(api=True)
def recent_calls():
    svc = services()
    now = svc.clock()
    recs = _queries().started_between(now - 86400, now)
    recs.sort(key=lambda r: -(num(r.get("started_at")) or 0))
    rows = [timeline.header(r) for r in recs[:RECENT_LIMIT]]
    return jsonify(now=now, calls=rows)


@bp.get("/api/calls/<sid>")
@login_required(api=True)
def call_data(sid):
    report = _queries().call(sid[:64])
    if report is None:
        abort(404, description="no such call")
    return jsonify(call=timeline.header(report["record"]), timeline=timeline.build(report))


@bp.get("/events")
@login_required(api=True)
def events():
    """The live view's event stream. Each holds a server thread for up to an hour, so a process serves only
    a share of its threads as streams, a few per operator session (ivr/slots.py); one more is refused
    at once: 429 for the session's, 503 when the process has none left. EventSource gives up on any
    answer but 200; the page then reads /api/live and opens its stream again 3 s later (dashboard.js)."""
    svc = services()
    queries, token = _queries(), session.get("token")
    try:
        view = svc.shares.live_views.take(token)
    except Full as full:
        mine = full.scope == "key"
        log.warning("live view refused for %s: %s", g.operator,
                    "this session has its share open" if mine else "no stream left on this process")
        detail = ("this login has the most live views open already; close a tab" if mine
                  else "the server serves as many live views as it can; the page refreshes meanwhile")
        return (jsonify(error="Too Many Requests" if mine else "Service Unavailable", detail=detail),
                429 if mine else 503, {"Retry-After": "5", "Cache-Control": "no-store"})
    sessions, sl = _sessions(), svc.config.service_level_seconds
    stream = sse.live_stream(queries, snapshot=lambda: queries.live(svc.clock(), sl),
                             logged_in=lambda: sessions.operator(token) is not None, stopping=STOPPING.is_set,
                             gone=sse.peer_gone(request.environ))
    response = Response(stream, mimetype="text/event-stream",
                        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    response.call_on_close(view.release)      # the stream ended, or the browser went away
    return response


@bp.context_processor
def export_periods():
    """The export links of every dashboard page: the periods retention keeps (export.day_choices)."""
    choices = export.day_choices(services().config.retention_days)
    return {"export_days": choices, "export_default": min(7, choices[-1])}


@bp.get("/export.csv")
@login_required(api=True)
def export_csv():
    svc = services()
    days = export.clamp_days(request.args.get("days"), svc.config.retention_days)
    now, tz = svc.clock(), _tz()
    start = kpi.day_starts(now, days, tz)[0]
    records = _queries().started_between(start, now)
    unmask = set()
    if request.args.get("numbers") == "callbacks":
        # An explicit choice, recorded with who and when: the numbers of callers who asked to be
        # called back (or left a message). Every other number stays masked.
        unmask = {r["sid"] for r in records if r.get("callback_state") or r.get("voicemail_state")}
        audit.record(svc.redis, g.operator, "csv_with_numbers", now, days=days, numbers=len(unmask))
        log.warning("CSV export of %d days WITH %d callers' numbers by %s", days, len(unmask), g.operator)
    body = export.to_csv(records, tz, unmask=unmask)
    stamp = datetime.fromtimestamp(now, tz).strftime("%Y%m%d-%H%M") if tz else datetime.fromtimestamp(now).strftime(
        "%Y%m%d-%H%M")
    log.info("CSV export of %d days by %s", days, g.operator)
    return Response(body, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="ivr-calls-{stamp}.csv"'})

