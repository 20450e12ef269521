"""The flow versions a server process serves, and how a reload reaches every process without a restart.

A version is the flows folder as it was read: every flow, its data and training files, named by
a hash of their content. A process keeps the version it serves new calls (`current`) and every
older version a call in progress still runs on: a call's record names its version
(`flow_version`), and each turn - a key press on a webhook, words on a media stream - resumes on
that version's engine. So a changed flow reaches the next caller, never the middle of a
conversation (a step renamed or removed under a live call would otherwise hand it to a person).

How a reload travels: `ivr reload` (or SIGHUP to the gunicorn master, ivr/server.py) validates the
folder, trains what the flows need (the classifier cache), and sets one Redis key,
`ivr:flows:reload`. Every server process reads that key every WATCH_EVERY seconds on a background
thread (`watch`; one GET per period, none on a call's path, which keeps its two Redis round trips);
a new value starts a load on that thread, so no caller waits for parsing or training. New calls
keep the old version until the new one is ready. A folder that fails validation is refused by
`ivr reload` with its problems (file:line), and a process that finds it broken anyway (edited after
the check) keeps serving what it has and says so in its `ivr:flows:serving:{process}` entry, which
`ivr reload` reads to report what each process serves. An entry lives LIVE_SECONDS unless its
process renews it (EXPIRE: the value changes only with what the process serves), so the entries
are the running processes.

Old versions are dropped once no active call names them (checked at most every PRUNE_EVERY s).
A version a process never had (the call began on another server, before a reload this process
missed, or before a restart) resumes on the current one; the engine hands a call whose step is
gone to a person.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import redis as redis_lib

from . import keys
from .config import default_flow_problem
from .flows.engine import Engine
from .flows.loader import FlowError, Problem, load_flows

log = logging.getLogger("ivr.flows")

PRUNE_EVERY = 10.0      # seconds between looks for versions no active call uses
WATCH_EVERY = 2.0       # seconds between two reads of the reload key
LIVE_SECONDS = 30       # a process's entry in ivr:flows:serving:* outlives its last renewal by this


_UNREAD = object()


def folder_version(flows_dir) -> str:
    """A short hash of every file under the flows folder (flows, data, training): what was read."""
    root = Path(flows_dir)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


@dataclass
class Version:
    version: str
    flows: dict      # flow id -> Flow
    engines: dict    # flow id -> Engine
    loaded_at: float


def build(flows_dir, cache_dir, default_flow: str | None = None) -> Version:
    """Load and validate the folder, build its engines (training classifiers not yet cached).
    FlowError lists every problem; a folder that changed while it was read is refused too, and so is
    one without the `default_flow` (IVR_DEFAULT_FLOW), when given."""
    version = folder_version(flows_dir)
    flows = load_flows(flows_dir)
    if folder_version(flows_dir) != version:
        raise FlowError([Problem(str(flows_dir), 1, "flow files changed while they were read; try again")])
    problem = default_flow and default_flow_problem(default_flow, flows, flows_dir)
    if problem:
        raise FlowError([Problem(str(flows_dir), 1, problem)])
    for flow in flows.values():
        flow.version = version
    engines = {fid: Engine(flow, cache_dir=cache_dir) for fid, flow in flows.items()}
    return Version(version, flows, engines, time.time())


def request_reload(redis, version: str, clock=time.time) -> str:
    """Ask every process to load the flows folder again; returns the request's token."""
    token = json.dumps({"version": version, "at": clock()})
    redis.set(keys.FLOWS_RELOAD, token)
    return token


def serving(redis) -> dict:
    """What each running process reported: process id -> {version, at, token, error?}."""
    names = list(redis.scan_iter(match=keys.FLOWS_SERVING_MATCH, count=1000))
    prefix = len(keys.flows_serving(""))
    return {name[prefix:]: json.loads(value) for name, value in zip(names, redis.mget(names) if names else [])
            if value}


class FlowVersions:
    def __init__(self, redis, flows_dir, cache_dir, flows: dict, engines: dict | None = None,
                 clock=time.time, on_loaded=None, default_flow: str | None = None):
        """`flows` (and their `engines`, when already built) are what the process starts with;
        `on_loaded(version)` runs on the loading thread after a new version is in place; a reload
        without `default_flow` among its flows is refused."""
        self.redis = redis
        self.flows_dir = Path(flows_dir)
        self.cache_dir = cache_dir
        self.default_flow = default_flow
        self.clock = clock
        self.on_loaded = on_loaded
        version = folder_version(flows_dir) if self.flows_dir.is_dir() else "0"
        for flow in flows.values():
            flow.version = version
        if engines is None:
            engines = {fid: Engine(flow, cache_dir=cache_dir) for fid, flow in flows.items()}
        self._current = Version(version, flows, engines, clock())
        self._versions = {version: self._current}
        self._lock = threading.Lock()
        self._loading = False
        self._last_prune = 0.0
        self._watcher = None
        self._reported = None    # the entry last written to ivr:flows:serving:{process}
        self.last_error = None
        # The reload request last seen, and the one the current version (or its refusal) answers. Read
        # at the first poll, not here: `ivr serve` builds this before forking, and a connection left
        # open in the master would keep the embedded Redis from saving and stopping when it exits.
        self._seen = self._answered = _UNREAD

    @property
    def worker(self) -> str:
        """This process (the pid now: gunicorn forks the workers after the library is built)."""
        return f"{socket.gethostname()}:{os.getpid()}:{id(self) & 0xffff:04x}"

    # -- what calls use ------------------------------------------------------------------------
    @property
    def current(self) -> Version:
        return self._current

    def versions(self) -> list:
        return sorted(self._versions)

    def get(self, version: str | None) -> Version:
        """The version a call started on, else (unknown here) the current one."""
        return self._versions.get(version or "") or self._current

    def engine(self, flow_id: str, version: str | None = None) -> Engine:
        found = self.get(version)
        return found.engines.get(flow_id) or self._current.engines[flow_id]

    # -- reloads -------------------------------------------------------------------------------
    def poll(self) -> None:
        """One GET: a new reload request starts a load in the background (the watcher calls this)."""
        try:
            token = self.redis.get(keys.FLOWS_RELOAD)
        except redis_lib.RedisError:
            return
        if self._seen is _UNREAD:
            # What was asked before this process looked: its folder, read at start, is at least as new.
            self._seen = self._answered = token
        if token is not None and token != self._seen:
            with self._lock:
                if self._loading or token == self._seen:
                    return
                self._seen, self._loading = token, True
            threading.Thread(target=self._load, name="ivr-flow-reload", daemon=True).start()
        if len(self._versions) > 1 and self.clock() - self._last_prune >= PRUNE_EVERY:
            self.prune()

    def _load(self) -> None:
        token = self._seen
        try:
            new = build(self.flows_dir, self.cache_dir, self.default_flow)
        except FlowError as exc:
            self.last_error, self._answered = str(exc), token
            log.error("flow reload refused, still serving %s:\n%s", self._current.version, exc)
            self._report(error=str(exc))
            return
        except Exception as exc:  # a reload must never take the serving version down
            self.last_error, self._answered = f"{type(exc).__name__}: {exc}", token
            log.exception("flow reload failed, still serving %s", self._current.version)
            self._report(error=self.last_error)
            return
        finally:
            with self._lock:
                self._loading = False
        if self.on_loaded is not None:
            try:
                self.on_loaded(new)
            except Exception:  # e.g. prompts not rendered ahead: they render on demand
                log.exception("after loading flows %s", new.version)
        with self._lock:
            old = self._current
            self._versions[new.version] = new
            self._current = new
        self.last_error, self._answered = None, token
        log.info("flows %s -> %s (%s); calls in progress stay on theirs", old.version, new.version,
                 ", ".join(sorted(new.flows)))
        self._report()
        self.prune()

    def _report(self, error: str | None = None) -> None:
        """This process's entry: written when what it serves changed, else only kept alive."""
        entry = {"version": self._current.version, "token": None if self._answered is _UNREAD else self._answered}
        if error:
            entry["error"] = error
        key = keys.flows_serving(self.worker)
        try:
            if entry == self._reported:
                # Renewed only: gone (a flushed or restarted Redis), it comes back with the next change.
                self.redis.expire(key, LIVE_SECONDS)
                return
            self.redis.set(key, json.dumps(dict(entry, at=self.clock())), ex=LIVE_SECONDS)
            self._reported = entry
        except redis_lib.RedisError:
            pass

    def prune(self) -> None:
        """Drop old versions no active call names any more."""
        self._last_prune = self.clock()
        try:
            sids = self.redis.zrange(keys.ACTIVE, 0, -1)
            pipe = self.redis.pipeline(transaction=False)
            for sid in sids:
                pipe.hget(keys.call(sid), "flow_version")
            used = set(pipe.execute()) if sids else set()
        except redis_lib.RedisError:
            return
        with self._lock:
            for version in list(self._versions):
                if version != self._current.version and version not in used:
                    del self._versions[version]
                    log.info("flows %s dropped: no call in progress uses it", version)

    def watch(self, every: float = WATCH_EVERY) -> None:
        """Poll in the background too, so an idle process is ready before its next call
        (a gunicorn worker starts this after the fork: threads do not survive one)."""
        if self._watcher is not None:
            return
        stop = self._stop = threading.Event()

        def run():
            while not stop.is_set():
                self.poll()
                self._report(error=self.last_error)
                stop.wait(every)
        self._watcher = threading.Thread(target=run, name="ivr-flow-watch", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        """End the watcher (a server shutting down; tests)."""
        if self._watcher is not None:
            self._stop.set()
            self._watcher.join(5)
            self._watcher = None
