"""Log lines for operators and log shippers: a level, text or JSON, the call on every line of a call.

IVR_LOG_FORMAT=json writes one JSON object per line (ts, level, logger, msg, call_sid, exc), so a
log shipper needs no parsing rules and one call's lines are found by its SID. The message is the
same text the plain format prints: every call site already masks numbers (ivr/redact.py), and no
field is added that the text format would not show, apart from the call SID (not personal data).

The call SID comes from a context variable set where a request or a media stream learns which call
it serves (bind_call); a logging filter copies it onto every record. gunicorn serves each request
on one thread at a time and each media stream on its request's thread, so a thread's value is its
call's; threads started for a call (the audio player) run in a copy of the starter's context.

The access log (one line per request) goes through the same handler: method, path without its query
string (Twilio's query strings carry no secret, but other clients' may), status, size, duration.
Phone numbers in a path are masked; client addresses are not logged (the proxy's log has them).
"""
from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time

from .redact import mask_phone

CALL_SID: contextvars.ContextVar = contextvars.ContextVar("ivr_call_sid", default=None)
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def bind_call(sid: str | None) -> None:
    """The call this thread now works for (None: none)."""
    CALL_SID.set(sid or None)


def current_call() -> str | None:
    return CALL_SID.get()


class CallFilter(logging.Filter):
    """Every record gets `call_sid` (None outside a call)."""

    def filter(self, record):
        if not hasattr(record, "call_sid"):
            record.call_sid = CALL_SID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; newlines inside a message or traceback stay inside the string."""

    def format(self, record):
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
               + f".{int(record.msecs):03d}Z",
               "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        sid = getattr(record, "call_sid", None)
        if sid:
            out["call_sid"] = sid
        for extra in ("method", "path", "status", "bytes", "ms"):      # access log fields
            if hasattr(record, extra):
                out[extra] = getattr(record, extra)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def setup(level: str = "INFO", fmt: str = "text", stream=None) -> logging.Handler:
    """The root logger writes to stderr in `fmt` at `level`; replaces earlier handlers (idempotent)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    handler.addFilter(CallFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)       # Python's warnings too, in the same format (not raw stderr)
    return handler


# +15551234567 or its URL-encoded form %2B15551234567 (a phone number in a path).
_PHONE_IN_PATH = re.compile(r"(?:\+|%2[Bb])(\d{7,15})")


def safe_path(path: str) -> str:
    """A request path for the access log: the query string dropped, phone numbers masked."""
    path = (path or "").split("?", 1)[0]
    return _PHONE_IN_PATH.sub(lambda m: mask_phone("+" + m.group(1)), path)


def access_line(method: str, path: str, status, size, ms: float) -> tuple:
    """(message, extra fields) of one access-log record."""
    path = safe_path(path)
    size = size if isinstance(size, int) else 0
    return (f'"{method} {path}" {status} {size}B {ms:.1f}ms',
            {"method": method, "path": path, "status": int(status), "bytes": size, "ms": round(ms, 1)})


ACCESS = logging.getLogger("gunicorn.access")


def access(method: str, path: str, status, size, ms: float) -> None:
    """An access line for a request gunicorn does not log itself (a media stream's upgraded socket)."""
    message, fields = access_line(method, path, status, size, ms)
    ACCESS.info("%s", message, extra=fields)
