"""Faults injected on purpose in the speech path (real server, real WebSocket, real Korean Vosk):
the recognizer failing or slow, the prompt renderer failing, a flow step failing, the socket
dropping. Every time the stream ends, /voice/stream-ended apologizes and connects a person,
the call record says why (transfers exactly 1), and the failure is logged and counted."""
import logging
import secrets
import time

import pytest

from ivr import faults, keys
from ivr.metrics import PROCESS
from ivr.server import LoopbackServer
from ivr.simulate.stream_client import StreamCaller, open_stream
from ivr.simulate.twilio_client import TwilioClient, parse_twiml
from tests.support import port_of
from tests.support.fault_table import record as record_row

HUMAN = "+15005550006"


@pytest.fixture
def faulty(make_config, redis, build_app):
    """Start a server with these faults switched on: faulty("tts_error") -> (client, app)."""
    servers = []

    def start(*names):
        cfg = make_config(faults=frozenset(names))
        app = build_app(cfg)
        srv = LoopbackServer(app, port=port_of(cfg)).__enter__()
        servers.append(srv)
        return TwilioClient(srv.url, cfg.twilio_auth_token), app
    yield start
    for srv in servers:
        srv.__exit__(None, None, None)
    faults.configure(())


def failures(where):
    return PROCESS.get_sample_value("ivr_failures_total", {"where": where}) or 0.0


def start_call(client):
    sid = "CA" + secrets.token_hex(16)
    status, body = client.post("/voice?lang=ko", {"CallSid": sid, "From": "+15005550142"})
    stream = parse_twiml(body).find("Connect").find("Stream")
    assert status == 200 and stream is not None
    return sid, stream.get("url"), {p.get("name"): p.get("value") for p in stream}


def assert_person_after_failure(client, redis, app, sid, where):
    """The action webhook: an apology, then a person; the record says why; a retry changes nothing."""
    status, body = client.post("/voice/stream-ended", {"CallSid": sid, "From": "+15005550142"})
    root = parse_twiml(body)
    said = " ".join(s.text or "" for s in root.iter("Say"))
    apology = app.extensions["ivr"].flows["hotline_ko"].message("error", "ko")
    assert status == 200 and apology in said
    assert root.find("Enqueue") is not None or any(n.text == HUMAN for n in root.iter("Number"))
    rec = redis.hgetall(keys.call(sid))
    assert rec["stream"] == ("dropped" if where == "dropped" else "error") and rec["failure"] == where
    assert rec["reason"] == "stream_failed" and rec["transfers"] == "1" and rec.get("handoff_at")
    again = client.post("/voice/stream-ended", {"CallSid": sid, "From": "+15005550142"})  # Twilio retries
    assert again == (status, body)                                 # the same answer, on any server
    assert redis.hget(keys.call(sid), "transfers") == "1"
    return rec


CASES = {
    # fault -> (what the caller does, where the failure is counted, what it stands for)
    "recognizer_error": ([("say", "시간")], "recognizer", "an exception inside decoding"),
    "recognizer_slow": ([("say", "시간")], "recognizer_slow",
                        f"decoding takes {faults.SLOW_SECONDS:.0f} s (budget 3 s)"),
    "step_error": ([("say", "시간")], "step", "an exception in a flow step"),
    "tts_error": ([("say", "시간")], "tts", "the prompt renderer fails"),
}


@pytest.mark.speech
@pytest.mark.parametrize("fault", list(CASES))
def test_fault_in_the_speech_path_connects_a_person(faulty, redis, caplog, ko_model, fault):
    caplog.set_level(logging.INFO)
    inputs, where, meaning = CASES[fault]
    client, app = faulty(fault)
    sid, url, custom = start_call(client)
    before = failures(f"stream:{where}")
    t0 = time.monotonic()
    result = StreamCaller(client.validator_token, barge_in_after=0.4, listen_to_end=False, end_wait=0.3,
                          reply_timeout=15).run(url, custom, sid, inputs)
    took = time.monotonic() - t0
    assert result.closed_by_server and not result.hung_up          # the server ended the stream itself
    if fault == "tts_error":
        assert result.bot_frames == 0                              # nothing could be said
    else:
        assert result.bot_frames > 0 and result.labels == ["시간"]
    assert_person_after_failure(client, redis, app, sid, where)
    assert failures(f"stream:{where}") == before + 1
    logged = [r for r in caplog.records if r.name == "ivr.stream" and f"{where} failed" in r.getMessage()]
    assert logged and logged[0].levelno >= logging.ERROR
    turns = [t for t in redis.lrange(keys.turns(sid), 0, -1) if "stream_failed" in t]
    assert len(turns) == 1
    record_row(f"fault_{fault}", what=f"`IVR_FAULTS={fault}`: {meaning}", tried="1 real stream call",
               outcome="stream closed by the server; stream-ended: apology + person; record "
                       f"stream=error failure={where} transfers=1; ivr_failures_total{{where=\"stream:{where}\"}} +1",
               calls=1, seconds=round(took, 1), crashes=0)


def test_keypad_step_error_is_counted_and_goes_to_a_person(faulty, redis):
    client, _ = faulty("step_error")
    call = {"CallSid": "CA" + secrets.token_hex(16), "From": "+15005550143"}
    before = failures("/voice/gather")
    assert client.post("/voice", call)[0] == 200                   # English: keypad, no stream
    status, body = client.post("/voice/gather?turn=1", dict(call, Digits="3"))
    assert status == 200 and any(n.text == HUMAN for n in parse_twiml(body).iter("Number"))
    assert failures("/voice/gather") == before + 1


@pytest.mark.speech
def test_socket_dropping_mid_call_is_logged_counted_and_goes_to_a_person(faulty, redis, caplog, ko_model):
    caplog.set_level(logging.INFO)
    client, app = faulty()
    sid, url, custom = start_call(client)
    before = failures("stream:dropped")
    ws, tw = open_stream(url, client.validator.compute_signature(url, {}), sid, custom)
    ws.recv()                                                      # the greeting has started
    ws.send(tw.media(b"\xff" * 1600))
    ws.sock.close()                                                # no stop, no close frame
    deadline = time.monotonic() + 10
    while redis.hget(keys.call(sid), "stream") == "live" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert_person_after_failure(client, redis, app, sid, "dropped")
    assert failures("stream:dropped") == before + 1
    assert any("socket dropped mid-call" in r.getMessage() for r in caplog.records)
    record_row("fault_socket_dropped", what="WebSocket dropped mid-call (TCP closed, no stop event)",
               tried="1 real stream call", outcome="stream-ended: apology + person; record stream=dropped "
               "transfers=1; ivr_failures_total{where=\"stream:dropped\"} +1", calls=1, crashes=0)
