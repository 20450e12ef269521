"""Tests write only under temporary folders: the working tree before and after a test run.

tests/conftest.py takes a snapshot when the session starts and compares it with the tree at
the end; a file created, changed or deleted anywhere in the repository fails the run, by name.
Left out: what the tools write for themselves (git, the virtualenv, bytecode, pytest's and
ruff's caches, the editable install's metadata).
"""
from __future__ import annotations

import os
from pathlib import Path

SKIP_DIRS = frozenset({".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache"})
SKIP_SUFFIXES = (".egg-info",)


def snapshot(root) -> dict:
    """Every file and folder under `root` -> (modification time in ns, size); folders -> None."""
    root = Path(root)
    entries = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.endswith(SKIP_SUFFIXES)]
        for name in dirnames:
            entries[os.path.relpath(os.path.join(dirpath, name), root) + "/"] = None
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:      # deleted while we looked: the comparison will say so
                continue
            entries[os.path.relpath(path, root)] = (st.st_mtime_ns, st.st_size)
    return entries


def changes(before: dict, after: dict) -> list:
    """What happened between two snapshots, one line per path: created, changed or deleted."""
    out = [f"created {p}" for p in sorted(after.keys() - before.keys())]
    out += [f"changed {p}" for p in sorted(before.keys() & after.keys()) if before[p] != after[p]]
    out += [f"deleted {p}" for p in sorted(before.keys() - after.keys())]
    return out
