"""Bad input on the media WebSocket (real server, real socket, real Korean Vosk): invalid JSON,
unknown events, media before start, huge or non-base64 payloads, binary frames, floods and
oversized messages. Each is ignored (counted in the record's bad_messages) or, past the socket's
size limit, closes that stream only, and its caller goes to a person; the process survives and
a simultaneous conversation is untouched."""
import base64
import json
import random
import secrets
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr import keys
from ivr.media import protocol
from ivr.metrics import PROCESS
from ivr.simulate.call import CallSimulator
from ivr.simulate.stream_client import open_stream
from ivr.simulate.twilio_client import parse_twiml
from ivr.web.stream import MAX_SOCKET_MESSAGE
from tests.support.fault_table import record as record_row
from tests.support.wire import read_until_closed

SENT = {"messages": 0, "streams": 0}


class Stream:
    """A signed socket for one call; `start` registers the call first (POST /voice) when asked."""

    def __init__(self, twilio, config, redis, started=True):
        self.sid = "CA" + secrets.token_hex(16)
        self.redis = redis
        custom = {"lang": "ko"}
        if started:
            body = twilio.post("/voice?lang=ko", {"CallSid": self.sid, "From": "+15005550145"})[1]
            custom = {p.get("name"): p.get("value") for p in parse_twiml(body).find("Connect").find("Stream")}
        url = config.public_url.replace("http://", "ws://") + "/media"
        self.ws, self.tw = open_stream(url, twilio.validator.compute_signature(url, {}), self.sid,
                                       custom if started else None, timeout=10)
        SENT["streams"] += 1

    def send(self, msg):
        if isinstance(msg, (bytes, bytearray)):
            self.ws.send_binary(bytes(msg))
        else:
            self.ws.send(msg)
        SENT["messages"] += 1

    def until_closed(self, seconds=10):
        """Read (and drop) what the bot sends until the server closes; the close code."""
        return read_until_closed(self.ws, seconds)[0]

    def wait_ended(self, seconds=10):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            stream = self.redis.hget(keys.call(self.sid), "stream")
            if stream not in (None, "live"):
                return self.redis.hgetall(keys.call(self.sid))
            time.sleep(0.02)
        raise AssertionError(f"stream of {self.sid} never recorded its end")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- generated bad messages (never a valid start, stop or dtmf: the call must stay as it is) -----------
junk_text = st.one_of(st.text(max_size=200), st.just("{not json"), st.just("null"), st.just("[]"),
                      st.just("x" * 100_000), st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                           max_leaves=12)
unknown_event = st.builds(lambda e, extra: json.dumps({"event": e, **extra}),
                          st.text(max_size=20).filter(lambda e: e not in ("media", "mark", "connected", "start",
                                                                           "stop", "dtmf")),
                          st.dictionaries(st.text(max_size=8), json_values, max_size=3))
bad_media = st.one_of(
    st.builds(lambda p: json.dumps({"event": "media", "media": {"payload": p}}), st.text(max_size=64)),
    st.just(json.dumps({"event": "media", "media": {"payload": b64(b"\xff" * 20_000)}})),   # over 16 KB
    st.just(json.dumps({"event": "media"})), st.just(json.dumps({"event": "media", "media": []})),
    st.builds(lambda p: json.dumps({"event": "media", "media": {"payload": b64(p), "chunk": "x"}}),
              st.binary(max_size=400)),
)
bad_other = st.one_of(
    st.builds(lambda d: json.dumps({"event": "dtmf", "dtmf": {"digit": d}}),
              st.text(max_size=3).filter(lambda d: d not in set("0123456789*#"))),
    st.just(json.dumps({"event": "mark"})), st.just(json.dumps({"event": "start", "start": "x"})),
    st.builds(lambda n: json.dumps({"event": "mark", "mark": {"name": n}}), st.text(max_size=300)),
    st.binary(min_size=1, max_size=2000),
    st.just(json.dumps({"event": "start", "start": {"callSid": "CA" + "1" * 32, "streamSid": "MZx",
                                                    "mediaFormat": {"encoding": "audio/l16"}}})),
)
messages = st.lists(st.one_of(junk_text, unknown_event, bad_media, bad_other), min_size=1, max_size=25)


def expected_bad(msgs) -> int:
    """How many of these the session must count as bad (it parses exactly like protocol.parse)."""
    n = 0
    for m in msgs:
        try:
            event = protocol.parse(m)
        except protocol.ProtocolError:
            n += 1
            continue
        if isinstance(event, protocol.Start):
            n += 1                                  # a second start is ignored
    return n


FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.slow
@pytest.mark.speech
@FUZZ
@given(msgs=messages)
def test_generated_bad_messages_are_ignored_and_counted(twilio, config, redis, ko_model, msgs):
    s = Stream(twilio, config, redis)
    for m in msgs:
        s.send(m)
    s.send(s.tw.stop())                             # the caller hangs up
    assert s.until_closed() in (1000, -1)
    rec = s.wait_ended()
    assert rec["stream"] == "stopped" and "failure" not in rec     # ended by the caller, not by us
    assert int(rec["bad_messages"]) == expected_bad(msgs)
    assert not rec.get("handoff_at") and rec.get("transfers") in (None, "0")


def test_messages_before_start_and_without_a_call(twilio, config, redis):
    s = Stream(twilio, config, redis, started=False)
    for m in [s.tw.media(b"\xff" * 160), s.tw.dtmf("5"), s.tw.mark("p1"), "{", b"\x00\x01"]:
        s.send(m)
    s.send(s.tw.stop())
    assert s.until_closed() in (1000, -1)
    assert redis.exists(keys.call(s.sid)) == 0      # nothing recorded for a stream that never started


def _victim(twilio):
    """A real conversation, running while the socket is abused: it must end exactly as usual."""
    sim = CallSimulator(twilio, from_number="+15005550146",
                        stream_options=dict(barge_in_after=0.4, listen_to_end=False, end_wait=0.3))
    return sim.run([("say", "시간"), ("say", "아니오")], "ko")


@pytest.mark.slow
@pytest.mark.speech
def test_storm_of_bad_input_leaves_a_simultaneous_call_untouched(twilio, config, redis, server, ko_model):
    rng = random.Random(10)
    failures_before = PROCESS.get_sample_value("ivr_failures_total", {"where": "stream:oversized"}) or 0.0
    with ThreadPoolExecutor(1) as pool:
        victim = pool.submit(_victim, twilio)
        time.sleep(0.5)

        # 1. A flood: 5000 messages as fast as the socket takes them, then the call still works.
        flood = Stream(twilio, config, redis)
        kinds = ["{bad", json.dumps({"event": "party"}), json.dumps({"event": "media", "media": {"payload": "!!"}}),
                 b"\x00" * 64, flood.tw.media(b"\xff" * 160), flood.tw.mark("nope")]
        sent = [rng.choice(kinds) for _ in range(5000)]
        t0 = time.monotonic()
        for m in sent:
            flood.send(m)
        flood_seconds = time.monotonic() - t0
        flood.send(flood.tw.dtmf("0"))                                  # "a person, please"
        # The bot answers and ends the stream once its last prompt has "played" (we do not echo marks).
        rec = flood.wait_ended(30)
        assert rec["stream"] == "handoff" and rec["reason"] == "agent_request" and rec["transfers"] == "1"
        assert int(rec["bad_messages"]) == expected_bad(sent)

        # 2. One message over the socket's limit: that stream alone is closed (1009), its caller to a person.
        big = Stream(twilio, config, redis)
        big.send(json.dumps({"event": "media", "media": {"payload": "A" * (MAX_SOCKET_MESSAGE + 1024)}}))
        code = big.until_closed()
        rec = big.wait_ended()
        assert code in (1009, -1) and rec["stream"] == "error" and rec["failure"] == "oversized"
        status, body = twilio.post("/voice/stream-ended", {"CallSid": big.sid, "From": "+15005550145"})
        assert status == 200 and parse_twiml(body).find("Enqueue") is not None
        assert redis.hget(keys.call(big.sid), "transfers") == "1"

        # 3. Random garbage on 30 more streams at once, each ended by its caller.
        def garbage(i):
            s = Stream(twilio, config, redis)
            batch = [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))) if rng.random() < 0.3
                     else "".join(chr(rng.randint(1, 0x2FF)) for _ in range(rng.randint(0, 200)))
                     for _ in range(100)]
            for m in batch:
                s.send(m)
            s.send(s.tw.stop())
            s.until_closed()
            rec = s.wait_ended()
            assert rec["stream"] == "stopped" and int(rec["bad_messages"]) == expected_bad(batch)
            return len(batch)
        with ThreadPoolExecutor(6) as storm:
            garbage_sent = sum(storm.map(garbage, range(30)))

        report = victim.result(timeout=120)
    assert report["intents"] == ["opening_hours", "goodbye"] and report["outcome"] == "answered"
    victim_rec = redis.hgetall(keys.call(report["call_sid"]))
    assert victim_rec["stream"] in ("goodbye", "stopped") and "failure" not in victim_rec   # the caller hung up
    assert victim_rec["bad_messages"] == "0" and victim_rec.get("transfers") in (None, "0")
    with urllib.request.urlopen(server.url + "/healthz", timeout=5) as resp:     # the process is fine
        assert resp.status == 200
    assert (PROCESS.get_sample_value("ivr_failures_total", {"where": "stream:oversized"}) or 0) == failures_before + 1
    assert threading.active_count() < 200
    record_row("ws_flood", what="Flood: 5000 bad/valid messages on one stream, as fast as possible",
               tried="5000 messages", outcome=f"all taken in {flood_seconds:.1f} s, bad ones counted; the call "
               "then handed off on key 0 (transfers=1)", messages=5000, crashes=0)
    record_row("ws_oversized", what=f"One message over the socket limit ({MAX_SOCKET_MESSAGE // 1024} KB)",
               tried="1 stream", outcome="that stream closed (1009); stream-ended: person; record "
               "failure=oversized; ivr_failures_total{where=\"stream:oversized\"} +1", crashes=0)
    record_row("ws_garbage", what="Random text and binary frames on 30 simultaneous streams",
               tried=f"{garbage_sent} messages", outcome="ignored and counted (bad_messages exact); "
               "a simultaneous Korean conversation ended exactly as without them", messages=garbage_sent,
               crashes=0)


@pytest.fixture(scope="module", autouse=True)
def _record_generated_counts():
    yield
    record_row("ws_generated", what="Generated bad messages (hypothesis): invalid JSON, unknown events, "
               "media before start, non-base64 / oversized payloads, bad dtmf/mark/start, binary frames",
               tried=f"{SENT['streams']} streams, {SENT['messages']} messages (whole module)",
               outcome="each ignored and counted exactly in the record's bad_messages; every stream ended "
               "by its caller's stop (stream=stopped), nothing handed off", streams=SENT["streams"],
               messages=SENT["messages"], crashes=0)


def test_size_limits_on_every_request(twilio, server, config, redis):
    """Webhooks and dashboard forms: 64 KB (MAX_CONTENT_LENGTH); the socket: MAX_SOCKET_MESSAGE (above)."""
    big = {"CallSid": "CA" + "8" * 32, "From": "+15005550147", "SpeechResult": "x" * 100_000}
    assert twilio.post("/voice", big)[0] == 413
    assert redis.exists(keys.call(big["CallSid"])) == 0
    body = ("name=admin&password=" + "p" * 100_000).encode()
    req = urllib.request.Request(server.url + "/dashboard/login", data=body, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        status = urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as exc:
        status = exc.code
    assert status == 413
    assert not list(redis.scan_iter("ivr:login_failures:*"))     # refused before it counted as a login
    record_row("size_limits", what="Oversized webhook (100 KB form) and dashboard login (100 KB password)",
               tried="2 requests", outcome="413 before any work; nothing written to Redis", crashes=0)
