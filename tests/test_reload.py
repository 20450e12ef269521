"""Flows reloaded without a restart (ivr/flow_versions.py, `ivr reload`): calls in progress finish on
the version they began with, the next call gets the new one, and a broken folder changes nothing.
Real server on a loopback socket, real Redis, the real `ivr reload` command."""
from __future__ import annotations

import json
import shutil
import time

import pytest
from click.testing import CliRunner

from ivr import keys
from ivr.cli import main as ivr_cli
from ivr.config import ROOT
from ivr.flow_versions import serving
from ivr.server import LoopbackServer
from ivr.simulate.twilio_client import TwilioClient
from tests.support import port_of

OLD_HOURS = "Our stores are open Monday to Saturday"
NEW_HOURS = "From next week our stores open every day from 7 AM"


@pytest.fixture
def flows_dir(tmp_path):
    folder = tmp_path / "flows"
    shutil.copytree(ROOT / "flows", folder)
    return folder


@pytest.fixture
def reload(monkeypatch, flows_dir, redis_url, tmp_path):
    """`ivr reload` as an operator runs it, against the test's Redis and flows folder."""
    monkeypatch.setenv("IVR_FLOWS_DIR", str(flows_dir))
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("IVR_DATA_DIR", str(tmp_path / "var"))   # the server's: its classifier cache

    def run(*args):
        return CliRunner().invoke(ivr_cli, ["reload", *args])
    return run


@pytest.fixture
def hotline_config():
    return {}


@pytest.fixture
def hotline(make_config, build_app, redis, flows_dir, hotline_config):
    """A server on its own copy of the flows, watching for reloads as a gunicorn worker does."""
    cfg = make_config(flows_dir=flows_dir, **hotline_config)
    app = build_app(cfg)
    svc = app.extensions["ivr"]
    svc.library.watch(every=0.1)
    deadline = time.time() + 10
    while svc.library.worker not in serving(redis):       # its first look at the reload key is done
        assert time.time() < deadline
        time.sleep(0.02)
    with LoopbackServer(app, port=port_of(cfg)) as srv:
        client = TwilioClient(srv.url, cfg.twilio_auth_token)
        client.svc = svc
        yield client
    svc.library.stop()


def edit_hours(flows_dir, old, new, name="hotline.yaml"):
    path = flows_dir / name
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def wait_for_version(svc, version, timeout=30):
    deadline = time.time() + timeout
    while svc.library.current.version != version:
        assert time.time() < deadline, f"still serving {svc.library.current.version}, not {version}"
        time.sleep(0.05)


class KeypadCall:
    def __init__(self, client, n):
        self.client, self.turn = client, 0
        self.params = {"CallSid": "CA" + f"{n:032d}", "From": f"+1555000{n:04d}", "To": "+15005550100"}

    def start(self):
        status, body = self.client.post("/voice", self.params)
        assert status == 200, body
        return body

    def press(self, digits):
        self.turn += 1
        status, body = self.client.post(f"/voice/gather?turn={self.turn}", dict(self.params, Digits=digits))
        assert status == 200, body
        return body

    def end(self):
        self.client.post("/voice/status", dict(self.params, CallStatus="completed", CallDuration="30"))


def test_keypad_call_in_progress_keeps_its_version_the_next_gets_the_new(hotline, reload, flows_dir, redis):
    svc = hotline.svc
    first = svc.library.current.version
    call = KeypadCall(hotline, 1)
    call.start()
    assert OLD_HOURS in call.press("3")                      # opening hours, then "anything else?"
    assert redis.hget(keys.call(call.params["CallSid"]), "flow_version") == first

    edit_hours(flows_dir, OLD_HOURS, NEW_HOURS)
    # The command returns as soon as the server confirms; the wait is no bound under test. On a loaded
    # machine (xdist beside other tests) rendering the new prompts and building the engines took more
    # than 10 s, and the command rightly exited 3 ("not yet reloaded").
    result = reload("--wait", "60")
    assert result.exit_code == 0, result.output
    second = json.loads(redis.get(keys.FLOWS_RELOAD))["version"]
    assert second != first and f"serving {second}" in result.output
    wait_for_version(svc, second)
    assert svc.library.versions() == sorted([first, second])     # the old one is kept for the call

    assert "help" in call.press("1").lower()                   # yes: back to the open question
    assert OLD_HOURS in call.press("3")                        # the call in progress: the old words
    after = KeypadCall(hotline, 2)
    after.start()
    heard = after.press("3")
    assert NEW_HOURS in heard and OLD_HOURS not in heard       # the next call: the new
    assert redis.hget(keys.call(after.params["CallSid"]), "flow_version") == second

    call.end()
    svc.library.prune()
    assert svc.library.versions() == [second]                  # nobody uses the old one any more


def test_an_invalid_flow_is_refused_with_its_line_and_nothing_changes(hotline, reload, flows_dir, redis):
    svc = hotline.svc
    before = svc.library.current.version
    path = flows_dir / "hotline.yaml"
    lines = path.read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip() == "next: anything_else")
    lines[at] = lines[at].replace("anything_else", "no_such_step")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = reload("--wait", "1")
    assert result.exit_code == 1
    assert f"{path}:{at + 1}:" in result.output and "unknown step 'no_such_step'" in result.output
    assert "nothing reloaded" in result.output
    assert redis.get(keys.FLOWS_RELOAD) is None                 # the servers were not even asked

    time.sleep(0.3)                                             # a few watcher rounds
    assert svc.library.current.version == before
    call = KeypadCall(hotline, 3)
    call.start()
    assert OLD_HOURS in call.press("3")
    assert redis.hget(keys.call(call.params["CallSid"]), "flow_version") == before


def test_a_process_that_finds_the_folder_broken_keeps_serving_and_says_so(hotline, reload, flows_dir, redis):
    """Edited again between the check and the load (or SIGHUP on a broken folder): the workers refuse it."""
    from ivr.flow_versions import request_reload

    svc = hotline.svc
    before = svc.library.current.version
    (flows_dir / "hotline.yaml").write_text("id: hotline\nlanguages: [en\n", encoding="utf-8")
    request_reload(redis, "whatever")
    deadline = time.time() + 10
    while not any(e.get("error") for e in serving(redis).values()):
        assert time.time() < deadline
        time.sleep(0.05)
    entry = serving(redis)[svc.library.worker]
    assert entry["version"] == before and "hotline.yaml:" in entry["error"] and "invalid YAML" in entry["error"]
    call = KeypadCall(hotline, 4)
    call.start()
    assert OLD_HOURS in call.press("3")


def test_a_folder_without_the_default_flow_is_refused_and_nothing_changes(hotline, reload, flows_dir, redis):
    """Renaming the default flow would otherwise send every caller of an unlisted number to whichever
    flow came first: `ivr reload` refuses it, and so does a process asked to load it anyway."""
    from ivr.flow_versions import request_reload

    svc = hotline.svc
    before = svc.library.current.version
    path = flows_dir / "hotline.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("\nid: hotline\n", "\nid: helpline\n"), encoding="utf-8")

    result = reload("--wait", "1")
    assert result.exit_code == 1
    assert "IVR_DEFAULT_FLOW must be the id of a flow" in result.output and "helpline, hotline_ko" in result.output
    assert "nothing reloaded" in result.output and redis.get(keys.FLOWS_RELOAD) is None

    request_reload(redis, "whatever")
    deadline = time.time() + 10
    while not serving(redis)[svc.library.worker].get("error"):
        assert time.time() < deadline
        time.sleep(0.05)
    assert "IVR_DEFAULT_FLOW" in serving(redis)[svc.library.worker]["error"]
    assert svc.library.current.version == before
    call = KeypadCall(hotline, 5)
    assert "Volt" in call.start()
    assert OLD_HOURS in call.press("3")


KO_BYE = 'say: {ko: "볼트 전자에 전화해 주셔서 감사합니다. 안녕히 계세요."}'
KO_OLD = "볼트 전자에 전화해 주셔서 감사합니다"
KO_NEW = "다음 주부터 매장은 매일 문을 엽니다"


def _bot_turns(redis, sid):
    return [json.loads(t)["text"] for t in redis.lrange(keys.turns(sid), 0, -1) if json.loads(t)["who"] == "bot"]


@pytest.mark.slow
@pytest.mark.speech
@pytest.mark.parametrize("hotline_config", [{"gather_timeout": 60}])   # the pause below is not a miss
def test_speech_call_in_progress_finishes_on_its_flow_the_next_gets_the_new(hotline, reload, flows_dir, redis,
                                                                           ko_model):
    """A caller talking over a real media stream (real Korean model, directed options) when the flow
    changes: the call keeps its version to the end; the next caller hears the new words. The caller
    pauses 8 s after the first answer, so the reload (a few seconds on a busy machine) lands between
    two turns; the test checks that it did."""
    import secrets
    import threading

    from ivr.simulate.call import CallSimulator

    svc = hotline.svc
    first = svc.library.current.version
    options = dict(barge_in_after=None, listen_to_end=False, end_wait=0.5)   # each prompt heard out

    def call(*inputs, **opts):
        sim = CallSimulator(hotline, from_number="+1555" + f"{secrets.randbelow(10**7):07d}",
                            stream_options=dict(options, **opts))
        return sim.run(list(inputs), "ko")

    reports = {}
    caller = threading.Thread(target=lambda: reports.update(a=call(("say", "시간"), ("wait", 8), ("say", "아니오"))))
    caller.start()
    deadline = time.time() + 60
    sid = None
    while True:         # the first answer given: the caller is hearing it out
        assert time.time() < deadline and caller.is_alive()
        sid = sid or next(iter(redis.zrange(keys.ACTIVE, 0, -1)), None)
        if sid and redis.hget(keys.call(sid), "step") == "anything_else":
            break
        time.sleep(0.05)
    turns_then = redis.llen(keys.turns(sid))
    edit_hours(flows_dir, KO_BYE, KO_BYE.replace(KO_OLD, KO_NEW), "hotline_ko.yaml")   # the goodbye step
    result = reload("--wait", "60")
    assert result.exit_code == 0, result.output
    second = json.loads(redis.get(keys.FLOWS_RELOAD))["version"]
    wait_for_version(svc, second)
    # The premise: the new version was in place before the caller's next words.
    assert redis.llen(keys.turns(sid)) == turns_then, "the caller spoke again before the reload finished"
    caller.join(120)
    a = reports["a"]
    assert a["call_sid"] == sid and a["asr"] == "vosk"
    assert a["intents"] == ["opening_hours", "goodbye"], _bot_turns(redis, sid)
    said = _bot_turns(redis, sid)
    assert any(KO_OLD in t for t in said[2:]) and not any(KO_NEW in t for t in said)   # goodbye: the old words
    assert redis.hget(keys.call(sid), "flow_version") == first

    # The next caller needs no pauses: it speaks into each prompt (0.4 s in), as most tests' callers do,
    # instead of hearing out the welcome and the ~25 s answer to 시간 (half this test's time, for nothing).
    b = call(("say", "시간"), ("say", "아니오"), barge_in_after=0.4)
    assert b["asr"] == "vosk" and b["intents"] == ["opening_hours", "goodbye"]
    assert any(KO_NEW in t for t in _bot_turns(redis, b["call_sid"]))
    assert redis.hget(keys.call(b["call_sid"]), "flow_version") == second


@pytest.mark.slow
def test_sighup_to_the_master_reloads_every_worker_without_restarting_them(redis_url, redis, tmp_path, flows_dir):
    """`ivr serve --workers 2` (gunicorn): SIGHUP is `ivr reload`, not gunicorn's restart of the workers."""
    import os
    import signal

    from tests.support.procs import ServeProcess, group_members

    token, public = "h" * 32, "https://hotline.example"
    srv = ServeProcess({"TWILIO_AUTH_TOKEN": token, "PUBLIC_URL": public, "REDIS_URL": redis_url,
                        "IVR_SPEECH": "off", "IVR_DATA_DIR": str(tmp_path / "var"),
                        "IVR_FLOWS_DIR": str(flows_dir)}, threads=4, workers=2).start()
    try:
        client = TwilioClient(srv.url, token, public_url=public)

        def workers_on(token_value):
            entries = [e for e in serving(redis).values() if e.get("token") == token_value]
            return len(entries) == 2 and all(not e.get("error") for e in entries)

        deadline = time.time() + 30
        while len(serving(redis)) < 2:                    # both workers' watchers have reported
            assert time.time() < deadline, srv.output()
            time.sleep(0.1)
        processes = set(group_members(srv.proc.pid))
        call = KeypadCall(client, 31)
        call.start()
        assert OLD_HOURS in call.press("3")

        edit_hours(flows_dir, OLD_HOURS, NEW_HOURS)
        os.kill(srv.proc.pid, signal.SIGHUP)
        deadline = time.time() + 60
        while redis.get(keys.FLOWS_RELOAD) is None or not workers_on(redis.get(keys.FLOWS_RELOAD)):
            assert time.time() < deadline, srv.output()
            time.sleep(0.1)
        assert "help" in call.press("1").lower()
        assert OLD_HOURS in call.press("3")                   # in progress: the old words, on any worker
        for n in (32, 33, 34):                                # new calls, whichever worker takes them
            after = KeypadCall(client, n)
            after.start()
            assert NEW_HOURS in after.press("3")
        assert set(group_members(srv.proc.pid)) == processes  # no worker was restarted

        requested = redis.get(keys.FLOWS_RELOAD)
        (flows_dir / "hotline.yaml").write_text("id: hotline\nlanguages: [en\n", encoding="utf-8")
        os.kill(srv.proc.pid, signal.SIGHUP)
        deadline = time.time() + 30
        while "flows refused" not in srv.output():
            assert time.time() < deadline, srv.output()
            time.sleep(0.1)
        assert "hotline.yaml:3: invalid YAML" in srv.output()
        assert redis.get(keys.FLOWS_RELOAD) == requested      # the workers were not even asked
        last = KeypadCall(client, 35)
        last.start()
        assert NEW_HOURS in last.press("3")
    finally:
        srv.terminate()
