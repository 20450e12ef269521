"""Only agents reach callers: the agent line admits registered numbers (and a PIN when set); anyone
else hears a refusal, reaches nobody, and is logged (masked) and counted. `ivr agents` manages them."""
import logging
import re
import subprocess
import sys
import time

import pytest

from ivr import keys
from ivr.agents import AgentError, Agents
from ivr.metrics import AGENT_LINE_REFUSED
from tests.support.dashboard import add_operator, login
from tests.support.hotline import agent_line, agent_sid, agent_takes, caller, dial_queue, enqueued, post, said, verb

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
    # Back on the line after that caller (the <Dial action>, then its redirect): not asked again.
    done = agent_line(client, 3, number=ann, url=verb(right, "Dial").get("action"), DialCallStatus="completed")
    idle = agent_line(client, 3, number=ann, url=verb(done, "Redirect").text)
    assert said(idle) == "No callers are waiting." and verb(idle, "Gather") is None


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
    unlocked = ivr("unlock", "ann")
    assert unlocked.returncode == 0 and "was not locked" in unlocked.stdout
    assert ivr("remove", "ann").returncode == 0
    assert Agents(redis).by_number("+14155550177") is None
    assert ivr("remove", "ann").returncode == 1


@pytest.mark.slow
def test_a_pin_lock_shows_in_the_list_and_ends_by_itself(serve, redis_url, redis, tmp_path):
    """With IVR_AGENT_PIN_MAX_FAILURES=2 and IVR_AGENT_PIN_LOCK_SECONDS=2: two wrong PINs lock the agent,
    `ivr agents list` says so, the right PIN is refused until 2 s pass without an attempt, then works."""
    client = serve(agent_pin_max_failures=2, agent_pin_lock_seconds=2)
    Agents(redis).add("ann", ANN, pin="4821")
    assert not refused(pin_call(client, 70, "0000"))
    assert refused(pin_call(client, 71, "1111"))
    env = {"REDIS_URL": redis_url, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "IVR_AGENT_PIN_MAX_FAILURES": "2", "IVR_AGENT_PIN_LOCK_SECONDS": "2"}
    listed = subprocess.run([sys.executable, "-m", "ivr.cli", "agents", "list"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert "PIN LOCKED" in listed.stdout and "ivr agents unlock ann" in listed.stdout
    assert refused(pin_call(client, 72, "4821"))              # an attempt while locked: the lock goes on
    time.sleep(2.5)
    assert said(pin_call(client, 73, "4821")).startswith("No callers are waiting")
    assert "PIN LOCKED" not in subprocess.run([sys.executable, "-m", "ivr.cli", "agents", "list"], env=env,
                                              capture_output=True, text=True, timeout=60).stdout


ANN = "+14155550177"


def pin_call(client, n, digits, number=ANN):
    """Agent-line call `n` from `number` keys `digits` at the PIN prompt, as Twilio sends it: the first
    request, then the prompt's <Gather action> with the digits. The TwiML of the second."""
    gather = verb(agent_line(client, n, number=number), "Gather")
    assert gather is not None, "no PIN prompt"
    return agent_line(client, n, number=number, url=gather.get("action"), Digits=digits)


def refused(root):
    return said(root) == "This line is for Volt agents only. Goodbye." and dial_queue(root) is None


def test_wrong_pins_across_calls_lock_the_agent(serve, redis, caplog):
    """A new call for every few guesses does not help: wrong PINs are counted per agent, across calls, and
    checked before the PIN is; after 5 the right PIN is refused too. Logged with the agent's name and the
    number masked, never the PIN; counted as refusals. Success starts the count afresh."""
    client = serve()
    Agents(redis).add("ann", ANN, pin="4821")
    call = caller(10)
    enqueued(client, call, "0")
    caplog.set_level(logging.INFO, logger="ivr.queue")
    # Four wrong, then the right one: admitted, and the count starts afresh.
    for n in (20, 21):
        for digits in ("0000", "1111"):
            gather = verb(agent_line(client, n, number=ANN), "Gather")
            agent_line(client, n, number=ANN, url=gather.get("action"), Digits=digits)
    assert said(pin_call(client, 22, "4821")).startswith("Next caller")       # takes caller 10
    waiting = caller(11)
    enqueued(client, waiting, "0")
    before = refused_total()
    # The attack: a new call for every three guesses.
    heard = []
    for n in range(30, 34):
        gather = verb(agent_line(client, n, number=ANN), "Gather")
        for digits in ("0001", "0002", "0003"):
            root = agent_line(client, n, number=ANN, url=gather.get("action"), Digits=digits)
            heard.append(refused(root))
            if refused(root):
                break
    # Guesses 1-3 (call 30), 4-5 (call 31: the fifth locks), then nothing is checked at all.
    assert heard == [False, False, True, False, True, True, True]
    right = pin_call(client, 40, "4821")
    assert refused(right) and "Next caller" not in said(right)
    assert redis.hget(keys.call(waiting["CallSid"]), "claimed_at") is None
    assert refused_total() == before + 5                                     # calls 30-33 and 40
    log = "\n".join(r.getMessage() for r in caplog.records if r.name == "ivr.queue" and r.levelno >= logging.WARNING)
    assert "PIN entry of agent ann locked" in log and "+141****0177" in log and ANN not in log
    assert not re.search(r"\b(4821|0001|0002|0003)\b", log)                   # no PIN, right or wrong
    # An operator lifts the lock: the right PIN works again.
    assert Agents(redis).unlock("ann")
    assert said(pin_call(client, 41, "4821")).startswith("Next caller")


def test_a_refused_call_stays_refused_with_the_right_pin(serve, redis):
    """Three wrong PINs end the call; a fourth request on that CallSid, with the right PIN, is refused
    before the PIN is checked."""
    client = serve()
    Agents(redis).add("ann", ANN, pin="4821")
    call = caller(12)
    enqueued(client, call, "0")
    gather = verb(agent_line(client, 50, number=ANN), "Gather")
    for digits in ("0000", "1111", "2222"):
        root = agent_line(client, 50, number=ANN, url=gather.get("action"), Digits=digits)
    assert refused(root)
    again = agent_line(client, 50, number=ANN, url=gather.get("action"), Digits="4821")
    assert refused(again) and "Next caller" not in said(again)
    assert "claimed_at" not in redis.hgetall(keys.call(call["CallSid"]))
    assert Agents(redis).admitted(agent_sid(50)) is None


def test_a_replayed_agent_request_claims_nobody(serve, redis):
    """The same signed request again (a replay, or Twilio retrying) is not another turn: it claims no
    caller and says nothing about one. The agent's own next request, after the first caller, takes the next."""
    client = serve()
    calls = [caller(13 + i) for i in range(3)]
    for call in calls:
        enqueued(client, call, "0")
    first = agent_line(client, 60)
    assert said(first).startswith("Next caller") and dial_queue(first) is not None
    claimed = [c["CallSid"] for c in calls if redis.hget(keys.call(c["CallSid"]), "claimed_at")]
    assert claimed == [calls[0]["CallSid"]]
    for _ in range(3):
        replay = agent_line(client, 60)
        assert "Next caller" not in said(replay) and dial_queue(replay) is None and verb(replay, "Enqueue") is None
    assert [c["CallSid"] for c in calls if redis.hget(keys.call(c["CallSid"]), "claimed_at")] == claimed
    # The genuine agent: bridged to the first caller, then the <Dial action> and the line's redirect.
    post(client, dial_queue(first).get("url"), dict(calls[0], QueueTime="20", DequeingCallSid=agent_sid(60)))
    dial = verb(first, "Dial")
    done = agent_line(client, 60, url=dial.get("action"), DialCallStatus="completed", QueueResult="bridged")
    assert said(done) == "Call ended. Next caller."
    following = agent_line(client, 60, url=verb(done, "Redirect").text)
    assert said(following).startswith("Next caller") and dial_queue(following) is not None
    assert redis.hget(keys.call(calls[1]["CallSid"]), "claimed_by") == agent_sid(60)
    # That request replayed: nothing more; the third caller is not claimed.
    again = agent_line(client, 60, url=verb(done, "Redirect").text)
    assert "Next caller" not in said(again) and dial_queue(again) is None
    assert redis.hget(keys.call(calls[2]["CallSid"]), "claimed_at") is None
    # The first request, replayed later, neither.
    assert dial_queue(agent_line(client, 60)) is None
    assert redis.hget(keys.call(calls[2]["CallSid"]), "claimed_at") is None
    # Had that been Twilio retrying (the first answer lost), the retry's answer goes on to the line's next
    # turn, a URL only Twilio can sign: there the third caller is taken.
    retried = agent_line(client, 60, url=verb(again, "Redirect").text)
    assert said(retried).startswith("Next caller") and dial_queue(retried) is not None
    assert redis.hget(keys.call(calls[2]["CallSid"]), "claimed_by") == agent_sid(60)
