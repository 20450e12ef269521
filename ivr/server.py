"""Run the app: gunicorn for real service, a threaded loopback server for tools and tests."""
from __future__ import annotations

import gc
import signal
import threading
import time

from werkzeug.serving import make_server

# Set in a gunicorn worker when it is told to stop (SIGTERM): no new media streams, and the streams in
# progress hand their calls off at the next pause (StreamSession.drain, docs/reliability.md).
STOPPING = threading.Event()
GRACEFUL_TIMEOUT = 30  # seconds gunicorn waits for the calls in progress before it kills the worker


def _stop_streams_on_sigterm(worker):
    """gunicorn post_worker_init: chain SIGTERM so the worker's sessions learn the server is stopping.

    gunicorn's own handler (worker.handle_exit) stops accepting connections and waits up to
    graceful_timeout for the requests in progress; media streams are requests that last a whole
    call, so they must be told to end."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        STOPPING.set()
        if callable(previous):
            previous(signum, frame)
    signal.signal(signal.SIGTERM, on_term)


def _post_worker_init(worker):
    """gunicorn post_worker_init: streams learn of SIGTERM; the worker watches for flow reloads."""
    _stop_streams_on_sigterm(worker)
    worker.app.wsgi().extensions["ivr"].library.watch()


def _reload_on_hup(arbiter):
    """gunicorn when_ready: SIGHUP to the master means `ivr reload`, not gunicorn's restart of every
    worker (which would hand each speech call in progress to a person). The master checks the
    flows and asks the workers, through Redis, to load them (ivr/flow_versions.py)."""
    from .flow_versions import build, request_reload
    from .flows.loader import FlowError

    svc = arbiter.app.wsgi().extensions["ivr"]

    def handle_hup():
        cfg = svc.config
        try:
            version = build(cfg.flows_dir, cfg.data_dir / "classifiers")
        except FlowError as exc:
            arbiter.log.error("SIGHUP: flows refused, the workers keep what they serve:\n%s", exc)
            return
        try:
            request_reload(svc.redis, version.version)
        finally:
            svc.redis.connection_pool.disconnect()      # the master keeps no connection (ivr/redis_conn.py)
        arbiter.log.info("SIGHUP: flows %s requested", version.version)
    arbiter.handle_hup = handle_hup


# The embedded Redis under `ivr serve` (docs/reliability.md): the master looks this often whether its
# redis-server still listens, and starts it again on the same files when it died. More deaths than
# REVIVE_LIMIT within REVIVE_WINDOW seconds and the master stops with exit status 1 instead: a Redis
# that keeps dying needs a person, and the supervisor (systemd's Restart=) sees a failure.
REVIVE_EVERY = 1.0
REVIVE_LIMIT = 5
REVIVE_WINDOW = 600.0


def _revive_embedded_redis(arbiter):
    """gunicorn when_ready: the master keeps the embedded Redis running (nothing to do with REDIS_URL or
    sentinels: such a Redis is someone else's to restart, and the clients reconnect when it is back).

    The look happens in the master's own loop (its manage_workers, at most once a second), not on a
    thread: the master forks workers, and a thread holding a lock at a fork would leave the worker a
    lock nobody releases. Workers reconnect by themselves: the new server listens on the same socket."""
    from gunicorn.errors import HaltServer

    from .redis_conn import embedded_down, revive_embedded

    cfg = arbiter.app.wsgi().extensions["ivr"].config
    if cfg.redis_url or cfg.redis_sentinels:
        return
    manage = arbiter.manage_workers
    state = {"next": 0.0, "deaths": []}

    def manage_workers():
        now = time.monotonic()
        if now >= state["next"]:
            state["next"] = now + REVIVE_EVERY
            if embedded_down(cfg.data_dir):
                state["deaths"] = [t for t in state["deaths"] if now - t < REVIVE_WINDOW] + [now]
                if len(state["deaths"]) > REVIVE_LIMIT:
                    raise HaltServer(f"the embedded Redis died {len(state['deaths'])} times in "
                                     f"{REVIVE_WINDOW / 60:.0f} min; not starting it again", 1)
                try:
                    done = revive_embedded(cfg.data_dir)
                except Exception as exc:      # whatever stops the restart stops the server, in one line
                    raise HaltServer(f"the embedded Redis died and could not be started again: {exc}", 1) from exc
                if done:
                    arbiter.log.error("%s", done)
        manage()
    arbiter.manage_workers = manage_workers


def _when_ready(arbiter):
    _reload_on_hup(arbiter)
    _revive_embedded_redis(arbiter)


class LoopbackServer:
    """The app on a real HTTP socket in a background thread (simulator, tests)."""

    def __init__(self, app, host="127.0.0.1", port=0):
        self.httpd = make_server(host, port, app, threaded=True)
        self.port = self.httpd.server_port
        self.url = f"http://{host}:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="ivr-loopback", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port(host="127.0.0.1") -> int:
    import socket
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _gunicorn_logger():
    """gunicorn's logger, writing through the root handler (ivr/logs.py: text or JSON, one level)
    with an access line that keeps the query string and phone numbers out."""
    import datetime
    import logging

    from gunicorn.glogging import Logger

    from .logs import access_line

    class IvrLogger(Logger):
        def setup(self, cfg):
            super().setup(cfg)
            # gunicorn's own handlers off: its lines propagate to the root handler, in ivr's format.
            for log in (self.error_log, self.access_log):
                for handler in list(log.handlers):
                    log.removeHandler(handler)
                log.propagate = True
            self.error_log.setLevel(logging.getLogger().level)

        def access(self, resp, req, environ, request_time):
            if not self.access_log_enabled:
                return
            status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
            if isinstance(request_time, datetime.timedelta):
                ms = request_time.total_seconds() * 1000
            else:
                ms = float(request_time or 0) * 1000
            message, fields = access_line(req.method, req.path, status, getattr(resp, "sent", 0), ms)
            self.access_log.info("%s", message, extra=fields)

    return IvrLogger


# Files a worker keeps open besides its clients' connections and one Redis connection per thread:
# the listener, the poller and its pipe, logs, metrics files, prompt audio.
OWN_FILES = 128


def open_files_for(connections: int, threads: int) -> int:
    """Every connection is an open file. Raise this process's soft limit (the workers inherit it) to what
    `connections` need, as far as the hard limit allows; returns how many connections fit. (Below it,
    gunicorn's accept fails with EMFILE and the worker exits with every call it carries: measured with
    the open-files limit at 300, under 1,000 slow connections.)"""
    import resource

    need = connections + threads + OWN_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return connections
    raised = need if hard == resource.RLIM_INFINITY else min(need, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    return connections if raised >= need else max(0, raised - threads - OWN_FILES)


def run_gunicorn(app, host: str, port: int, workers: int = 1, threads: int = 64):
    """Production server. Threads, not processes, carry concurrent calls: media
    streams are long-lived sockets and decoding releases the GIL. The worker is gthread
    guarded against slow clients (ivr/worker.py), with the limits from the app's config."""
    import logging

    from gunicorn.app.base import BaseApplication

    from . import metrics, worker
    from .slots import ThreadShares

    cfg = app.extensions["ivr"].config
    connections = open_files_for(cfg.worker_connections, threads)
    if connections < cfg.worker_connections:
        logging.getLogger("ivr").warning(
            "the open-files limit (ulimit -n) holds %d connections per worker, not IVR_WORKER_CONNECTIONS=%d: "
            "raise LimitNOFILE", connections, cfg.worker_connections)
    worker.on_close = metrics.count_slow_client
    app.extensions["ivr"].shares = ThreadShares.of(threads)     # each forked worker counts its own
    worker.GuardedWorker.limits = worker.Limits(
        header_timeout=cfg.header_timeout, body_timeout=cfg.body_timeout, per_client=cfg.client_connections,
        max_waiting=max(1, worker.waiting_cap(connections, threads)), max_body=app.config["MAX_CONTENT_LENGTH"])

    class _App(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", worker.GuardedWorker)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_connections", connections)
            self.cfg.set("timeout", 0)  # media streams last as long as the call
            self.cfg.set("graceful_timeout", GRACEFUL_TIMEOUT)
            self.cfg.set("post_worker_init", _post_worker_init)
            self.cfg.set("when_ready", _when_ready)
            # One line per request through ivr's handler (the "-" only switches it on: see _gunicorn_logger).
            self.cfg.set("accesslog", "-" if cfg.access_log else None)
            self.cfg.set("logger_class", _gunicorn_logger())
            self.cfg.set("loglevel", cfg.log_level.lower())
            self.cfg.set("control_socket_disable", True)   # gunicorn 27's management socket: ivr needs none
            # A worker that died or was replaced: its open-stream gauge must stop counting.
            self.cfg.set("child_exit", lambda _server, w: metrics.mark_process_dead(w.pid))

        def load(self):
            return app

    # Everything loaded so far (flows, schemas, libraries) lives as long as the process: move it
    # out of the collector's sight, so full collections stay short and forked workers share it.
    gc.collect()
    gc.freeze()
    _App().run()
