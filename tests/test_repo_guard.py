"""The check that tests write only under temporary folders (tests/support/repo_guard.py, run by
conftest around every session) sees what a test would leave behind, and only that."""
import os

from tests.support import repo_guard


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
