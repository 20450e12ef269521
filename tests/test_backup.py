"""Backups (ivr/backup.py, `ivr backup` / `ivr restore`): what cannot be rebuilt survives a restore into
an empty Redis; the file is this user's only; the embedded Redis keeps an append-only file."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from click.testing import CliRunner

from ivr import keys
from ivr.agents import Agents
from ivr.backup import EPHEMERAL, is_state
from ivr.cli import main as ivr_cli
from ivr.dashboard.auth import Operators
from tests.support.dashboard import PASSWORD, add_operator, login
from tests.support.hotline import ask_callback, caller, enqueued, post, start, verb
from tests.support.twilio_api import ACCOUNT_SID, TwilioStandIn

TOKEN = "test-token-" + "x" * 20     # conftest's make_config


@pytest.fixture
def cli(monkeypatch, redis_url):
    monkeypatch.setenv("REDIS_URL", redis_url)

    def run(*args):
        return CliRunner().invoke(ivr_cli, list(map(str, args)))
    return run


READ = {"string": lambda r, k: r.get(k), "hash": lambda r, k: r.hgetall(k), "set": lambda r, k: r.smembers(k),
        "zset": lambda r, k: r.zrange(k, 0, -1, withscores=True), "list": lambda r, k: r.lrange(k, 0, -1),
        "stream": lambda r, k: r.xrange(k)}


def snapshot(redis) -> dict:
    """Every state key's type and value (DUMP's bytes are not comparable: a hash's order may differ)."""
    return {k: (redis.type(k), READ[redis.type(k)](redis, k)) for k in redis.scan_iter("ivr:*") if is_state(k)}


def test_operators_secret_callbacks_ratings_and_more_come_back_into_an_empty_redis(serve, redis, cli, tmp_path):
    with TwilioStandIn(TOKEN) as rest:
        client = serve(twilio_account_sid=ACCOUNT_SID, twilio_api_url=rest.url, callback_after=60)
        add_operator(redis, "alice")
        Agents(redis).add("bea", "+14155550190", pin="2468")
        waiting = caller(1, "+14155550101")
        ask_callback(client, waiting, enqueued(client, waiting, "0"))            # an open call back
        rated = caller(2)
        rating = verb(start(client, rated, "3", "2"), "Gather")                  # answered; "rate me"
        post(client, rating.get("action"), dict(rated, Digits="5"))
        start(client, caller(3), "purple elephants sing tonight")              # the unanswered log
        web = client.app.test_client()
        assert login(web, "alice").status_code == 302                            # a session: ephemeral
    secret = redis.get(keys.SECRET_KEY)
    assert secret and redis.zscore(keys.CALLBACKS, waiting["CallSid"]) is not None
    assert any(redis.scan_iter(keys.ratings("*"))) and any(redis.scan_iter(keys.unanswered("*", "*")))
    assert any(redis.scan_iter(keys.SESSIONS_MATCH))
    before = snapshot(redis)
    ttl_before = redis.ttl(keys.call(waiting["CallSid"]))

    path = tmp_path / "ivr-backup.jsonl"
    result = cli("backup", path)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600                          # not world-readable
    assert PASSWORD not in path.read_text()

    redis.flushdb()                                                              # the disaster
    result = cli("restore", path)
    assert result.exit_code == 0, result.output
    assert snapshot(redis) == before
    assert redis.get(keys.SECRET_KEY) == secret
    assert Operators(redis).verify("alice", PASSWORD)
    assert Agents(redis).by_number("+14155550190")["name"] == "bea"
    assert redis.zscore(keys.CALLBACKS, waiting["CallSid"]) is not None
    assert redis.hget(keys.call(waiting["CallSid"]), "from") == "+14155550101"  # the number to call back
    assert abs(redis.ttl(keys.call(waiting["CallSid"])) - ttl_before) <= 5     # expiry kept
    assert not any(redis.scan_iter(keys.SESSIONS_MATCH))                         # logins are not restored


def test_restore_refuses_a_redis_that_is_not_empty_unless_forced(redis, cli, tmp_path):
    add_operator(redis, "alice")
    path = tmp_path / "b.jsonl"
    assert cli("backup", path).exit_code == 0
    Operators(redis).add("alice", "another password 123", replace=True)
    result = cli("restore", path)
    assert result.exit_code == 1 and "already holds" in result.output
    assert not Operators(redis).verify("alice", PASSWORD)                        # nothing changed
    result = cli("restore", path, "--force")
    assert result.exit_code == 0, result.output
    assert Operators(redis).verify("alice", PASSWORD)


def test_a_file_that_is_not_a_backup_is_refused(redis, cli, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    redis.flushdb()
    result = cli("restore", path)
    assert result.exit_code == 1 and "not an ivr backup" in result.output
    assert redis.dbsize() == 0


def test_every_ephemeral_pattern_names_keys_ivr_writes():
    """EPHEMERAL is written with keys.py's own names, so a renamed key cannot silently become state."""
    assert not is_state(keys.ACTIVE) and not is_state(keys.queue("urgent")) and not is_state(keys.session("t"))
    assert all(p.startswith(keys.PREFIX + ":") for p in EPHEMERAL)
    for key in (keys.OPERATORS, keys.operator("a"), keys.SECRET_KEY, keys.CALLBACKS, keys.CALLBACKS_FAILED,
                keys.VOICEMAILS, keys.AGENTS, keys.ratings("2026-01-01"), keys.unanswered("hotline", "en"),
                keys.call("CA1"), keys.turns("CA1"), keys.AUDIT, keys.EVENTS):
        assert is_state(key), key


@pytest.mark.slow
def test_the_embedded_redis_writes_an_append_only_file_and_reads_it_back(tmp_path):
    """Two processes one after the other, as a restart: the second sees what the first wrote."""
    folder = tmp_path / "var"
    code = ("import sys, redis; from ivr.redis_conn import start_embedded;"
            "r = redis.Redis.from_url(start_embedded(sys.argv[1]), decode_responses=True);"
            "print(r.config_get('appendonly')['appendonly'], r.get('ivr:test'));"
            "r.set('ivr:test', 'kept'); r.connection_pool.disconnect()")   # the last client: Redis stops
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    first = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, env=env,
                           timeout=60)
    assert first.stdout.split() == ["yes", "None"], first.stderr
    assert (folder / "appendonly.aof").is_file()
    assert stat.S_IMODE(os.stat(folder / "appendonly.aof").st_mode) == 0o600
    second = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, env=env,
                            timeout=60)
    assert second.stdout.split() == ["yes", "kept"], second.stderr
    assert (folder / "ivr.rdb").is_file()                    # and the snapshot, written as Redis stopped
