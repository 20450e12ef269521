"""Graceful shutdown: SIGTERM to `ivr serve` (gunicorn) hands the calls in progress to another
process. The stream ends at the next pause with the outcome "shutdown"; /voice/stream-ended,
answered by a second server, reconnects the caller to the bot, which repeats its last prompt and
goes on. The stopping server exits well within its graceful timeout."""
import json
import secrets
import signal
import threading
import time

import redis as redis_lib
import websocket

from ivr import keys
from ivr.server import GRACEFUL_TIMEOUT
from ivr.simulate.stream_client import open_stream
from ivr.simulate.twilio_client import TwilioClient, parse_twiml
from tests.support.fault_table import record as record_row
from tests.support.procs import ServeProcess

TOKEN = "s" * 32
PUBLIC = "https://hotline.example"


class Line:
    """Twilio's side of one stream, on a real socket: echoes marks, sends silence in real time."""

    def __init__(self, server_url, stream_url, sid, custom):
        local = server_url.replace("http://", "ws://") + "/media"
        sig = TwilioClient(server_url, TOKEN, public_url=PUBLIC).validator.compute_signature(stream_url, {})
        self.ws, self.tw = open_stream(local, sig, sid, custom, timeout=5, enable_multithread=True)
        self.events, self.close_code, self.closed = [], None, threading.Event()
        self.rx = threading.Thread(target=self._receive, daemon=True)
        self.rx.start()

    def _receive(self):
        while True:
            try:
                frame = self.ws.recv_data_frame(control_frame=True)[1]
            except (websocket.WebSocketException, OSError):
                break
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                self.close_code = int.from_bytes(frame.data[:2], "big") if len(frame.data) >= 2 else None
                break
            if frame.opcode != websocket.ABNF.OPCODE_TEXT:
                continue
            msg = json.loads(frame.data)
            self.events.append(msg["event"])
            if msg["event"] == "mark":          # "played": echo at once
                try:
                    self.ws.send(self.tw.mark(msg["mark"]["name"]))
                except (websocket.WebSocketException, OSError):
                    break
        self.closed.set()

    def silence_until_closed(self, seconds):
        deadline = time.monotonic() + seconds
        while not self.closed.is_set() and time.monotonic() < deadline:
            try:
                self.ws.send(self.tw.media(b"\xff" * 160))
            except (websocket.WebSocketException, OSError):
                break
            time.sleep(0.02)
        self.closed.wait(1)
        return self.closed.is_set()

    def wait_for(self, event, seconds=15):
        deadline = time.monotonic() + seconds
        while event not in self.events and time.monotonic() < deadline and not self.closed.is_set():
            self.ws.send(self.tw.media(b"\xff" * 160))
            time.sleep(0.02)
        return event in self.events


def test_sigterm_hands_the_call_to_another_server(redis_url, redis, tmp_path, ko_model):
    env = {"TWILIO_AUTH_TOKEN": TOKEN, "PUBLIC_URL": PUBLIC, "REDIS_URL": redis_url,
           "IVR_DATA_DIR": str(tmp_path / "var")}
    a, b = ServeProcess(env, threads=8).start(), ServeProcess(env, threads=8).start()
    r = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    sid = "CA" + secrets.token_hex(16)
    call = {"CallSid": sid, "From": "+15005550144"}
    try:
        via_a = TwilioClient(a.url, TOKEN, public_url=PUBLIC)
        via_b = TwilioClient(b.url, TOKEN, public_url=PUBLIC)
        stream = parse_twiml(via_a.post("/voice?lang=ko", call)[1]).find("Connect").find("Stream")
        custom = {p.get("name"): p.get("value") for p in stream}
        line = Line(a.url, stream.get("url"), sid, custom)
        assert line.wait_for("media")                               # the greeting is playing
        assert r.hget(keys.call(sid), "stream") == "live"

        t0 = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)                          # deploy: the server is told to stop
        assert line.silence_until_closed(10), "the stream was not ended"
        ended_after = time.monotonic() - t0
        assert line.close_code == 1000                              # a proper close, not a reset
        a.proc.wait(timeout=GRACEFUL_TIMEOUT + 10)
        exited_after = time.monotonic() - t0
        assert exited_after < 15, a.output()[-2000:]
        rec = r.hgetall(keys.call(sid))
        assert rec["stream"] == "shutdown" and "failure" not in rec and not rec.get("handoff_at")
        assert "handing the call off" in a.output()

        # Twilio calls the <Connect action>; the load balancer sends it to server b.
        for _ in range(2):                                          # a retry gives the same answer
            status, body = via_b.post("/voice/stream-ended", call)
            again = parse_twiml(body).find("Connect")
            assert status == 200 and again is not None
            params = {p.get("name"): p.get("value") for p in again.find("Stream")}
            assert params["credential"].startswith("v1.1.")         # a credential for the call's 2nd stream
            assert {k: v for k, v in params.items() if k != "credential"} == {"flow": "hotline_ko", "lang": "ko",
                                                                             "resume": "1"}
        assert r.hget(keys.call(sid), "transfers") in (None, "0")

        line2 = Line(b.url, again.find("Stream").get("url"), sid, params)
        assert line2.wait_for("media")                              # the bot repeats its prompt
        assert r.hget(keys.call(sid), "stream") == "live" and r.hget(keys.call(sid), "stream_leg") == "1"
        line2.ws.send(line2.tw.dtmf("0"))                           # the caller goes on: "a person, please"
        assert line2.silence_until_closed(30)
        rec = r.hgetall(keys.call(sid))
        assert rec["stream"] == "handoff" and rec["reason"] == "agent_request" and rec["transfers"] == "1"
        status, body = via_b.post("/voice/stream-ended", call)
        assert status == 200 and parse_twiml(body).find("Enqueue").text == "ivr-normal"
        assert r.hget(keys.call(sid), "transfers") == "1"
        record_row("shutdown_sigterm", what="SIGTERM to `ivr serve` during a live stream call",
                   tried="1 call; 2 real servers", outcome="stream closed (1000) at the next pause, record "
                   "stream=shutdown; stream-ended on the 2nd server: new `<Connect>` (resume=1); the caller "
                   "continued there (handoff, transfers=1)",
                   stream_closed_after_s=round(ended_after, 1), server_exited_after_s=round(exited_after, 1),
                   dropped_calls=0)
    finally:
        a.kill()
        b.kill()
