"""`ivr models download`: a real HTTP server on loopback serves small model archives; the download
is checksum-verified and installed atomically, or refused leaving nothing behind."""
import hashlib
import io
import os
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ivr.speech.models import SPECS, ModelError, ModelSpec, download, verify

NAME = "vosk-model-test-0.1"


def model_zip(name=NAME) -> bytes:
    """A tiny archive shaped like a Vosk model (the files `verify` looks for)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path in ("am/final.mdl", "conf/model.conf", "graph/HCLr.fst", "graph/Gr.fst", "README"):
            z.writestr(f"{name}/{path}", f"{path}\n" * 50)
    return buf.getvalue()


class Served:
    """path -> (body, Content-Length to announce, bytes to actually send before closing)."""

    def __init__(self):
        self.files, self.requests = {}, []


@pytest.fixture
def http():
    served = Served()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            served.requests.append(self.path)
            if self.path not in served.files:
                self.send_error(404)
                return
            body, length, cut = served.files[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    served.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield served
    server.shutdown()
    server.server_close()


def serve_file(http, path, body, cut=None):
    http.files[path] = (body, len(body), len(body) if cut is None else cut)
    return http.base + path


def spec(url, body):
    return ModelSpec("en", NAME, "download", url=url, size=len(body), sha256=hashlib.sha256(body).hexdigest())


def leftovers(models_dir):
    return sorted(p.name for p in models_dir.iterdir()) if models_dir.exists() else []


def test_download_verifies_and_installs(http, tmp_path):
    body = model_zip()
    path = download("en", tmp_path / "models", spec=spec(serve_file(http, "/m.zip", body), body))
    assert path == tmp_path / "models" / NAME and verify(path) == []
    assert leftovers(tmp_path / "models") == [NAME]            # no temporary file or folder left


def test_bad_checksum_is_refused_and_nothing_installed(http, tmp_path):
    body = model_zip()
    wrong = ModelSpec("en", NAME, "download", url=serve_file(http, "/m.zip", body), sha256="0" * 64)
    with pytest.raises(ModelError, match="checksum mismatch"):
        download("en", tmp_path / "models", spec=wrong)
    assert leftovers(tmp_path / "models") == []


def test_interrupted_download_leaves_nothing_half_installed(http, tmp_path):
    body = model_zip()
    url = serve_file(http, "/m.zip", body, cut=len(body) // 2)     # the connection drops half way
    with pytest.raises(ModelError):
        download("en", tmp_path / "models", spec=spec(url, body))
    assert leftovers(tmp_path / "models") == []


def test_archive_that_is_no_model_is_refused(http, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"{NAME}/README", "not a model")
    body = buf.getvalue()
    with pytest.raises(ModelError, match="incomplete model"):
        download("en", tmp_path / "models", spec=spec(serve_file(http, "/m.zip", body), body))
    assert leftovers(tmp_path / "models") == []


def _ivr(*args, **env):
    return subprocess.run([sys.executable, "-m", "ivr.cli", *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **env))


@pytest.mark.slow
def test_cli_fetches_the_registry_model_from_the_configured_base(http, tmp_path):
    """IVR_MODEL_URL_BASE points the registry at our server: the official name is asked for, and an
    archive that is not the official one (its SHA-256 differs) is refused, exit 1, nothing installed."""
    name = SPECS["en"].name
    serve_file(http, f"/{name}.zip", model_zip(name))
    models = tmp_path / "models"
    res = _ivr("models", "download", "en", IVR_MODELS_DIR=str(models), IVR_MODEL_URL_BASE=http.base)
    assert res.returncode == 1 and f"/{name}.zip" in http.requests
    assert "not installed" in res.stderr and leftovers(models) == []


@pytest.mark.slow
def test_setup_goes_on_keypad_only_with_one_line_when_there_is_no_network(tmp_path):
    models = tmp_path / "models"
    res = _ivr("models", "download", "en", "--optional", IVR_MODELS_DIR=str(models),
               IVR_MODEL_URL_BASE="http://127.0.0.1:9")       # nothing listens on the discard port
    assert res.returncode == 0 and len(res.stdout.strip().splitlines()) == 1
    assert "keypad" in res.stdout and "ivr models download en" in res.stdout
    assert leftovers(models) == []
