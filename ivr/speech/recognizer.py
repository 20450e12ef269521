"""One call's speech recognizer: grammar for directed steps, free-form where open.

Each call owns its KaldiRecognizer(s); the model behind them is shared. All
methods run on the call's own thread, and Vosk's C calls release the GIL,
so calls decode in parallel on every core.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

from .. import faults
from ..media.audio import to_pcm16
from . import grammar

# A grammar result below this mean word confidence is a guess forced into the
# grammar; on an open step the free-form transcript is then the better text.
GRAMMAR_TRUST = 0.85


@dataclass(frozen=True)
class Heard:
    text: str
    confidence: float | None
    source: str             # "grammar" | "free" | ""


def mean_confidence(result: dict) -> float | None:
    words = result.get("result") or []
    if not words:
        return None
    return round(sum(w.get("conf", 0.0) for w in words) / len(words), 3)


class Recognizer:
    def __init__(self, model, lang: str, sample_rate: int = 8000):
        import vosk
        self._vosk = vosk
        self.model = model
        self.lang = lang
        self.rate = sample_rate
        self.grammar_rec = None
        self.free_rec = None
        self.phrases = []
        self.audio_seconds = 0.0   # audio decoded
        self.decode_seconds = 0.0  # thread CPU time spent decoding

    def in_vocab(self, word: str) -> bool:
        return self.model.vosk_model_find_word(word) >= 0

    def listen(self, phrases, open_: bool) -> None:
        """Prepare for the next utterance at a step (off the latency path: after the reply is queued).

        phrases: the step's grammar candidates (see grammar.for_step); open_: also decode free-form.
        """
        t = time.thread_time()
        phrases = grammar.in_vocabulary(phrases, self.in_vocab)
        if phrases != self.phrases or (phrases and self.grammar_rec is None):
            self.phrases = phrases
            self.grammar_rec = None
            if phrases:
                self.grammar_rec = self._vosk.KaldiRecognizer(self.model, self.rate, grammar.to_json(phrases))
                self.grammar_rec.SetWords(True)
        elif self.grammar_rec is not None:
            self.grammar_rec.Reset()
        want_free = open_ or not phrases
        if want_free and self.free_rec is None:
            self.free_rec = self._vosk.KaldiRecognizer(self.model, self.rate)
            self.free_rec.SetWords(True)
        elif not want_free:
            self.free_rec = None
        elif self.free_rec is not None:
            self.free_rec.Reset()
        self.decode_seconds += time.thread_time() - t

    def accept(self, ulaw: bytes) -> None:
        pcm = to_pcm16(ulaw)
        t = time.thread_time()
        for kaldi in (self.grammar_rec, self.free_rec):
            if kaldi is not None:
                kaldi.AcceptWaveform(pcm)
        self.decode_seconds += time.thread_time() - t
        self.audio_seconds += len(ulaw) / self.rate

    def partial(self) -> str:
        """Words so far; the grammar recognizer's when it has one (cheap), else free-form."""
        kaldi = self.grammar_rec or self.free_rec
        if kaldi is None:
            return ""
        t = time.thread_time()
        out = json.loads(kaldi.PartialResult()).get("partial", "")
        if not out and self.free_rec is not None and kaldi is not self.free_rec:
            out = json.loads(self.free_rec.PartialResult()).get("partial", "")
        self.decode_seconds += time.thread_time() - t
        return out

    def final(self) -> Heard:
        """End of utterance: the best text, then ready for the next one."""
        faults.inject("recognizer_error")
        faults.delay("recognizer_slow")
        t = time.thread_time()
        g = json.loads(self.grammar_rec.FinalResult()) if self.grammar_rec is not None else {}
        f = json.loads(self.free_rec.FinalResult()) if self.free_rec is not None else {}
        self.decode_seconds += time.thread_time() - t
        g_text, f_text = g.get("text", "").strip(), f.get("text", "").strip()
        g_conf, f_conf = mean_confidence(g), mean_confidence(f)
        if g_text and (self.free_rec is None or not f_text or (g_conf or 0) >= GRAMMAR_TRUST):
            return Heard(g_text, g_conf, "grammar")
        if f_text:
            return Heard(f_text, f_conf, "free")
        return Heard("", None, "")

    def reset(self) -> None:
        for kaldi in (self.grammar_rec, self.free_rec):
            if kaldi is not None:
                kaldi.Reset()

    @property
    def rtf(self) -> float | None:
        return self.decode_seconds / self.audio_seconds if self.audio_seconds else None
