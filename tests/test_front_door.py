"""The front door of deploy/: real Caddy (its internal CA) and real nginx (a self-signed certificate)
running the shipped files in front of a real `ivr serve` with an https PUBLIC_URL. Through each: a
spoken Korean call over the media WebSocket, signatures checked against the https URL, a dashboard
login and its live view (SSE) receiving a new call's event at once, and the client's own address
(not one it claims) reaching the login lock-out. And the systemd unit, checked by systemd-analyze."""
from __future__ import annotations

import json
import queue
import secrets
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis as redis_lib

from ivr import keys
from ivr.config import ROOT
from ivr.dashboard.auth import Operators
from ivr.simulate.call import CallSimulator
from ivr.simulate.twilio_client import TwilioClient
from tests.support.dashboard import PASSWORD, csrf_from
from tests.support.front_door import PROXIES, browser
from tests.support.procs import ServeProcess

TOKEN = "f" * 32
CLIENT_ADDRESS = "127.0.0.2"        # the "caller's" address; the proxy reaches ivr from 127.0.0.1


@pytest.fixture(scope="module", params=sorted(PROXIES))
def front_door(request, tmp_path_factory, redis_url):
    """(proxy, server), started once per proxy for this module's tests; the test process trusts the
    proxy's certificate (urllib and websocket-client read these variables per connection)."""
    kind = request.param
    binary = "caddy" if kind == "caddy" else "nginx"
    if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists():
        pytest.fail(f"{binary} is not installed: scripts/install-system-deps.sh --test installs it")
    tmp = tmp_path_factory.mktemp(kind)
    db = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    db.flushdb()
    proxy = PROXIES[kind](tmp / "proxy")
    srv = ServeProcess({"TWILIO_AUTH_TOKEN": TOKEN, "REDIS_URL": redis_url, "PUBLIC_URL": proxy.url,
                        "IVR_TRUSTED_PROXIES": "1", "IVR_DATA_DIR": str(tmp / "var"),
                        "HUMAN_LINE": "+4930123456"}, threads=16)
    proxy.start(f"127.0.0.1:{srv.port}")
    try:
        srv.start()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SSL_CERT_FILE", str(proxy.ca))
            mp.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", str(proxy.ca))
            yield proxy, srv, db
    finally:
        srv.terminate()
        proxy.stop()
        db.close()


def call_ko(twilio, *inputs):
    sim = CallSimulator(twilio, from_number="+1555" + f"{secrets.randbelow(10**7):07d}",
                        stream_options=dict(barge_in_after=0.4, listen_to_end=False, end_wait=0.3))
    return sim.run(list(inputs), "ko"), sim.stream_result


@pytest.mark.slow
@pytest.mark.speech
def test_spoken_call_through_tls(front_door):
    """A whole call on one wss:// socket through the proxy: two directed answers, recognized by Vosk,
    each answered over the same socket, and the call ends after the goodbye. Kaldi's dither can mishear one word (see
    tests/test_speech_stream.py): a second call must then land right."""
    proxy, _, redis = front_door
    twilio = TwilioClient(proxy.url, TOKEN)
    status, body = twilio.post("/voice?lang=ko", {"CallSid": "CA" + secrets.token_hex(16), "From": "+15550001111"})
    assert status == 200 and f'url="wss://localhost:{proxy.port}/media"' in body
    for attempt in range(2):
        report, stream = call_ko(twilio, ("say", "시간"), ("say", "아니오"))
        if report["intents"] == ["opening_hours", "goodbye"] or attempt:
            break
    assert report["asr"] == "vosk" and stream.error is None, (report, proxy.output()[-2000:])
    assert report["intents"] == ["opening_hours", "goodbye"], report
    # Both turns on the one socket: the first answered on it, the second (no, that's all) ends it, and
    # the rating question and goodbye follow in TwiML (/voice/stream-ended).
    assert len(stream.latencies) == 1 and stream.closed_by_server and stream.bot_frames > 0
    assert redis.hget(keys.call(report["call_sid"]), "status") == "ended"
    assert report["outcome"] == "answered" and report["transfers"] == 0


@pytest.mark.slow
def test_signature_checked_against_the_https_url(front_door):
    """Twilio signs https://<host>/voice: a signature made for the http URL (what a proxy that
    rewrote the scheme would make ivr compute) is refused; the https one passes."""
    proxy, _, _ = front_door
    sid = "CA" + secrets.token_hex(16)
    twilio = TwilioClient(proxy.url, TOKEN)
    params = {"CallSid": sid, "From": "+15550002222"}
    wrong = twilio.validator.compute_signature(proxy.url.replace("https://", "http://") + "/voice", params)
    assert twilio.post("/voice", params, signature=wrong)[0] == 403
    assert twilio.post("/voice", params)[0] == 200


@pytest.mark.slow
@pytest.mark.load       # the live view must arrive within 2 s
def test_dashboard_live_view_through_tls(front_door):
    """Log in through the proxy (from another address than the proxy's, claiming a third), open the
    live view, place a call: its event arrives within a second, not when a buffer fills."""
    proxy, _, redis = front_door
    Operators(redis).add("alice", PASSWORD)
    web = browser(proxy.ca, CLIENT_ADDRESS)
    page = web.get(proxy.url + "/dashboard/login", timeout=10)
    assert page.status_code == 200
    resp = web.post(proxy.url + "/dashboard/login", timeout=10, allow_redirects=False,
                    # A browser's Referer: the form is checked against it over https (WTF_CSRF_SSL_STRICT),
                    # which works only when the proxy passes Host (with its port) and the scheme on.
                    headers={"X-Forwarded-For": "203.0.113.9", "Referer": proxy.url + "/dashboard/login"},
                    data={"name": "alice", "password": PASSWORD, "csrf_token": csrf_from(page.text)})
    assert resp.status_code == 302, resp.text[:300]
    assert "Secure" in resp.headers["Set-Cookie"]            # PUBLIC_URL is https: the cookie says so
    # The login lock-out and the session see the client's own address: not the proxy's, not the claim.
    ips = {redis.hget(k, "ip") for k in redis.scan_iter(keys.SESSIONS_MATCH)}
    assert ips == {CLIENT_ADDRESS}

    lines: queue.Queue = queue.Queue()
    events = web.get(proxy.url + "/dashboard/events", stream=True, timeout=(5, 30))
    assert events.status_code == 200 and events.headers["Content-Type"].startswith("text/event-stream")

    def read():
        try:
            for line in events.iter_lines(chunk_size=1, decode_unicode=True):
                lines.put((time.monotonic(), line))
        except Exception as exc:  # noqa: BLE001 - the test closes the stream
            lines.put((time.monotonic(), exc))
    threading.Thread(target=read, daemon=True).start()

    def next_live(deadline):
        while True:
            t, line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            assert not isinstance(line, Exception), line
            if line.startswith("data: "):
                return t, json.loads(line[6:])

    t0 = time.monotonic()
    t_first, _ = next_live(t0 + 5)
    assert t_first - t0 < 2                                   # the first snapshot is not held back
    sid = "CA" + secrets.token_hex(16)
    t_call = time.monotonic()
    assert TwilioClient(proxy.url, TOKEN).post("/voice", {"CallSid": sid, "From": "+15550003333"})[0] == 200
    while True:
        t, data = next_live(t_call + 5)
        if sid in json.dumps(data):
            break
    assert t - t_call < 1.5, t - t_call
    assert "+15550003333" not in json.dumps(data)            # masked on the way, as everywhere
    events.close()


@pytest.mark.slow
def test_proxy_keeps_no_query_or_number_in_ivr_log(front_door):
    """Through the proxy, ivr's access log shows the path only."""
    proxy, srv, _ = front_door
    web = browser(proxy.ca)
    assert web.get(proxy.url + "/healthz?From=%2B15550004444", timeout=10).status_code == 200
    assert web.get(proxy.url + "/healthz", timeout=10).status_code == 200
    time.sleep(0.3)
    assert "15550004444" not in srv.output() and '"GET /healthz" 200' in srv.output()


# -- the systemd unit --------------------------------------------------------------------------
UNIT = ROOT / "deploy" / "ivr.service"


def _unit_copy(tmp_path):
    """deploy/ivr.service with its ExecStart and ExecReload binary pointing at an executable that exists
    here (verify checks it); every other line as shipped."""
    fake = tmp_path / "ivr"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    text = UNIT.read_text()
    assert text.count("\nExecStart=/opt/ivr/venv/bin/ivr serve ") == 1
    # `systemctl reload ivr` is the documented reload: `ivr reload` run as the service (README, docs/deploy.md).
    assert text.count("\nExecReload=/opt/ivr/venv/bin/ivr reload\n") == 1
    unit = tmp_path / "ivr.service"
    unit.write_text(text.replace("=/opt/ivr/venv/bin/ivr ", f"={fake} "))
    return unit


@pytest.fixture
def systemd_analyze():
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed (Debian: systemd); the unit is checked where it is")
    return path


def test_systemd_unit_verifies_clean(systemd_analyze, tmp_path):
    unit = _unit_copy(tmp_path)
    run = subprocess.run([systemd_analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 on unknown keys too; any line about the unit is a finding.
    findings = [ln for ln in (run.stdout + run.stderr).splitlines() if "ivr.service" in ln]
    assert run.returncode == 0 and not findings, run.stdout + run.stderr
    broken = tmp_path / "broken" / "ivr.service"
    broken.parent.mkdir()
    broken.write_text(unit.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    run = subprocess.run([systemd_analyze, "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert "Unknown key" in run.stderr                          # the check sees a misspelt hardening line


def test_systemd_unit_is_hardened(systemd_analyze, tmp_path):
    """systemd's own exposure score (0 safest .. 10): the shipped unit scores 1.3."""
    unit = _unit_copy(tmp_path)
    text = UNIT.read_text()
    for line in ("DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes",
                 "ReadWritePaths=/var/lib/ivr", "EnvironmentFile=/etc/ivr/ivr.env", "UMask=0077"):
        assert f"\n{line}\n" in text, line
    run = subprocess.run([systemd_analyze, "security", "--offline=true", "--threshold=20", str(unit)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
