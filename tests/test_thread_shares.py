"""Long requests cannot take every thread from the webhooks (ivr/slots.py, StreamSession's media wait),
shown with the attacks of the review against `ivr serve` (gunicorn, the production configuration,
16 threads) and a real Redis, each while a signed POST /voice must answer in time:

- replayed signed media handshakes that never send `start` (before: /healthz 8-14 s, /voice up to 10 s);
- one operator's cookie opening live view after live view (before: /voice unanswered for 15 s);
- admitted streams that never send media (before: each held its thread 75 s and more).
"""
import http.client
import re
import secrets
import socket
import threading
import time
import urllib.parse

import pytest
from twilio.request_validator import RequestValidator

from ivr import keys
from ivr.dashboard.auth import Operators
from ivr.simulate.stream_client import open_stream
from ivr.simulate.twilio_client import TwilioClient, parse_twiml
from ivr.speech.session import MEDIA_WAIT, START_WAIT
from tests.support.procs import ServeProcess
from tests.support.slow_clients import probe
from tests.support.wire import read_until_closed

pytestmark = [pytest.mark.slow, pytest.mark.load]   # real processes, time bounds

TOKEN = "t" * 32
PUBLIC = "https://hotline.example"
THREADS = 16
SHARE = THREADS // 4          # ThreadShares.of: a quarter of the threads for live views
STREAM_SHARE = THREADS // 2   # and half for media sockets waiting for their start
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def server(redis_url, tmp_path_factory):
    env = {"TWILIO_AUTH_TOKEN": TOKEN, "PUBLIC_URL": PUBLIC, "REDIS_URL": redis_url,
           "IVR_SECRET_KEY": "server-secret-" + "s" * 30, "IVR_DATA_DIR": str(tmp_path_factory.mktemp("var"))}
    srv = ServeProcess(env, threads=THREADS).start()
    yield srv
    srv.kill()


def signed_voice(sid=None) -> bytes:
    params = {"CallSid": sid or "CA" + secrets.token_hex(16), "From": "+15005550150", "To": "+15005550100"}
    sig = RequestValidator(TOKEN).compute_signature(PUBLIC + "/voice", params)
    body = urllib.parse.urlencode(params)
    return (f"POST /voice HTTP/1.1\r\nHost: hotline.example\r\nX-Twilio-Signature: {sig}\r\nConnection: close\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()


HEALTH = b"GET /healthz HTTP/1.1\r\nHost: hotline.example\r\nConnection: close\r\n\r\n"


def probes(server, seconds, stop=None):
    """/healthz and a signed POST /voice, about twice a second: [(what, status, seconds)]."""
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline and not (stop and stop()):
        for what, raw in (("healthz", HEALTH), ("voice", signed_voice())):
            status, took = probe("127.0.0.1", server.port, raw, timeout=15)
            out.append((what, status, round(took, 3)))
        time.sleep(0.4)
    return out


def read_head(sock) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


def status_of(head: bytes) -> int:
    try:
        return int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


# -- media sockets that never send `start` -------------------------------------------------------
MEDIA_SIGNATURE = RequestValidator(TOKEN).compute_signature(PUBLIC.replace("https", "wss") + "/media", {})


class Replayer:
    """`n` sockets replaying the one signed /media handshake from `sources`, never sending `start`; each is
    opened again as soon as the server closes it (or refuses it)."""

    def __init__(self, port, n, sources, seconds=30):
        self.port, self.sources, self.deadline = port, sources, time.monotonic() + seconds
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers = []            # (status, seconds to the answer)
        self.open_now = self.most_open = 0
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(10)

    def _run(self, i):
        source = self.sources[i % len(self.sources)]
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            t0 = time.monotonic()
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=15, source_address=(source, 0))
            except OSError:
                time.sleep(0.05)
                continue
            try:
                s.sendall(("GET /media HTTP/1.1\r\nHost: hotline.example\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           f"Sec-WebSocket-Version: 13\r\nX-Twilio-Signature: {MEDIA_SIGNATURE}\r\n\r\n").encode())
                status = status_of(read_head(s))
                with self.lock:
                    self.answers.append((status, time.monotonic() - t0))
                if status == 101:
                    with self.lock:
                        self.open_now += 1
                        self.most_open = max(self.most_open, self.open_now)
                    try:
                        s.settimeout(0.5)
                        while not self.stop.is_set():   # until the server closes it (no start: START_WAIT)
                            try:
                                if not s.recv(4096):
                                    break
                            except TimeoutError:
                                continue
                    finally:
                        with self.lock:
                            self.open_now -= 1
                else:
                    self.stop.wait(0.1)
            except OSError:
                pass
            finally:
                s.close()


def test_replayed_media_handshakes_without_start_leave_threads_for_webhooks(server, redis):
    """32 sockets (twice the threads) from 4 addresses replay the stream's signed handshake and never send
    `start`: half the threads take them, the others are refused at once (503), /voice answers."""
    with Replayer(server.port, 2 * THREADS, [f"127.0.0.{60 + i}" for i in range(4)]) as attack:
        time.sleep(1)
        samples = probes(server, START_WAIT + 3)
    refused = [took for status, took in attack.answers if status == 503]
    assert samples and all(status == 200 for _, status, _ in samples), samples
    assert max(took for *_, took in samples) < 1.0, samples
    assert 0 < attack.most_open <= STREAM_SHARE, attack.most_open             # half the threads at most
    assert refused and max(refused) < 1.0, max(refused or [0])                # over the share: 503 at once
    assert {status for status, _ in attack.answers} == {101, 503}
    calls = [k for k in redis.scan_iter(keys.CALL_PREFIX + "*") if k.count(":") == 2]
    assert len(calls) == sum(1 for what, *_ in samples if what == "voice")   # no socket touched a call


# -- live views ------------------------------------------------------------------------------------
def login(server, name) -> str:
    """The dashboard's login form over a real socket; the session cookie (carried by hand: it is Secure)."""
    Operators(server.redis).add(name, PASSWORD)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", "/dashboard/login")
    resp = conn.getresponse()
    html = resp.read().decode()
    cookie = resp.getheader("Set-Cookie").split(";", 1)[0]
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    conn.request("POST", "/dashboard/login",
                 body=urllib.parse.urlencode({"name": name, "password": PASSWORD, "csrf_token": token}),
                 headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status == 302
    return resp.getheader("Set-Cookie").split(";", 1)[0]


def live_view(server, cookie):
    """GET /dashboard/events: (status, seconds to the answer, the open socket, the head and body read)."""
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    s.sendall(f"GET /dashboard/events HTTP/1.1\r\nHost: hotline.example\r\nCookie: {cookie}\r\n\r\n".encode())
    head = read_head(s)
    return status_of(head), time.monotonic() - t0, s, head


def test_live_views_are_capped_per_session_and_in_total(server, redis):
    server.redis = redis
    alice, bob = login(server, "alice"), login(server, "bob")
    opened = []
    try:
        answers = []
        for _ in range(THREADS):                                   # the review: 16 streams, one cookie
            status, took, s, head = live_view(server, alice)
            answers.append((status, took))
            opened.append(s)
            if status != 200:
                assert b"Retry-After: 5" in head and b"application/json" in head, head
        samples = probes(server, 2)
        assert all(status == 200 for _, status, _ in samples) and max(t for *_, t in samples) < 1.0, samples
        mine = sorted(status for status, _ in answers)
        assert mine == [200] * 3 + [429] * (THREADS - 3), answers      # three per session (LIVE_VIEWS_PER_SESSION)
        assert max(took for _, took in answers) < 1.0, answers
        statuses = [live_view(server, bob) for _ in range(2)]
        opened += [s for _, _, s, _ in statuses]
        assert [st for st, *_ in statuses] == [200, 503]               # the process's share: a quarter, 4
        # The browser closes a tab: its stream ends within a second or two, and the session may open another.
        first = next(i for i, (st, _) in enumerate(answers) if st == 200)
        opened.pop(first).close()
        deadline, status = time.monotonic() + 5, 0
        while time.monotonic() < deadline and status != 200:
            time.sleep(0.25)
            status, _, s, _ = live_view(server, alice)
            opened.append(s)
        assert status == 200
    finally:
        for s in opened:
            s.close()


# -- admitted streams without media ----------------------------------------------------------------
def test_admitted_streams_without_media_end_and_their_callers_reach_a_person(server, redis):
    """As many admitted streams as threads, none sending media: each ends MEDIA_WAIT after its start, as a
    failed stream (the call goes to a person through /voice/stream-ended); /voice is answered meanwhile."""
    twilio = TwilioClient(server.url, TOKEN, public_url=PUBLIC)
    streams = []
    for _ in range(THREADS):
        sid = "CA" + secrets.token_hex(16)
        body = twilio.post("/voice?lang=ko", {"CallSid": sid, "From": "+15005550160"})[1]
        stream = parse_twiml(body).find("Connect").find("Stream")
        custom = {p.get("name"): p.get("value") for p in stream}
        ws, tw = open_stream(server.url.replace("http://", "ws://") + "/media", MEDIA_SIGNATURE, sid, custom,
                             timeout=20)
        streams.append((sid, ws, time.monotonic()))
    status, took = probe("127.0.0.1", server.port, signed_voice(), timeout=15)
    assert status == 200 and took < MEDIA_WAIT + 3, took            # well within Twilio's 15 s
    for _, ws, started in streams:                                 # each closed (as a failed stream) in time
        code, _ = read_until_closed(ws, MEDIA_WAIT + 10)
        assert code == 1000 and time.monotonic() - started < MEDIA_WAIT + 3
        ws.close()
    for sid, _, _ in streams:
        rec = redis.hgetall(keys.call(sid))
        assert rec["stream"] == "error" and rec["failure"] == "no_media", rec
    sid = streams[0][0]
    status, body = twilio.post("/voice/stream-ended", {"CallSid": sid, "From": "+15005550160"})
    root = parse_twiml(body)
    assert status == 200 and root.find("Enqueue") is not None            # a person, as after any failed stream
    rec = redis.hgetall(keys.call(sid))
    assert rec["reason"] == "stream_failed" and rec["transfers"] == "1"
