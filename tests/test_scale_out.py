"""Two `ivr serve` hosts behind a real HAProxy running deploy/haproxy.cfg: webhooks and media streams
spread over both, every webhook delivered twice (Twilio's retries, landing on either server), and one
server killed (its whole process group, SIGKILL) while it holds spoken calls. Its callers reach a person
through the other server, every transfer is counted once, no caller is lost."""
from __future__ import annotations

import secrets
import threading
import time
from urllib.parse import urlsplit

import pytest
import redis as redis_lib

from ivr import keys
from ivr.simulate.call import CallSimulator
from ivr.simulate.twilio_client import TwilioClient
from tests.support import press
from tests.support.fault_table import record as record_row
from tests.support.lb import Haproxy
from tests.support.procs import ServeProcess, group_alive

pytestmark = [pytest.mark.slow, pytest.mark.speech]

TOKEN = "l" * 32
# Webhooks Twilio may deliver more than once; each must answer the same and change nothing the 2nd time.
RETRIED = ("/voice", "/voice/gather", "/voice/stream-ended", "/voice/queue/result", "/voice/status")


class RetryingTwilio(TwilioClient):
    """Twilio delivering every caller webhook twice through the balancer (a retry after a timeout):
    the two deliveries land on either server, and must give the same TwiML."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.retried = 0

    def post(self, url, params, signature=None):
        first = super().post(url, params, signature)
        if urlsplit(self.absolute(url)).path not in RETRIED:
            return first
        again = super().post(url, params, signature)
        self.retried += 1
        assert again == first or url.startswith("/voice/status"), (url, first, again)
        return again


def explain(redis, sid):
    """A call's record (without the engine state) and its events, for a failure message."""
    record = {k: v for k, v in redis.hgetall(keys.call(sid)).items() if k != "state"}
    return record, [e for _, e in redis.xrange(keys.EVENTS) if e.get("sid") == sid]


def place(client, inputs, lang=None, out=None, **kw):
    report = CallSimulator(client, from_number="+1500555" + f"{secrets.randbelow(10000):04d}", **kw).run(inputs, lang)
    if out is not None:
        out.append(report)
    return report


def test_two_servers_behind_haproxy_one_killed_mid_call(redis_url, redis, tmp_path, ko_model):
    lb = Haproxy(tmp_path / "lb")
    public = lb.url                                                 # what Twilio calls, and signs
    env = {"TWILIO_AUTH_TOKEN": TOKEN, "PUBLIC_URL": public, "REDIS_URL": redis_url,
           "IVR_DATA_DIR": str(tmp_path / "var"), "IVR_GATHER_TIMEOUT": "30", "IVR_FEEDBACK": "off"}
    a = b = None
    try:
        a, b = ServeProcess(env, threads=16).start(), ServeProcess(env, threads=16).start()
        lb.start([f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"])
        lb.wait_status("ivr1", "UP")
        lb.wait_status("ivr2", "UP")
        twilio = RetryingTwilio(public, TOKEN)

        # 1. Keypad calls, every webhook delivered twice: spread over both servers, counted once.
        keypad = [place(twilio, [press("2")]) for _ in range(3)]          # answered by the bot
        keypad += [place(twilio, [press("0")]) for _ in range(3)]         # a person, through the queue
        served = {name: int(row["stot"]) for name, row in lb.servers().items()}
        assert all(n >= 10 for n in served.values()), served             # both servers took webhooks
        assert [r["transfers"] for r in keypad] == [0, 0, 0, 1, 1, 1]
        assert all(r["outcome"] == "handoff" and r["wait_seconds"] is not None for r in keypad[3:])

        # 2. Four spoken calls over media WebSockets through the balancer; the caller thinks for a while
        #    after the greeting, then asks for a person (key 0).
        spoken, threads = [], []
        for _ in range(4):
            t = threading.Thread(target=place, args=(twilio, [("wait", 14), press("0")], "ko", spoken),
                                 kwargs={"stream_options": {"end_wait": 15}})
            t.start()
            threads.append(t)
            time.sleep(0.3)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            live = [sid for sid in redis.zrange(keys.ACTIVE, 0, -1) if redis.hget(keys.call(sid), "stream") == "live"]
            holding = {name: int(row["scur"]) for name, row in lb.servers().items()}
            if len(live) == 4 and all(n >= 1 for n in holding.values()):
                break
            time.sleep(0.2)
        assert len(live) == 4 and all(n >= 1 for n in holding.values()), (live, holding)
        time.sleep(0.5)                                     # every call is in its silence: no webhook in flight
        on_a = int(lb.servers()["ivr1"]["scur"])

        # 3. Server a dies with its calls (the whole process group: master and workers).
        a.kill()
        assert not group_alive(a.proc.pid)
        for t in threads:
            t.join(timeout=90)
        assert not any(t.is_alive() for t in threads)
        lb.wait_status("ivr1", "DOWN")

        # 4. Service goes on: new calls through the balancer land on b.
        after = [place(twilio, [press("0")]) for _ in range(2)]

        dropped = [r for r in spoken if r["stream_error"] or r["outcome"] != "handoff"]
        failed_over = [r for r in spoken if r["reason"] == "stream_failed"]
        assert len(spoken) == 4
        # Every spoken caller reached a person exactly once: a's through stream-ended on b (the stream
        # failed), b's by asking (agent_request).
        unserved = [r for r in spoken if r["transfers"] != 1 or r["outcome"] != "handoff" or r["wait_seconds"] is None]
        assert not unserved, [explain(redis, r["call_sid"]) for r in unserved]
        assert len(failed_over) == on_a
        assert sorted(r["reason"] for r in spoken if r["reason"] != "stream_failed") == ["agent_request"] * (4 - on_a)
        assert [r["transfers"] for r in after] == [1, 1]

        # Counts exact across both servers and every retry: one handoff event per transferred caller,
        # no queue entry or active call left behind.
        everyone = keypad + spoken + after
        r = redis_lib.Redis.from_url(redis_url, decode_responses=True)
        handoffs = [e for _, e in r.xrange(keys.EVENTS) if e["type"] == "handoff"]
        assert len(handoffs) == sum(x["transfers"] for x in everyone) == 9
        assert sum(int(r.hget(keys.call(x["call_sid"]), "transfers")) for x in everyone) == 9
        assert r.zcard(keys.queue("normal")) == 0 and r.zcard(keys.queue("urgent")) == 0
        assert r.zcard(keys.ACTIVE) == 0
        assert twilio.retried > 30
        record_row("scale_out_kill", what="2 `ivr serve` hosts behind HAProxy (deploy/haproxy.cfg); one killed "
                   "(process group, SIGKILL) holding spoken calls", tried=f"{len(everyone)} calls, every caller "
                   f"webhook delivered twice ({twilio.retried} retries)",
                   outcome="the killed server's callers reached a person through stream-ended on the other; "
                   "new calls went to the survivor; one handoff event and one transfer per transferred caller",
                   dropped_calls=len(dropped), streams_failed_over=len(failed_over), transfers=9)
    finally:
        lb.stop()
        for server in (a, b):
            if server is not None:
                server.kill()
    for server in (a, b):
        assert not group_alive(server.proc.pid)
    assert lb.proc.poll() is not None
