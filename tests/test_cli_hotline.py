"""Admin commands work on a hotline's data, or refuse: run where there is no hotline (no IVR_HOME, no
REDIS_URL, a folder without flows or data), they used to start an empty Redis in a new ./var/ and report
success on it (a backup of 0 keys, an operator no server knows, a reload nobody heard, exit 0).

The real `ivr` command in this process (click's runner); the refusals happen before any Redis is touched.
"""
from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from ivr.cli import main as ivr_cli
from ivr.cli.common import NAMING_VARIABLES, REFUSED, hotline_problem
from ivr.redis_conn import mask_url

NOBODY = 65534

ADMIN_COMMANDS = [
    ("backup", "b.jsonl"),
    ("restore", "{backup}"),
    ("operators", "add", "alice", "--password-stdin"),
    ("operators", "list"),
    ("operators", "remove", "alice"),
    ("agents", "add", "ann", "+15551230001"),
    ("agents", "list"),
    ("agents", "remove", "ann"),
    ("reload",),
    ("unanswered",),
    ("simulate", "--server-redis", "--press", "1"),
]


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A folder that is no hotline, as the working directory, with nothing in the environment naming one."""
    for name in NAMING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.mark.parametrize("args", ADMIN_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_an_admin_command_refuses_a_folder_that_is_no_hotline(elsewhere, tmp_path, args):
    backup = tmp_path / "old-backup.jsonl"
    backup.write_text("{}\n")
    args = [a.format(backup=backup) for a in args]
    result = CliRunner().invoke(ivr_cli, args, input="a long enough password\n")
    assert result.exit_code == REFUSED, result.output
    assert result.output.count("\n") == 1, result.output                   # one line
    assert f"{elsewhere} is not a hotline folder" in result.output and "IVR_HOME" in result.output
    assert list(elsewhere.iterdir()) == []                                  # no var/, no backup file


@pytest.mark.parametrize("marker", ["flows/", "ivr.env", "var/appendonly.aof", "var/ivr.rdb"])
def test_a_hotline_folder_is_one_ivr_init_made_or_one_with_data(elsewhere, marker):
    assert hotline_problem() is not None
    path = elsewhere / marker.rstrip("/")
    path.parent.mkdir(exist_ok=True)
    path.mkdir() if marker.endswith("/") else path.write_text("")
    assert hotline_problem() is None


@pytest.mark.parametrize("name", NAMING_VARIABLES)
def test_the_environment_names_a_hotline_wherever_the_command_runs(elsewhere, monkeypatch, name):
    """IVR_HOME may name a new, empty folder on purpose (README: restore into a scratch folder)."""
    monkeypatch.setenv(name, str(elsewhere / "x") if name.startswith("IVR_") else "redis://127.0.0.1:1/0")
    assert hotline_problem() is None


def test_reload_exits_3_when_no_server_reports_and_names_the_redis(monkeypatch, redis_url, redis):
    """No server process confirmed the new flows (none runs on this Redis, or this is not the servers'
    Redis): exit 3, as README says, not 0; a deploy script must not take this for a reload done."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("IVR_SPEECH", "off")
    result = CliRunner().invoke(ivr_cli, ["reload", "--wait", "0.5"])
    assert result.exit_code == 3, result.output
    assert "requested" in result.output
    assert f"no running server reported in 0.5 s on {mask_url(redis_url)}" in result.output
    assert f"hotline data: {mask_url(redis_url)}" in result.output


def test_no_embedded_redis_is_started_in_another_users_data_folder(tmp_path, monkeypatch):
    """Root beside a stopped service (DynamicUser=yes owns /var/lib/ivr): a redis-server started by root would
    write the dump, the append-only file and the lock as root's, and the service could no longer read its
    own data. Refused in one line; nothing is written into the folder."""
    if os.geteuid() != 0:
        pytest.skip("giving a folder to another user needs root")
    data = tmp_path / "var"
    data.mkdir(mode=0o700)
    (data / "appendonly.aof").write_text("")
    os.chown(data / "appendonly.aof", NOBODY, NOBODY)
    os.chown(data, NOBODY, NOBODY)
    for name in NAMING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IVR_DATA_DIR", str(data))
    result = CliRunner().invoke(ivr_cli, ["agents", "list"])
    assert result.exit_code == REFUSED, result.output
    assert f"the data folder {data} belongs to user id {NOBODY}" in result.output.splitlines()[-1]
    assert [p.name for p in data.iterdir()] == ["appendonly.aof"]
