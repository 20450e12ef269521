"""Only agents reach callers: the agent line admits registered numbers (and a PIN when set); anyone
else hears a refusal, reaches nobody, and is logged (masked) and counted. `ivr agents` manages them."""
import logging
import subprocess
import sys

import pytest

from ivr import keys
from ivr.agents import AgentError, Agents
from ivr.metrics import AGENT_LINE_REFUSED
from tests.support.dashboard import add_operator, login
from tests.support.hotline import agent_line, agent_takes, caller, dial_queue, enqueued, said, verb

STRANGER = "+14155550999"


def refused_total():
    return AGENT_LINE_REFUSED._value.get()


def test_an_unregistered_number_hears_a_refusal_and_the_caller_keeps_waiting(serve, redis, caplog):
    client = serve()
    call = caller(1)
    enqueued(client, call, "0")
    before = refused_total()
    caplog.set_level(logging.WARNING, logger="ivr.queue")
    root = agent_line(client, 1, number=STRANGER)
    assert said(root) == "This line is for Volt agents only. Goodbye."
    assert verb(root, "Hangup") is not None and dial_queue(root) is None and verb(root, "Enqueue") is None
    assert "Next caller" not in said(root)                             # heard no briefing
    rec = redis.hgetall(keys.call(call["CallSid"]))
    assert rec["status"] == "queued" and "claimed_at" not in rec
    assert redis.zrange(keys.queue("normal"), 0, -1) == [call["CallSid"]]
    [line] = [r.getMessage() for r in caplog.records if "agent line refused" in r.getMessage()]
    assert "+141****0999" in line and STRANGER not in line
    assert refused_total() == before + 1
    assert Agents(redis).refused_today(client.app.extensions["ivr"].clock()) == 1
    # A registered agent then takes that caller.
    root = agent_line(client, 2)
    assert said(root).startswith("Next caller") and dial_queue(root).text == "ivr-normal"


def test_an_agent_with_a_pin_is_asked_for_it_and_admitted_once(serve, redis):
    client = serve()
    Agents(redis).add("ann", "+14155550177", pin="4821")
    call = caller(2)
    enqueued(client, call, "0")
    ann = "+14155550177"
    root = agent_line(client, 3, number=ann)
    gather = verb(root, "Gather")
    assert said(root) == "Please enter your agent PIN, then press the pound key."
    assert dial_queue(root) is None and gather.get("finishOnKey") == "#"
    wrong = agent_line(client, 3, number=ann, url=gather.get("action"), Digits="1111")
    assert said(wrong).startswith("That PIN is not right.") and dial_queue(wrong) is None
    right = agent_line(client, 3, number=ann, url=gather.get("action"), Digits="4821")
    assert said(right).startswith("Next caller") and dial_queue(right).text == "ivr-normal"
    assert "agent=ann" in dial_queue(right).get("url")
    # The idle loop of the same call is not asked again.
    assert "PIN" not in said(agent_line(client, 3, number=ann, url="/voice/agent?idle=1"))


def test_three_wrong_pins_are_refused(serve, redis):
    client = serve()
    Agents(redis).add("ann", "+14155550177", pin="4821")
    enqueued(client, caller(3), "0")
    before = refused_total()
    for _ in range(3):
        root = agent_line(client, 4, number="+14155550177", url="/voice/agent?pin=1", Digits="0000")
    assert said(root) == "This line is for Volt agents only. Goodbye." and dial_queue(root) is None
    assert refused_total() == before + 1


def test_dashboard_shows_agents_on_a_call_and_available(serve, redis):
    client = serve()
    agents = Agents(redis)
    agents.add("ann", "+14155550177")
    agents.add("bo", "+14155550178")
    add_operator(redis)
    web = client.app.test_client()
    login(web)
    agent_line(client, 5, number="+14155550178")         # bo waits on the line: nobody to take yet
    call = caller(4, "+14155550104")
    enqueued(client, call, "0")
    agent_takes(client, 6, call)                           # the simulator's agent takes the caller
    live = web.get("/dashboard/api/live").get_json()
    by_name = {a["name"]: a for a in live["agents"]["agents"]}
    assert by_name["sim"]["state"] == "on_call" and by_name["sim"]["caller"] == call["CallSid"]
    assert by_name["sim"]["caller_from"] == "+141****0104" and by_name["sim"]["since"] > 0
    assert by_name["bo"]["state"] == "available" and by_name["ann"]["state"] == "away"
    assert live["agents"]["available"] == 1 and live["agents"]["on_call"] == 1
    assert live["with_agent"][0]["agent"] == "sim"
    # The caller's call ends: the agent is free again.
    client.post("/voice/status", dict(call, CallStatus="completed"))
    live = web.get("/dashboard/api/live").get_json()
    assert {a["name"]: a["state"] for a in live["agents"]["agents"]}["sim"] != "on_call"


def test_registry_rules(redis):
    agents = Agents(redis)
    agents.add("ann", "+14155550177", pin="1234")
    with pytest.raises(AgentError, match="already exists"):
        agents.add("ann", "+14155550178")
    with pytest.raises(AgentError, match="already registered to agent ann"):
        agents.add("bo", "+14155550177")
    with pytest.raises(AgentError, match="E.164"):
        agents.add("bo", "0155550177")
    with pytest.raises(AgentError, match="4 to 8 digits"):
        agents.add("bo", "+14155550179", pin="12")
    stored = redis.hget(keys.AGENTS, "ann")
    assert "1234" not in stored and "argon2" in stored             # the PIN is hashed
    assert agents.by_number("+14155550177")["name"] == "ann" and agents.by_number(STRANGER) is None


@pytest.mark.slow
def test_cli_add_list_remove(redis_url, redis, tmp_path):
    env = {"REDIS_URL": redis_url, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    def ivr(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "ivr.cli", "agents", *args], input=stdin, env=env,
                              capture_output=True, text=True, timeout=60)

    added = ivr("add", "ann", "+14155550177", "--pin-stdin", stdin="4821\n")
    assert added.returncode == 0 and "agent ann added with a PIN" in added.stdout
    listed = ivr("list")
    assert "ann" in listed.stdout and "+141****0177" in listed.stdout and "PIN" in listed.stdout
    assert "+14155550177" not in listed.stdout
    bad = ivr("add", "bo", "12345")
    assert bad.returncode == 1 and "E.164" in bad.stderr
    assert ivr("remove", "ann").returncode == 0
    assert Agents(redis).by_number("+14155550177") is None
    assert ivr("remove", "ann").returncode == 1
