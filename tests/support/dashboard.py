"""Helpers for the dashboard tests (this module holds no tests).

Calls are placed through the real webhooks with the simulator wherever the code that
records them exists; records for the KPI arithmetic (queues, waits) are written here
following the key layout documented in ivr/keys.py.
"""
from __future__ import annotations

import json
import re
import threading
from urllib.parse import urlsplit

from ivr import keys
from ivr.dashboard.auth import Operators
from ivr.simulate.call import CallSimulator

PASSWORD = "correct horse battery"
BOT_PATHS = ("/voice", "/voice/gather")


def add_operator(redis, name="alice", password=PASSWORD):
    return Operators(redis).add(name, password)


def csrf_from(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def login(client, name="alice", password=PASSWORD, ip="127.0.0.1", **form):
    """Log a Flask test client in through the real login form (CSRF token included)."""
    token = csrf_from(client.get("/dashboard/login").get_data(as_text=True))
    return client.post("/dashboard/login", data=dict(name=name, password=password, csrf_token=token, **form),
                       environ_overrides={"REMOTE_ADDR": ip})


def login_over_http(port, name, password, next_=None) -> tuple:
    """The dashboard's login form over a real socket (a server in its own process): GET it (cookie, CSRF
    token), POST it; (status, headers). The cookie is carried by hand: it is Secure when PUBLIC_URL is
    https, and this socket is plain HTTP. A good login answers 302, a refused one 401."""
    import http.client
    import urllib.parse

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/dashboard/login")
    resp = conn.getresponse()
    html = resp.read().decode()
    cookie = resp.getheader("Set-Cookie").split(";", 1)[0]
    form = {"name": name, "password": password, "csrf_token": csrf_from(html)}
    if next_ is not None:
        form["next"] = next_
    conn.request("POST", "/dashboard/login", body=urllib.parse.urlencode(form),
                 headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status, resp.getheaders()


class HoldingClient:
    """A TwilioClient that stops the call once it has left the bot: the caller is then
    waiting for a person (ringing the human line or in a queue) until release()."""

    def __init__(self, inner):
        self.inner = inner
        self.sid = None
        self.holding = threading.Event()
        self.released = threading.Event()

    def post(self, url, params, signature=None):
        self.sid = self.sid or params.get("CallSid")
        path = urlsplit(url).path
        if path not in BOT_PATHS and not self.released.is_set():
            self.holding.set()
            self.released.wait(30)
        return self.inner.post(url, params, signature)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class HeldCall:
    """Place a call with the simulator in the background and keep its caller waiting."""

    def __init__(self, twilio, inputs, **kwargs):
        self.client = HoldingClient(twilio)
        self.sim = CallSimulator(self.client, **kwargs)
        self.inputs = list(inputs)
        self.report = None
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            self.report = self.sim.run(self.inputs)
        except Exception as exc:  # noqa: BLE001 - re-raised in finish()
            self.error = exc
        finally:
            self.client.holding.set()

    def start(self, timeout=10) -> str:
        self.thread.start()
        assert self.client.holding.wait(timeout), "the call never left the bot"
        if self.error:
            raise self.error
        return self.client.sid

    def finish(self, timeout=15) -> dict:
        self.client.released.set()
        self.thread.join(timeout)
        if self.error:
            raise self.error
        return self.report

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.client.released.set()
        self.thread.join(15)


def write_call(redis, sid, *, started_at, turns=(), queue_zset=None, waits=None, abandoned_at=None, **fields):
    """A call record as the webhooks (and issue 6) write it, via the documented key layout.

    Call backs, voicemail, agents and opening hours are never written here: tests reach them
    through the webhooks (tests/support/hotline.py), so a field the code writes under one name
    and reads under another cannot hide."""
    record = {"sid": sid, "from": "+15005550123", "to": "+15005550100", "flow": "hotline", "lang": "en",
              "started_at": started_at, "transfers": 0, "status": "in_bot"}
    record.update({k: v for k, v in fields.items() if v is not None})
    pipe = redis.pipeline()
    pipe.hset(keys.call(sid), mapping={k: str(v) for k, v in record.items()})
    pipe.zadd(keys.RECENT, {sid: started_at})
    if not record.get("outcome"):
        pipe.zadd(keys.ACTIVE, {sid: started_at})
    for t in turns:
        pipe.rpush(keys.turns(sid), json.dumps(t))
    if queue_zset:
        pipe.zadd(keys.queue(queue_zset), {sid: float(record.get("enqueued_at") or started_at)})
    if waits is not None:
        wait, answered_at = waits
        pipe.zadd(keys.WAITS, {f"{sid}|{wait}|{record.get('queue', 'normal')}": answered_at})
    if abandoned_at is not None:
        pipe.zadd(keys.ABANDONED, {f"{sid}|{record.get('queue', 'normal')}": abandoned_at})
    pipe.execute()
    return sid
