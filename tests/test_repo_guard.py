"""The check that tests write only under temporary folders (tests/support/repo_guard.py, run by
conftest around every session) sees what a test would leave behind, and only that."""
import os
import subprocess
import sys

import pytest
import redis as redis_lib

from ivr.config import ROOT
from tests.support import repo_guard
from tests.support.procs import RedisProcess


def tree(root):
    (root / "audio").mkdir()
    (root / "audio" / "README.md").write_text("prompt cache")
    (root / "ivr").mkdir()
    (root / "ivr" / "app.py").write_text("app = 1\n")
    return repo_guard.snapshot(root)


def test_a_clean_run_changes_nothing(tmp_path):
    before = tree(tmp_path)
    for skipped in (".git", ".venv", "ivr/__pycache__", ".pytest_cache", ".ruff_cache", "ivr.egg-info"):
        (tmp_path / skipped).mkdir(parents=True, exist_ok=True)
        (tmp_path / skipped / "x").write_text("tools write here")
    assert repo_guard.changes(before, repo_guard.snapshot(tmp_path)) == []


def test_created_changed_and_deleted_files_are_named(tmp_path):
    before = tree(tmp_path)
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "ivr.rdb").write_bytes(b"REDIS")
    (tmp_path / "audio" / "ab12.ul").write_bytes(b"\xff" * 160)
    (tmp_path / "ivr" / "app.py").write_text("app = 2  # longer\n")
    (tmp_path / "audio" / "README.md").unlink()
    assert repo_guard.changes(before, repo_guard.snapshot(tmp_path)) == [
        "created audio/ab12.ul", "created var/", "created var/ivr.rdb",
        "changed ivr/app.py", "deleted audio/README.md"]


def test_a_rewrite_of_the_same_size_is_a_change(tmp_path):
    before = tree(tmp_path)
    path = tmp_path / "ivr" / "app.py"
    stat = path.stat()
    path.write_text("app = 3\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert repo_guard.changes(before, repo_guard.snapshot(tmp_path)) == ["changed ivr/app.py"]


@pytest.mark.slow
def test_a_deployments_settings_do_not_reach_the_tests(tmp_path):
    """On the production box, with ivr.env sourced (REDIS_URL, TWILIO_AUTH_TOKEN), `make test` flushes
    its own Redis databases, never the hotline's: the deployment's variables are dropped at start."""
    production = RedisProcess(tmp_path / "production").start()
    try:
        db15 = redis_lib.Redis.from_url(production.url.rsplit("/", 1)[0] + "/15")
        db15.set("ivr:operator:alice", "the hotline's own data")
        env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_TEST_")}
        env.update(REDIS_URL=production.url, TWILIO_AUTH_TOKEN="p" * 32)
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "tests/test_queues.py::test_join_and_leave_go_through_the_call_script"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert "1 passed" in run.stdout
        assert db15.get("ivr:operator:alice") == b"the hotline's own data"
        assert redis_lib.Redis.from_url(production.url).dbsize() == 0            # nothing written in db 0 either
        db15.close()
    finally:
        production.stop()
