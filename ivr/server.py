"""Run the app: gunicorn for real service, a threaded loopback server for tools and tests."""
from __future__ import annotations

import threading

from werkzeug.serving import make_server


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


def run_gunicorn(app, host: str, port: int, workers: int = 1, threads: int = 64):
    """Production server. Threads, not processes, carry concurrent calls: media
    streams are long-lived sockets and decoding releases the GIL."""
    from gunicorn.app.base import BaseApplication

    class _App(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", threads)
            self.cfg.set("timeout", 0)  # media streams last as long as the call
            self.cfg.set("graceful_timeout", 30)
            self.cfg.set("accesslog", None)

        def load(self):
            return app

    _App().run()
