"""Labelled evaluation sets: what callers said (audio and/or transcript) and what should happen.

Two file formats, described in docs/quality.md:

* YAML: a mapping with optional `flow`, `lang`, `min_accuracy`, `voice_speed` and a list
  `items` of {text, expected_intent, expected_queue, step?, audio?}; the older
  `sentences` list of {text, intent, queue} (tests/data/hotline_en_labelled.yaml) reads too.
* CSV with a header: audio,text,expected_intent,expected_queue[,step]; an empty cell is null.

`audio` paths are relative to the set file. An item without audio is spoken by
espeak-ng when the evaluation runs with a recognizer; the synthesized audio is
cached (by text, language, voice and speed), so only the first run pays for it.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..media.audio import read_ulaw_wav, write_ulaw_wav

NULLS = {"", "null", "none", "~"}


@dataclass(frozen=True)
class EvalItem:
    text: str                        # what the caller said (the reference transcript)
    expected_intent: str | None      # None: out of scope, the bot should clarify then hand off
    expected_queue: str | None       # urgent | normal | None (the bot serves the caller itself)
    step: str | None = None          # the step the caller answers; None: the flow's start step
    audio: Path | None = None        # a recording of the caller; None: synthesize from text
    line: int = 0                    # position in the set, for error messages


@dataclass
class EvalSet:
    path: Path
    items: list
    flow: str | None = None
    lang: str | None = None
    min_accuracy: float | None = None
    voice_speed: int | None = None
    extra: dict = field(default_factory=dict)


def _null(value):
    if value is None:
        return None
    value = str(value).strip()
    return None if value.lower() in NULLS else value


def _item(raw: dict, base: Path, n: int) -> EvalItem:
    if not isinstance(raw, dict):
        raise ValueError(f"item {n}: expected a mapping, got {raw!r}")
    text = str(raw.get("text") or "").strip()
    audio = _null(raw.get("audio"))
    if not text and not audio:
        raise ValueError(f"item {n}: needs `text` (the transcript) or `audio`")
    intent = raw["expected_intent"] if "expected_intent" in raw else raw.get("intent")
    queue = raw["expected_queue"] if "expected_queue" in raw else raw.get("queue")
    return EvalItem(text=text, expected_intent=_null(intent), expected_queue=_null(queue),
                    step=_null(raw.get("step")), audio=(base / audio) if audio else None, line=n)


def load_set(path) -> EvalSet:
    """Read a YAML or CSV set; ValueError names the item at fault."""
    path = Path(path)
    base = path.parent
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        return EvalSet(path, [_item(r, base, i + 2) for i, r in enumerate(rows)])
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(doc, list):
        doc = {"items": doc}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping with `items`")
    raw_items = doc.get("items") if doc.get("items") is not None else doc.get("sentences")
    if not raw_items:
        raise ValueError(f"{path}: no `items` (or `sentences`)")
    items = [_item(r, base, i + 1) for i, r in enumerate(raw_items)]
    known = {"items", "sentences", "flow", "lang", "min_accuracy", "voice_speed"}
    return EvalSet(path, items, flow=doc.get("flow"), lang=doc.get("lang"),
                   min_accuracy=float(doc["min_accuracy"]) if doc.get("min_accuracy") is not None else None,
                   voice_speed=doc.get("voice_speed"), extra={k: v for k, v in doc.items() if k not in known})


class AudioSource:
    """The caller's audio for an item, as 8 kHz mu-law: the recording, or espeak-ng speech cached on disk."""

    def __init__(self, cache_dir, lang: str, speed: int | None = None):
        self.cache_dir = Path(cache_dir)
        self.lang = lang
        self.speed = speed
        self.synthesized = 0
        self.cached = 0

    def cache_path(self, text: str) -> Path:
        from ..speech.tts import VOICES
        key = "\x1f".join(["espeak-ng", self.lang, VOICES.get(self.lang, self.lang), str(self.speed), text])
        return self.cache_dir / self.lang / (hashlib.sha256(key.encode("utf-8")).hexdigest()[:24] + ".wav")

    def get(self, item: EvalItem) -> bytes:
        if item.audio is not None:
            if not item.audio.is_file():
                raise FileNotFoundError(f"item {item.line}: audio file {item.audio} not found")
            from ..simulate.speaker import load_audio
            return load_audio(item.audio)
        path = self.cache_path(item.text)
        if path.is_file():
            self.cached += 1
            return read_ulaw_wav(path)
        from ..simulate.speaker import synthesize
        audio = synthesize(item.text, self.lang, self.speed)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        write_ulaw_wav(tmp, audio)
        tmp.replace(path)
        self.synthesized += 1
        return audio

    def generate(self, items) -> tuple:
        """Synthesize every item without audio into the cache; (new, already cached)."""
        for item in items:
            self.get(item)
        return self.synthesized, self.cached
