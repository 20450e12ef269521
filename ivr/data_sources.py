"""Lookups in the business's own system over HTTP: the `sources:` a flow declares (docs/flows.md).

Why here and not in the engine: a lookup is I/O that can be slow or fail, and the engine is pure
(the same decisions for keypad webhooks, media streams, the evaluation runner and the tests). The
engine decides *when* a slot needs a record and what a missing record or a failure means for the
call; it receives `fetch` from the turn (ivr.turn) as a function, so it never opens a socket.

What a lookup does: GET the flow's URL with the slot value in it, wait at most the source's
`timeout` (2 s unless the flow says, at most 5: a caller hears silence meanwhile), and read the
declared fields from a JSON object. 404 means "no such record": the caller is asked again, as for
a number missing from a data file. Anything else - a timeout, a refused connection, another error
status, an answer that is not JSON or lacks a field - is LookupFailed: the caller hears the flow's
`failed` words and goes to a person, never left in silence.

Credentials: a source's `headers` may name environment variables, `${IVR_SOURCE_SHOP_TOKEN}`, filled
in here from Config.source_secrets at each request. The flow file (in a repository, in backups) holds
only the name; a variable that is not set is a failed lookup naming the variable, never its value.
"""
from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from urllib.parse import quote

from .flows.model import SECRET_REF, DataSource, LookupFailed

log = logging.getLogger("ivr.data_sources")

MAX_ANSWER_BYTES = 64 * 1024     # an order's status is a few hundred bytes; more is not that


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer the flow did not declare: a failure, not a hop to another host."""

    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def headers(source: DataSource, secrets: dict) -> dict:
    """The request's headers, ${IVR_SOURCE_...} filled in. LookupFailed names a variable not set."""
    out = {"Accept": "application/json", "User-Agent": "ivr"}
    for name, template in source.headers.items():
        for ref in SECRET_REF.findall(template):
            if not secrets.get(ref):
                raise LookupFailed(f"{ref} is not set (header {name})")
            if not secrets[ref].isprintable():
                # A line break (an env file saved on Windows) would make the request fail with the
                # value in the exception: say which variable, never what it holds.
                raise LookupFailed(f"{ref} holds a line break or another control character (header {name})")
        out[name] = SECRET_REF.sub(lambda m: secrets[m.group(1)], template)
    return out


def fetch(source: DataSource, value: str, secrets: dict | None = None) -> dict | None:
    """The record `source` has for `value` (its declared fields), None if it has none (404).
    Raises LookupFailed for everything else; the reason is for the log and the transcript."""
    url = source.url.replace("{value}", quote(value, safe=""))
    request = urllib.request.Request(url, headers=headers(source, secrets or {}))
    started = time.monotonic()
    try:
        with _OPENER.open(request, timeout=source.timeout) as answer:
            body = answer.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise LookupFailed(f"HTTP {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LookupFailed(f"no answer within {source.timeout:g} s" if "timed out" in str(reason)
                           else f"unreachable ({reason})") from None
    except (http.client.HTTPException, ValueError) as exc:
        # Not HTTP (a garbage status line, broken chunking, a header too long) or a request the
        # library refused: the type only, since a message may quote what was sent or received.
        raise LookupFailed(f"no usable HTTP answer ({type(exc).__name__})") from None
    # The socket timeout bounds each read; this bounds the whole answer (a server that trickles).
    if time.monotonic() - started > source.timeout:
        raise LookupFailed(f"no answer within {source.timeout:g} s")
    if len(body) > MAX_ANSWER_BYTES:
        raise LookupFailed(f"answer larger than {MAX_ANSWER_BYTES} bytes")
    try:
        doc = json.loads(body)
    except ValueError:
        raise LookupFailed("answer is not JSON") from None
    except RecursionError:
        # "[[[[...": well under the size bound, it exhausts the decoder's stack (as media frames can).
        raise LookupFailed("answer is JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise LookupFailed("answer is not a JSON object")
    record = {}
    for name, path in source.fields.items():
        value_at = doc
        for part in path.split("."):
            if not isinstance(value_at, dict) or part not in value_at:
                raise LookupFailed(f"answer has no '{path}'")
            value_at = value_at[part]
        if isinstance(value_at, (dict, list)) or value_at is None:
            raise LookupFailed(f"'{path}' is not a value to say")
        record[name] = value_at
    return record


def lookup(source: DataSource, value: str, secrets: dict | None = None) -> dict | None:
    """fetch, with the outcome logged (the source's name and why; not the value, which may be personal,
    nor a header, which may be a credential)."""
    started = time.monotonic()
    try:
        record = fetch(source, value, secrets)
    except LookupFailed as exc:
        log.warning("data source %s failed after %.2f s: %s; the caller goes to a person", source.name,
                    time.monotonic() - started, exc)
        raise
    log.info("data source %s answered in %.2f s%s", source.name, time.monotonic() - started,
             "" if record is not None else " (not found)")
    return record
