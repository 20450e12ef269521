"""The TLS proxies of deploy/ (Caddy with its internal CA, nginx with a self-signed certificate) run
from the repository's own files in front of a test server. Each chooses its port first: the server
needs the proxy's URL (PUBLIC_URL) before it starts."""
from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
from pathlib import Path

from ivr.config import ROOT
from ivr.server import free_port
from tests.support.procs import kill_group, or_stop, wait_for

CADDYFILE = ROOT / "deploy" / "Caddyfile"
NGINX_SITE = ROOT / "deploy" / "nginx.conf"


class _Proxy:
    name = "proxy"

    def __init__(self, workdir: Path):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"https://localhost:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"{self.name}-", suffix=".log", delete=False)
        self.proc = None
        self.ca = None                  # the certificate a client must trust

    def _run(self, argv, env=None):
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        or_stop(self, lambda: wait_for(self._ready, what=self.name, timeout=30))
        return self

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited: {self.output()[-3000:]}")
        if self.ca is None or not Path(self.ca).exists():
            return False
        try:
            ctx = ssl.create_default_context(cafile=str(self.ca))
            with socket.create_connection(("127.0.0.1", self.port), 0.5) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost"):
                    return True
        except (OSError, ssl.SSLError):
            return False

    def output(self) -> str:
        return Path(self.log.name).read_text()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            kill_group(self.proc)


class Caddy(_Proxy):
    """`caddy run` on deploy/Caddyfile with IVR_TLS=internal; its storage (and CA) under workdir."""
    name = "caddy"

    def start(self, upstream: str):
        binary = shutil.which("caddy") or "/usr/bin/caddy"
        home = self.dir / "home"
        env = dict(os.environ, HOME=str(home), XDG_DATA_HOME=str(home / "data"),
                   XDG_CONFIG_HOME=str(home / "config"), IVR_SITE=f"localhost:{self.port}",
                   IVR_UPSTREAM=upstream, IVR_TLS="internal", IVR_HTTP_PORT=str(free_port()),
                   IVR_CADDY_ADMIN="off")
        self.ca = home / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
        return self._run([binary, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"], env)


# What the test changes in deploy/nginx.conf: each must occur exactly once, so the file under test is
# the shipped one but for addresses and the certificate.
def nginx_site(port: int, redirect_port: int, upstream: str, cert: Path, key: Path) -> str:
    text = NGINX_SITE.read_text()
    swaps = {
        "server 127.0.0.1:5000;": f"server {upstream};",
        "listen 80;": f"listen 127.0.0.1:{redirect_port};",
        "listen [::]:80;\n": "",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{port} ssl http2;",
        "listen [::]:443 ssl http2;\n": "",
        "/etc/letsencrypt/live/hotline.example.com/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/hotline.example.com/privkey.pem": str(key),
    }
    for old, new in swaps.items():
        assert text.count(old) == 1, f"deploy/nginx.conf: expected {old!r} once"
        text = text.replace(old, new)
    return text


class Nginx(_Proxy):
    """nginx running deploy/nginx.conf inside a minimal main configuration, with a self-signed
    certificate for localhost made by openssl."""
    name = "nginx"

    def start(self, upstream: str):
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        cert, key = self.dir / "localhost.crt", self.dir / "localhost.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        site = self.dir / "site.conf"
        site.write_text(nginx_site(self.port, free_port(), upstream, cert, key))
        temp = self.dir / "temp"
        temp.mkdir(exist_ok=True)
        main = self.dir / "nginx.conf"
        user = "user root root;\n" if os.geteuid() == 0 else ""     # workers write the temp folders here
        main.write_text(
            f"{user}daemon off;\nworker_processes 1;\npid {self.dir}/nginx.pid;\nerror_log stderr warn;\n"
            "events { worker_connections 512; }\n"
            f"http {{\n  access_log {self.dir}/access.log;\n"
            + "".join(f"  {kind}_temp_path {temp}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi",
                                                                            "uwsgi", "scgi"))
            + f"  include {site};\n}}\n")
        self.ca = cert
        return self._run([binary, "-p", str(self.dir), "-c", str(main), "-e", "stderr"])


PROXIES = {"caddy": Caddy, "nginx": Nginx}


def browser(ca, source_address: str | None = None):
    """A requests session trusting only `ca`, its connections made from `source_address` (another
    loopback address than the proxy's own, so the two can be told apart)."""
    import requests
    from requests.adapters import HTTPAdapter

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            # An SSL context of our own: requests' `verify=<file>` alone did not trust Caddy's chain.
            kwargs["ssl_context"] = ssl.create_default_context(cafile=str(ca))
            if source_address:
                kwargs["source_address"] = (source_address, 0)
            super().init_poolmanager(*args, **kwargs)

    session = requests.Session()
    session.mount("https://", Adapter())
    return session
