"""Slow clients cannot take the line down (ivr/worker.py), shown with the attack itself against
`ivr serve` (gunicorn, production configuration, 16 threads) and a real Redis.

Before the guarded worker, 200 connections dripping their headers held all 16 threads and /healthz
stopped answering until they closed (docs/security.md has the measurement)."""
import secrets
import time
import urllib.parse

import pytest
from twilio.request_validator import RequestValidator

from ivr import keys
from tests.support.procs import ServeProcess
from tests.support.slow_clients import SlowLoris, probe

pytestmark = [pytest.mark.slow, pytest.mark.load]

TOKEN = "l" * 32
PUBLIC = "https://hotline.example"
HEADER_TIMEOUT = 4
THREADS = 16


@pytest.fixture(scope="module")
def server(redis_url, tmp_path_factory):
    env = {"TWILIO_AUTH_TOKEN": TOKEN, "PUBLIC_URL": PUBLIC, "REDIS_URL": redis_url,
           "IVR_DATA_DIR": str(tmp_path_factory.mktemp("var")), "IVR_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
           "IVR_BODY_TIMEOUT": str(HEADER_TIMEOUT)}
    srv = ServeProcess(env, threads=THREADS).start()
    yield srv
    srv.kill()


def signed_voice(sid):
    params = {"CallSid": sid, "From": "+15005550150", "To": "+15005550100"}
    sig = RequestValidator(TOKEN).compute_signature(PUBLIC + "/voice", params)
    body = urllib.parse.urlencode(params)
    return (f"POST /voice HTTP/1.1\r\nHost: hotline.example\r\nX-Twilio-Signature: {sig}\r\nConnection: close\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()


HEALTH = b"GET /healthz HTTP/1.1\r\nHost: hotline.example\r\nConnection: close\r\n\r\n"


def probe_while(server, loris, seconds=6.0):
    """/healthz and a signed POST /voice, twice a second: [(what, status, seconds, slow conns open)]."""
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, took = probe("127.0.0.1", server.port, HEALTH)
        out.append(("healthz", status, took, loris.open_now))
        status, took = probe("127.0.0.1", server.port, signed_voice("CA" + secrets.token_hex(16)))
        out.append(("voice", status, took, loris.open_now))
        time.sleep(0.5)
    return out


@pytest.mark.parametrize("sources", [4, 1], ids=["200 from 4 addresses", "200 from one address"])
def test_200_slow_header_connections_do_not_stop_healthz_or_voice(server, redis, sources):
    # 4 addresses x 50 stay under the per-address cap: all 200 stay open until the header timeout,
    # so the answers below prove no thread waits on them. From one address, the cap closes the oldest.
    per = 200 // sources
    attacks = [SlowLoris("127.0.0.1", server.port, n=per, source=f"127.0.0.{2 + i}", seconds=40)
               for i in range(sources)]
    for a in attacks:
        a.__enter__()
    try:
        deadline = time.monotonic() + 10
        while sum(a.opened for a in attacks) < 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sum(a.opened for a in attacks) >= 200
        samples = probe_while(server, _Total(attacks))
    finally:
        for a in attacks:
            a.__exit__(None, None, None)
    assert samples and all(status == 200 for _, status, _, _ in samples), samples
    assert max(took for _, _, took, _ in samples) < 1.0, samples
    assert max(n for *_, n in samples) > THREADS                      # more slow connections than threads
    lived = max(a.longest for a in attacks)
    assert lived < HEADER_TIMEOUT + 2.5, lived                         # none outlived the header timeout
    assert sum(a.closed_by_server for a in attacks) >= 150             # the server closed them, not us
    calls = [k for k in redis.scan_iter(keys.CALL_PREFIX + "*") if k.count(":") == 2]
    voice_probes = sum(1 for what, *_ in samples if what == "voice")
    assert len(calls) == voice_probes                                   # each signed /voice opened its call


def test_slow_body_gets_408_and_changes_nothing(server, redis):
    with SlowLoris("127.0.0.1", server.port, n=40, body=True, source="127.0.0.9", seconds=30) as loris:
        deadline = time.monotonic() + HEADER_TIMEOUT + 4
        while loris.closed_by_server < 40 and time.monotonic() < deadline:
            time.sleep(0.2)
        status, took = probe("127.0.0.1", server.port, HEALTH)
    assert status == 200 and took < 1.0
    assert loris.closed_by_server >= 40 and loris.longest < HEADER_TIMEOUT + 2.5
    assert not list(redis.scan_iter(keys.CALL_PREFIX + "*"))          # no /voice ran for an unfinished body


def test_slow_connections_from_many_addresses_do_not_fill_the_worker(redis_url, tmp_path):
    """More slow connections than the worker may hold (gunicorn's worker_connections), each address under its
    own cap: gunicorn stops accepting once the worker is full, so before the total cap /healthz and POST /voice
    went unanswered (the review: 17 addresses x 62 against 1000, here 4 x 40 against 120)."""
    connections = 120
    env = {"TWILIO_AUTH_TOKEN": TOKEN, "PUBLIC_URL": PUBLIC, "REDIS_URL": redis_url, "IVR_DATA_DIR": str(tmp_path),
           "IVR_HEADER_TIMEOUT": "20", "IVR_WORKER_CONNECTIONS": str(connections)}
    srv = ServeProcess(env, threads=THREADS).start()
    attacks = [SlowLoris("127.0.0.1", srv.port, n=40, source=f"127.0.0.{20 + i}", seconds=40) for i in range(4)]
    try:
        for a in attacks:
            a.__enter__()
        deadline = time.monotonic() + 10
        while sum(a.opened for a in attacks) < 160 and time.monotonic() < deadline:
            time.sleep(0.1)
        samples = probe_while(srv, _Total(attacks))
        for a in attacks:
            a.__exit__(None, None, None)
        closed = _closed(srv, "worker_limit")
    finally:
        for a in attacks:
            a.stopping.set()
        srv.kill()
    assert all(status == 200 for _, status, _, _ in samples), samples
    assert max(took for _, _, took, _ in samples) < 1.0, samples
    assert sum(a.opened for a in attacks) >= 160 and closed > 0     # the server closed the oldest to keep accepting


def _closed(srv, reason) -> float:
    import urllib.request
    with urllib.request.urlopen(srv.url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    line = f'ivr_slow_clients_closed_total{{reason="{reason}"}} '
    return sum(float(row.split()[-1]) for row in text.splitlines() if row.startswith(line))


class _Total:
    def __init__(self, attacks):
        self.attacks = attacks

    @property
    def open_now(self):
        return sum(a.open_now for a in self.attacks)


def test_expect_continue_chunked_and_oversized_bodies(server):
    """What the guard answers itself: 100 Continue at once (curl's large POSTs), 411 for a chunked body,
    413 for one over the app's 64 KB limit; ordinary answers otherwise."""
    import socket
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST /voice HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n"
                  b"Connection: close\r\n\r\n")
        assert s.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"a=bcd")
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 403") and answer.count(b"100 Continue") == 0   # unsigned: refused
    chunked = b"POST /voice HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\na=b\r\n0\r\n\r\n"
    assert probe("127.0.0.1", server.port, chunked)[0] == 411
    big = b"POST /voice HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    assert probe("127.0.0.1", server.port, big)[0] == 413
