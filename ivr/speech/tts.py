"""Bot prompts as 8 kHz mu-law audio, rendered offline and cached by content hash.

The voice is espeak-ng. Every render goes through one worker thread: the
pyttsx3 engine is a process-wide singleton and not thread-safe (renders from
several threads end up in one file). Static prompts are rendered at start-up
(and by `ivr render-audio`); dynamic ones (an order's status) on demand
through the same worker. sox converts with -D (no dither) so the same text
always gives the same bytes, and at vol 0.8 so loud syllables do not clip.

The worker calls the espeak-ng program rather than pyttsx3 when it is
installed: pyttsx3 2.99's espeak driver leaves samples of the previous
render at the start of the next one (measured: 12-24 bytes of full-scale
clicks, different on every run), so its output is neither clean nor
reproducible after the first render of a process. pyttsx3 remains the
fallback where the espeak-ng program is missing.
"""
from __future__ import annotations

import hashlib
import logging
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path

from .. import faults

log = logging.getLogger("ivr.tts")

PIPELINE = "espeak-ng/sox-D-vol0.8/ulaw8k/v1"   # part of the cache key: change it to re-render
RATE_WPM = 165                # a little slower than espeak's 175: phone lines are narrow
VOLUME = 0.8
# espeak-ng voice per flow language (pyttsx3 voice ids are espeak voice names).
VOICES = {"en": "en-us", "ko": "ko", "de": "de", "fr": "fr", "es": "es", "ja": "ja"}


class TTSError(RuntimeError):
    pass


def _quiet_pyttsx3():
    # The espeak driver print()s "Audio saved to ..." on stdout, which would
    # corrupt `ivr simulate --json`; shadow print in that module only.
    try:
        from pyttsx3.drivers import espeak as drv
        drv.print = lambda *a, **k: None
    except Exception:  # noqa: BLE001 - cosmetic only
        pass


def _wait_saved(engine, path: Path, timeout: float = 10.0) -> bool:
    """runAndWait can return before espeak's callback has written the file (seen on the
    first renders of a process), so wait for the driver to finish and the file to settle."""
    driver = getattr(getattr(engine, "proxy", None), "_driver", None)
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        size = path.stat().st_size if path.is_file() else -1
        if size > 44 and size == last and not getattr(driver, "_speaking", False):
            return True
        last = size
        time.sleep(0.01)
    return False


def _espeak_cli(text: str, voice: str, path: Path) -> None:
    """Same engine without pyttsx3: the fallback when the driver misbehaves."""
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(RATE_WPM), "-w", str(path), text],
                   check=True, capture_output=True, timeout=60)


class _Worker:
    """The one thread that owns the pyttsx3 engine."""

    _instance = None
    _lock = threading.Lock()

    @classmethod
    def get(cls):
        with cls._lock:
            # After a fork (gunicorn) the parent's thread is gone: start our own.
            if cls._instance is None or cls._instance.pid != os.getpid():
                cls._instance = cls()
            return cls._instance

    def __init__(self):
        self.pid = os.getpid()
        self.q = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="ivr-tts", daemon=True)
        self.thread.start()

    def render_wav(self, text: str, voice: str, path: Path) -> None:
        fut = Future()
        self.q.put((text, voice, path, fut))
        fut.result(timeout=60)

    def _run(self):
        engine = None
        while True:
            text, voice, path, fut = self.q.get()
            try:
                if shutil.which("espeak-ng"):
                    _espeak_cli(text, voice, path)
                    fut.set_result(None)
                    continue
                import pyttsx3
                _quiet_pyttsx3()
                if engine is None:
                    engine = pyttsx3.init("espeak")
                engine.setProperty("voice", voice)
                engine.setProperty("rate", RATE_WPM)
                engine.setProperty("volume", 1.0)
                for _ in range(2):
                    engine.save_to_file(text, str(path))
                    engine.runAndWait()
                    if _wait_saved(engine, path):
                        break
                else:
                    log.warning("pyttsx3 produced no audio for a %d-character prompt; using espeak-ng directly",
                                len(text))
                    engine = None      # start a fresh driver next time
                    _espeak_cli(text, voice, path)
                if not path.is_file() or path.stat().st_size <= 44:
                    raise TTSError(f"no audio for {text[:40]!r}")
                fut.set_result(None)
            except Exception as exc:  # noqa: BLE001 - reported to the caller's thread
                fut.set_exception(exc)


def wav_to_ulaw(src: Path, volume: float = VOLUME) -> bytes:
    """Any WAV -> raw 8 kHz mono mu-law, reproducibly (no dither)."""
    if not shutil.which("sox"):
        raise TTSError("sox is not installed (apt-get install sox)")
    res = subprocess.run(["sox", "-D", "-V1", str(src), "-t", "raw", "-r", "8000", "-c", "1", "-e", "mu-law",
                          "-", "vol", str(volume)], capture_output=True, timeout=60)
    if res.returncode != 0:
        raise TTSError(f"sox failed: {res.stderr.decode(errors='replace')[:200]}")
    return res.stdout


class PromptAudio:
    """Text -> mu-law bytes, through a disk cache in audio_dir shared by all processes."""

    def __init__(self, audio_dir, rate: int = RATE_WPM):
        self.dir = Path(audio_dir)
        self.rate = rate
        self._mem = {}
        self._mem_lock = threading.Lock()

    def voice(self, lang: str) -> str:
        return VOICES.get(lang, lang)

    def key(self, text: str, lang: str) -> str:
        raw = "\x1f".join([PIPELINE, lang, self.voice(lang), str(self.rate), str(VOLUME), text])
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]

    def path(self, text: str, lang: str) -> Path:
        return self.dir / f"{self.key(text, lang)}.ul"

    def cached(self, text: str, lang: str) -> bool:
        return self.path(text, lang).is_file()

    def get(self, text: str, lang: str) -> bytes:
        """Audio for a prompt; renders (serialized) on a cache miss."""
        faults.inject("tts_error")
        k = self.key(text, lang)
        data = self._mem.get(k)
        if data is not None:
            return data
        path = self.dir / f"{k}.ul"
        if not path.is_file():
            self._render(text, lang, path)
        data = path.read_bytes()
        with self._mem_lock:
            if len(self._mem) > 2000:
                self._mem.clear()
            self._mem[k] = data
        return data

    def _render(self, text: str, lang: str, path: Path) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="ivr-tts-") as tmp:
            wav = Path(tmp) / "prompt.wav"
            _Worker.get().render_wav(text, self.voice(lang), wav)
            data = wav_to_ulaw(wav)
        # Atomic: another process may be rendering the same prompt.
        part = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.part")
        part.write_bytes(data)
        os.replace(part, path)

    def prerender(self, flows, langs=None) -> tuple:
        """Render every static prompt of these flows; returns (rendered, already cached)."""
        new = old = 0
        for text, lang in static_prompts(flows):
            if langs is not None and lang not in langs:
                continue
            if self.cached(text, lang):
                old += 1
                continue
            self.get(text, lang)
            new += 1
        return new, old


def static_prompts(flows):
    """(text, lang) of every prompt a flow can speak that has no {placeholder} in it: each
    message and step prompt, in each of its wordings (speech, keypad) and count forms."""
    from ..flows.model import MESSAGES

    def texts(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from texts(v)
        elif value:
            yield value

    seen = set()
    for flow in flows:
        for lang in flow.languages:
            fields = [flow.messages.get(name, {}).get(lang) for name in MESSAGES]
            for step in flow.steps.values():
                fields += [f.get(lang) for f in (step.say, step.clarify, step.invalid, step.more)]
            for text in (t for value in fields for t in texts(value)):
                if "{" not in text and (text, lang) not in seen:
                    seen.add((text, lang))
                    yield text, lang
