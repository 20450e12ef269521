"""Whose data an `ivr` command works on: never another user's data folder with a Redis of its own.

The real `ivr` command in this process (click's runner); the refusal happens before any Redis is started.
"""
from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from ivr.cli import main as ivr_cli
from ivr.cli.common import REFUSED

NOBODY = 65534
NAMING_VARIABLES = ("REDIS_URL", "REDIS_SENTINELS", "IVR_HOME", "IVR_DATA_DIR")


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
