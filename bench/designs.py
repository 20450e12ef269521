"""The simpler designs the turn-latency benchmark compares ivr's against, and a server that runs them.

ivr listens with its own endpointer and a small grammar per step
(ivr.speech.listener.Listener). A user could instead pick:

* free-form: no per-step grammar, every utterance decoded free-form (Listener with
  the grammar switched off);
* naive: the loop of Vosk's own Twilio example: free-form, and the utterance ends
  when Vosk's endpoint rule fires inside AcceptWaveform, frame by frame, on the
  socket's thread.

Both plug into the production StreamSession through SpeechServices.listener, the
same way the production Listener does; nothing of them lives in the package.

    .venv/bin/python -m bench.designs --design naive --port 5000   # ivr serve, with that design
"""
from __future__ import annotations

import argparse
import json
import logging
import time

from ivr.media.audio import FRAME_MS, to_pcm16
from ivr.speech.listener import Listener, Utterance, Words
from ivr.speech.recognizer import Heard, Recognizer, mean_confidence


class FreeFormListener(Listener):
    """The production endpointer, without per-step grammars: everything decoded free-form."""

    def listen(self, phrases, open_):
        super().listen([], True)


class NaiveListener:
    """Vosk's Twilio example: each frame into the free-form recognizer; Vosk's endpoint rule
    (AcceptWaveform returning True) ends the utterance. No silence timeouts."""

    idle = False     # never counts the caller's silence: the example has no such timeout

    def __init__(self, recognizer: Recognizer):
        self.recognizer = recognizer
        self.since_voiced = 0
        self.heard_words = False   # partial results are asked for only until the first words

    @classmethod
    def for_model(cls, model, lang, endpoint=None):
        return cls(Recognizer(model, lang))

    def listen(self, phrases, open_):
        self.recognizer.listen([], True)

    def reset(self):
        self.recognizer.reset()

    def feed(self, frame, voiced):
        self.since_voiced = 0 if voiced else self.since_voiced + 1
        rec = self.recognizer
        started = time.perf_counter()
        t = time.thread_time()
        ended = rec.free_rec.AcceptWaveform(to_pcm16(frame))
        result = json.loads(rec.free_rec.Result()) if ended else None
        rec.decode_seconds += time.thread_time() - t
        rec.audio_seconds += len(frame) / rec.rate
        if result is not None:
            self.heard_words = False
            text = result.get("text", "").strip()
            if text:
                return Utterance(Heard(text, mean_confidence(result), "free"), self.since_voiced * FRAME_MS, started)
            return None
        if voiced and not self.heard_words:
            partial = rec.partial()
            if partial:
                self.heard_words = True
                return Words(partial)
        return None


DESIGNS = {"design": Listener.for_model, "free-form": FreeFormListener.for_model, "naive": NaiveListener.for_model}


def main():
    from ivr import create_app
    from ivr.config import Config
    from ivr.server import run_gunicorn

    ap = argparse.ArgumentParser(description="ivr serve with one of the compared listener designs")
    ap.add_argument("--design", choices=sorted(DESIGNS), default="design")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=64)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(Config.from_env(port=args.port))
    svc = app.extensions["ivr"]
    svc.speech.listener = DESIGNS[args.design]
    svc.speech.warm_up(svc.flows.values())
    run_gunicorn(app, args.host, args.port, workers=args.workers, threads=args.threads)


if __name__ == "__main__":
    main()
