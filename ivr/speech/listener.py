"""Caller audio in, finished utterances out: endpointing plus recognition for one call.

The stream session hands every 20 ms frame to a listener and acts on what
comes back (an onset, the first words of an utterance, a finished utterance,
noise). The listener decides when the caller has finished; the session decides
what that means for the call (barge-in, a turn, a silence timeout). Keeping the
two apart lets another design be composed in without touching the session:
bench/designs.py plugs in the simpler designs the turn-latency benchmark
compares against (free-form only, Vosk's own end-of-utterance rule).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from ..media.audio import FRAME_MS
from .endpoint import EndpointConfig, Endpointer
from .recognizer import Heard, Recognizer


@dataclass(frozen=True)
class Onset:
    """The caller started speaking (nothing recognized yet)."""


@dataclass(frozen=True)
class Words:
    """The recognizer heard the first words of an utterance: real speech, so a barge-in."""
    partial: str


@dataclass(frozen=True)
class Utterance:
    heard: Heard
    waited_ms: int           # trailing audio waited for before deciding the utterance was over
    started: float           # perf_counter() when the final recognition began


@dataclass(frozen=True)
class Noise:
    """An utterance with no words in it (a cough, a door): no turn."""


class Listener:
    """The production design: our own endpointer on the frames, a grammar per step (ivr.speech.endpoint)."""

    def __init__(self, recognizer: Recognizer, endpoint: EndpointConfig | None = None):
        self.recognizer = recognizer
        self.endpointer = Endpointer(endpoint)
        self._heard_words = False

    @classmethod
    def for_model(cls, model, lang: str, endpoint: EndpointConfig | None = None) -> Listener:
        return cls(Recognizer(model, lang), endpoint)

    @property
    def idle(self) -> bool:
        """No utterance in progress: the caller is silent (silence timeouts count only then)."""
        return self.endpointer.state == Endpointer.IDLE

    def listen(self, phrases, open_: bool) -> None:
        """A new step: its grammar phrases, and whether free speech is meaningful there."""
        self.endpointer.set_open(open_)
        self.recognizer.listen(phrases, open_)

    def reset(self) -> None:
        """Forget the utterance in progress (the caller pressed a key instead)."""
        self.endpointer.reset()
        self.recognizer.reset()

    def feed(self, frame: bytes, voiced: bool):
        """One frame; returns an event (Onset, Words, Utterance, Noise) or None."""
        ep = self.endpointer
        if ep.state == Endpointer.IDLE:
            onset = ep.idle_frame(frame, voiced)
            if onset is None:
                return None
            self._heard_words = False
            for f in onset:
                self.recognizer.accept(f)
            return Onset()
        self.recognizer.accept(frame)
        partial = self.recognizer.partial()
        if ep.speech_frame(voiced, partial) == "end":
            waited = ep.silent * FRAME_MS
            started = time.perf_counter()
            heard = self.recognizer.final()
            ep.reset()
            return Utterance(heard, waited, started) if heard.text else Noise()
        if partial and not self._heard_words:
            self._heard_words = True
            return Words(partial)
        return None
