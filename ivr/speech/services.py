"""What one server process needs to talk with callers: models, prompt audio, the listener design.

Created once per app (ivr.services.Services.speech). Models load on first use
or at start-up (`warm_up`), and are shared by every call of the process.
"""
from __future__ import annotations

import logging
import threading

from . import models as model_registry
from .endpoint import EndpointConfig
from .listener import Listener
from .models import Models
from .tts import PromptAudio

log = logging.getLogger("ivr.speech")


class SpeechServices:
    def __init__(self, config):
        self.config = config
        self.models = Models(config.models_dir)
        self.prompts = PromptAudio(config.audio_dir)
        self.endpoint = EndpointConfig(end_silence_ms=config.endpoint_silence_ms)
        # (model, lang, endpoint config) -> Listener for one call. The benchmark swaps in the
        # simpler designs it compares against (bench/designs.py); production keeps this one.
        self.listener = Listener.for_model
        self._warned = set()
        self._lock = threading.Lock()

    def available(self, lang: str) -> bool:
        return self.config.speech and self.models.available(lang)

    def speaks(self, lang: str, sid: str = "") -> bool:
        """Should a call in `lang` talk over a media stream? No model means the keypad,
        said once as a warning in the log (then at info level, per call)."""
        if not self.config.speech:
            return False
        if self.models.available(lang):
            return True
        with self._lock:
            first = lang not in self._warned
            self._warned.add(lang)
        log.log(logging.WARNING if first else logging.INFO,
                "call %s: no Vosk model for lang=%s (see `ivr models list`); using the keypad", sid, lang)
        return False

    def status(self, lang: str) -> str:
        """For /healthz: an operator sees at a glance which languages are spoken and which use keys."""
        if not self.config.speech:
            return "off (IVR_SPEECH=off): keypad"
        path = self.models.path(lang)
        if path is None:
            return "missing: keypad only (see `ivr models list`)"
        return "loaded" if model_registry.is_loaded(path) else "available: loads on the first call"

    def warm_up(self, flows, log_to=log) -> None:
        """Start-up work for a server: load each spoken language's model, render static prompts."""
        flows = list(flows)
        langs = sorted({lang for f in flows for lang in f.languages if self.available(lang)})
        for lang in langs:
            self.models.get(lang)
        new, old = self.prompts.prerender(flows)
        log_to.info("speech: models loaded for %s; prompts rendered %d, cached %d", ", ".join(langs) or "none",
                    new, old)
