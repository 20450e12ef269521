"""Machine-readable call reports for the simulator and evaluation tools.

Signed with the Twilio auth token like every webhook: whoever can sign
requests as Twilio may read what the calls did; nobody else can.
"""
from flask import Blueprint, abort, jsonify

from ..signature import twilio_signed
from .common import is_call_sid, services

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.get("/calls/<sid>")
@twilio_signed
def call_report(sid):
    report = services().store.report(sid) if is_call_sid(sid) else None
    if report is None:
        abort(404, description="no such call")
    return jsonify(report)
