"""Logs: the level, JSON lines with the call SID on a call's lines, an access line per request with
no query string and no phone number (ivr/logs.py, the gunicorn logger in ivr/server.py)."""
from __future__ import annotations

import io
import json
import logging
import re
import secrets
import threading
import urllib.error
import urllib.request

import pytest

from ivr import logs
from ivr.redact import mask_phone
from ivr.simulate.call import CallSimulator
from ivr.simulate.twilio_client import TwilioClient
from tests.support.procs import ServeProcess

TOKEN = "j" * 32


@pytest.fixture
def captured():
    """The root handler as `ivr serve` sets it up, writing into a buffer; restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()

    def setup(level="INFO", fmt="json"):
        logs.setup(level, fmt, stream=out)
        return out
    yield setup
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in saved[0]:
        root.addHandler(h)
    root.setLevel(saved[1])
    logging.captureWarnings(False)


def test_json_lines_carry_the_call_bound_to_the_thread(captured):
    out = captured()
    log = logging.getLogger("ivr.test")
    log.info("before")
    logs.bind_call("CA" + "1" * 32)
    log.warning("during %s", "a call")
    seen = []
    worker = threading.Thread(target=lambda: (log.info("other thread"), seen.append(1)))
    worker.start()
    worker.join()
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        log.exception("failed")
    logs.bind_call(None)
    log.info("after")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["msg"], r.get("call_sid")) for r in lines] == [
        ("before", None), ("during a call", "CA" + "1" * 32), ("other thread", None),
        ("failed", "CA" + "1" * 32), ("after", None)]
    assert lines[1]["level"] == "WARNING" and lines[1]["logger"] == "ivr.test" and lines[1]["ts"].endswith("Z")
    assert "boom\nsecond line" in lines[3]["exc"]


def test_level_filters(captured):
    out = captured("WARNING", "text")
    logging.getLogger("ivr.test").info("quiet")
    logging.getLogger("ivr.test").warning("loud")
    assert "quiet" not in out.getvalue() and " WARNING ivr.test: loud" in out.getvalue()


@pytest.mark.parametrize("path, logged", [
    ("/voice?lang=ko", "/voice"),
    ("/voice/callback/+15551234567", "/voice/callback/+155****4567"),
    ("/x/%2B4930123456789?From=%2B4930123456789", "/x/+493******6789"),
    ("/dashboard/calls/CA12345678901234567890123456789012", "/dashboard/calls/CA12345678901234567890123456789012"),
])
def test_access_path_drops_the_query_and_masks_numbers(path, logged):
    message, fields = logs.access_line("GET", path, "200", 12, 3.25)
    assert fields["path"] == logged and message == f'"GET {logged}" 200 12B 3.2ms'


@pytest.mark.parametrize("caller, logged", [
    ("+15551234567", "+155****4567"),
    ("anonymous", "anon*mous"),
    ("12\n2026 WARNING x", "12?2*********NG x"),
    ("ab\r\ncd", "ab??cd"),
])
def test_a_caller_id_cannot_start_a_log_line(caller, logged, captured):
    """Caller IDs are logged masked; a forged one with a line break must not write a line of its own."""
    assert mask_phone(caller) == logged and "\n" not in logged and "\r" not in logged
    out = captured("INFO", "text")
    logging.getLogger("ivr.test").warning("stranger on the agent line: %s", mask_phone(caller))
    assert len(out.getvalue().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.speech
def test_json_log_of_a_served_call(redis_url, redis, tmp_path):
    """`ivr serve` with IVR_LOG_FORMAT=json: a keypad call and a Korean call over a media stream, then
    every line of stderr is a JSON object; lines about a call name it; no caller's number anywhere."""
    srv = ServeProcess({"TWILIO_AUTH_TOKEN": TOKEN, "REDIS_URL": redis_url, "IVR_LOG_FORMAT": "json",
                        "IVR_DATA_DIR": str(tmp_path / "var")}, threads=8, split_stderr=True).start()
    numbers = ["+1555" + f"{secrets.randbelow(10**7):07d}" for _ in range(2)]
    try:
        public = f"http://localhost:{srv.port}"
        twilio = TwilioClient(srv.url, TOKEN, public_url=public)
        keypad = CallSimulator(twilio, from_number=numbers[0]).run([("press", "0")])
        spoken_sim = CallSimulator(twilio, from_number=numbers[1],
                                   stream_options=dict(barge_in_after=0.4, listen_to_end=False, end_wait=0.3))
        spoken = spoken_sim.run([("press", "3"), ("press", "2")], "ko")
        assert spoken["asr"] == "vosk" and keypad["transfers"] == 1
        for _ in range(3):
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(f"{srv.url}/nope/{numbers[0]}?From={numbers[0]}", timeout=5)
    finally:
        out = srv.terminate()
    err = srv.errors()
    records = [json.loads(line) for line in err.splitlines()]       # every line is one JSON object
    assert records and all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    sids = {keypad["call_sid"], spoken["call_sid"]}
    for r in records:
        named = set(re.findall(r"CA[0-9a-f]{32}", r["msg"])) & sids
        if named and r["logger"] != "gunicorn.access":
            # The call being handled: the caller's, or the agent's leg that takes the caller.
            assert r.get("call_sid"), r
    tagged = {r["call_sid"] for r in records if r.get("call_sid")}
    assert sids <= tagged
    # The media stream's lines, logged on the stream's own request, name the call it learnt at `start`.
    assert any(r["msg"].startswith("stream MZ") and r.get("call_sid") == spoken["call_sid"] for r in records)
    # The access log: one line per request, the query gone, the number masked.
    access = [r for r in records if r["logger"] == "gunicorn.access"]
    assert [r["status"] for r in access if r["path"].startswith("/nope/")] == [404] * 3
    assert {r["path"] for r in access if r["path"].startswith("/nope/")} == {"/nope/" + mask_phone(numbers[0])}
    assert {"/voice", "/voice/gather", "/media", "/voice/status"} <= {r["path"] for r in access}
    assert not any("?" in r["path"] for r in access)
    for n in numbers:
        assert n not in err and n[1:] not in err and n not in out
