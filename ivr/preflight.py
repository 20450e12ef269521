"""Configuration that works for a demo but fails real callers: found once, said twice.

`ivr serve` prints each finding as a one-line warning at start-up, and /healthz lists them as the
reasons for "degraded" (ivr/web/health.py), so a server that would dial a Twilio test number when
a caller must reach a person, or that told Twilio a URL Twilio cannot reach, is visible both to the
person starting it and to monitoring. Each finding is one sentence with what to set; none carries a
secret or a full phone number.
"""
from __future__ import annotations

import ipaddress
import re
import time
from datetime import date, datetime, timedelta
from urllib.parse import urlencode, urlsplit

from .redact import mask_phone

# A flow's list of holidays must reach this far ahead: past its last date, every holiday is an open day.
HOLIDAYS_AHEAD = timedelta(days=60)

# Twilio's magic test numbers (+1500555xxxx): they never ring a person.
TEST_NUMBER = re.compile(r"\+1500555\d{4}")
E164 = re.compile(r"\+[1-9]\d{6,14}")


def is_local_host(host: str) -> bool:
    host = (host or "").strip("[]").lower()
    if host in ("localhost", "") or host.endswith(".localhost"):
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return addr.is_loopback or addr.is_unspecified or addr.is_private or addr.is_link_local


def human_line_problems(number: str) -> list:
    if not number:
        return ["HUMAN_LINE is unset: callers who must reach a person reach nobody; set it to your agents' "
                "number (E.164, e.g. +4930123456)"]
    if TEST_NUMBER.fullmatch(number):
        return [f"HUMAN_LINE is a Twilio test number ({number}) that never rings a person: callers the bot "
                "hands over (and every caller when something fails) reach nobody; set HUMAN_LINE"]
    if not E164.fullmatch(number):
        return [f"HUMAN_LINE ({mask_phone(number)}) is not an E.164 number (+ and 7-15 digits): Twilio "
                "cannot dial it"]
    return []


def public_url_problems(url: str) -> list:
    parts = urlsplit(url or "")
    host = parts.hostname or ""
    if is_local_host(host):
        return [f"PUBLIC_URL ({url}) is local: Twilio cannot reach it; set PUBLIC_URL to the https address "
                "of your proxy or tunnel (deploy/)"]
    if parts.scheme != "https":
        return [f"PUBLIC_URL ({url}) is not https: Twilio's requests and the callers' audio would cross the "
                "internet unencrypted; put the TLS proxy from deploy/ in front and use https"]
    return []


def source_problems(flows, secrets) -> list:
    """Data sources whose headers name an environment variable that is not set (every lookup there
    would fail, and every caller who asks for it would go to a person), or that send a credential
    unencrypted to another machine."""
    out = []
    for fid, flow in sorted(flows.items()):
        for name, src in sorted(flow.sources.items()):
            out += [f"flow {fid}: data source '{name}' needs {var} (header credentials come from the "
                    "environment); unset, every lookup fails and its callers go to a person"
                    for var in src.secret_names() if not secrets.get(var)]
            parts = urlsplit(src.url)
            if src.secret_names() and parts.scheme == "http" and not is_local_host(parts.hostname or ""):
                out.append(f"flow {fid}: data source '{name}' sends its credential over plain http to "
                           f"{parts.hostname}: anyone on the way can read it; use https")
    return out


def holiday_problems(flows, today: date) -> list:
    """Flows whose holidays run out soon: movable feasts (설날, 추석, Easter) are listed by date, one
    year at a time, and a list that ends treats the next ones as open days: callers are offered a
    queue nobody staffs."""
    out = []
    for fid, flow in sorted(flows.items()):
        hours = getattr(flow, "hours", None)
        if hours is None or not hours.holidays:
            continue
        last = max(hours.holidays)
        if last < today + HOLIDAYS_AHEAD:
            out.append(f"flow {fid}: hours.holidays ends at {last.isoformat()}: later holidays count as open "
                       "days (callers are offered a queue nobody staffs); list the coming year's")
    return out


def problems(cfg, flows=None, today: date | None = None) -> list:
    """Every finding for this configuration (and the flows served, when given), in the order an
    operator fixes them."""
    out = []
    if cfg.token_generated:
        out.append("TWILIO_AUTH_TOKEN is unset: this run signs with a generated token, so Twilio's real "
                   "requests are refused (403); set it from the Twilio console")
    out += public_url_problems(cfg.public_url)
    out += human_line_problems(cfg.human_line)
    out += source_problems(flows or {}, cfg.source_secrets)
    out += holiday_problems(flows or {}, today or datetime.fromtimestamp(time.time()).date())
    return out


def urls(cfg, flows=None) -> list:
    """(what, method, URL) for everything the Twilio console and the operators need. Serving several
    flows, each flow's number gets its own pair: the Voice URL with ?flow= and the fallback URL with
    the same ?flow=, so that even the apology after a failure is in that flow's language."""
    if flows and len(flows) > 1:
        ids = sorted(flows, key=lambda fid: (fid != cfg.default_flow, fid))
        numbers = [(f"Phone number for flow {fid} > {what}", "POST", cfg.url(f"{path}?{urlencode({'flow': fid})}"))
                   for fid in ids for what, path in (("A call comes in", "/voice"),
                                                     ("Primary handler fails", "/voice/fallback"))]
        numbers.append(("Every phone number > Call status changes", "POST", cfg.url("/voice/status")))
    else:
        numbers = [("Phone number > A call comes in", "POST", cfg.url("/voice")),
                   ("Phone number > Primary handler fails", "POST", cfg.url("/voice/fallback")),
                   ("Phone number > Call status changes", "POST", cfg.url("/voice/status"))]
    return numbers + [
        ("Agent line number > A call comes in", "POST", cfg.url("/voice/agent")),
        ("Operators' dashboard", "GET", cfg.url("/dashboard/")),
        ("Health (load balancer, monitoring)", "GET", cfg.url("/healthz")),
        ("Metrics (Prometheus)", "GET", cfg.url("/metrics")),
    ]
