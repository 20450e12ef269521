"""Backups of what ivr keeps in Redis that cannot be rebuilt: one file, restored into an empty Redis.

What is state (kept): operator accounts, the server secret (without it every keyed hash and every
dashboard session is void, ivr/keyring.py), agents, open callbacks and voicemails with the call
records they point at, ratings, the unanswered log, and the history the dashboard reports on (call
records and transcripts, waits, counts, events, audit). What is ephemeral (left out, EPHEMERAL):
what belongs to the calls and logins of the moment - active calls, queue mirrors, agents on a call
or polling, agent-line admissions, dashboard sessions and login lock-outs, the queue sweeper's
marker, flow reload requests, the 24-hour repeat-caller hints. Restored, these would describe
callers and operators who are long gone. A new key is state unless it is listed here.

Format: JSON lines, written 0600 (it holds password hashes, the secret and personal data). The
first line says what the file is; then one line per key: its name, Redis's own DUMP of it (base64)
and the moment it expires (absolute, ms; restored with ABSTTL, so a backup restored a day later
still forgets records on their day). DUMP/RESTORE work the same on the embedded Redis and on any
external one (REDIS_URL), but a DUMP only restores into a Redis of the same or a newer version.
The copy is taken key by key while the server runs: each key is consistent, the set is a few
milliseconds wide.
"""
from __future__ import annotations

import base64
import fnmatch
import json
import os
import time
from pathlib import Path

from . import keys

FORMAT = "ivr-backup"
VERSION = 1

EPHEMERAL = (
    keys.ACTIVE, keys.queue("*"), keys.AGENTS_SEEN, keys.AGENTS_CALLS, keys.agent_line("*"),
    keys.SESSIONS_MATCH, f"{keys.PREFIX}:login_failures:*", keys.QUEUE_SWEEP,
    keys.FLOWS_RELOAD, keys.FLOWS_SERVING_MATCH, f"{keys.PREFIX}:caller:*",
)


class BackupError(Exception):
    """The file is not an ivr backup, or the Redis to restore into is not empty."""


def is_state(key: str) -> bool:
    return key.startswith(keys.PREFIX + ":") and not any(fnmatch.fnmatchcase(key, p) for p in EPHEMERAL)


def backup(redis, path, clock=time.time) -> int:
    """Write every state key to `path` (0600, replaced atomically); returns how many."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    count = 0
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps({"format": FORMAT, "version": VERSION, "created_at": clock()}) + "\n")
            for key in sorted(redis.scan_iter(match=keys.PREFIX + ":*", count=1000)):
                if not is_state(key):
                    continue
                # DUMP alone: redis-py leaves its bytes undecoded only outside a pipeline.
                dump = redis.dump(key)
                pipe = redis.pipeline(transaction=True)     # the TTL and the server's clock at once
                pipe.pttl(key)
                pipe.time()
                ttl_ms, (secs, micros) = pipe.execute()
                if dump is None:
                    continue            # expired or deleted since the scan saw it
                expires_at = secs * 1000 + micros // 1000 + ttl_ms if ttl_ms > 0 else None
                out.write(json.dumps({"key": key, "expires_at_ms": expires_at,
                                      "dump": base64.b64encode(dump).decode()}) + "\n")
                count += 1
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def read(path) -> tuple:
    """(header, [entries]); BackupError for anything that is not an ivr backup."""
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    try:
        header = json.loads(lines[0]) if lines else {}
        entries = [json.loads(line) for line in lines[1:]]
    except ValueError as exc:
        raise BackupError(f"{path} is not an ivr backup: {exc}") from None
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise BackupError(f"{path} is not an ivr backup (version {VERSION})")
    return header, entries


def existing(redis) -> int:
    """How many ivr keys the Redis holds already (a restore wants none)."""
    return sum(1 for _ in redis.scan_iter(match=keys.PREFIX + ":*", count=1000))


def restore(redis, path, force: bool = False) -> tuple:
    """Put the backup's keys back: (restored, skipped because they expired meanwhile). Refuses a
    Redis that already holds ivr keys unless `force`, which replaces the keys the backup has and
    leaves the others."""
    _, entries = read(path)
    found = existing(redis)
    if found and not force:
        raise BackupError(f"this Redis already holds {found} ivr key(s); restore into an empty one "
                          "(or --force to replace the keys the backup has)")
    secs, micros = redis.time()
    now_ms = secs * 1000 + micros // 1000       # the clock the expiry times were read on: Redis's
    restored = skipped = 0
    pipe = redis.pipeline(transaction=False)
    for entry in entries:
        expires = entry.get("expires_at_ms")
        if expires is not None and expires <= now_ms:
            skipped += 1
            continue
        pipe.restore(entry["key"], expires or 0, base64.b64decode(entry["dump"]), replace=force,
                     absttl=expires is not None)
        restored += 1
        if len(pipe) >= 500:
            pipe.execute()
    pipe.execute()
    return restored, skipped
