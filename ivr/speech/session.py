"""One phone call over a media stream: listen, decide when the caller is done, answer.

Everything for the call happens on the WebSocket's own thread except audio
playback (the Player's thread): parsing, endpointing, decoding (Vosk
releases the GIL) and the turn itself. What the bot says next comes from a
`dialogue` object (flow engine + call record); this module only knows
audio, timing and the stream protocol.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field

from ..flows.engine import Input
from ..media import protocol
from ..media.audio import FRAME_BYTES, FRAME_MS, Reframer, WavRecorder, is_voiced
from ..media.player import Player
from .endpoint import EndpointConfig, Endpointer
from .recognizer import Recognizer

log = logging.getLogger("ivr.stream")

FINAL_MARK_GRACE = 3.0     # seconds past the last prompt's length to wait for its mark
DECODE_BUDGET = 3.0        # seconds a final recognition may take before the caller goes to a person
DRAIN_WAIT = 5.0           # server stopping: seconds to let a caller finish speaking before the hand-off


class StreamFailure(RuntimeError):
    """Our side broke mid-call (recognizer, prompt audio, a flow step): the caller goes to a person.

    `where` is the failure's label in logs, the call record and ivr_failures_total."""

    def __init__(self, where: str, detail=""):
        super().__init__(f"{where}: {detail}" if detail else where)
        self.where = where


@dataclass
class Turn:
    """What the dialogue answered: prompts to speak, what to listen for, or how the stream ends."""
    prompts: list
    expect: object = None          # engine Expect, None when the bot part is over
    grammar: list = field(default_factory=list)   # recognizer phrases for the next utterance
    open: bool = False             # also decode free-form speech
    end: str | None = None         # None | "handoff" | "goodbye"
    lang: str = ""
    info: dict = field(default_factory=dict)


class StreamSession:
    def __init__(self, send, dialogue, *, models, prompts, gather_timeout=6, recordings_dir=None,
                 endpoint: EndpointConfig | None = None, free_only=False, vosk_endpoint=False):
        self._send_raw = send
        self._send_lock = threading.Lock()
        self.dialogue = dialogue
        self.models = models
        self.prompts = prompts
        self.gather_frames = max(1, int(gather_timeout * 1000 // FRAME_MS))
        self.recordings_dir = recordings_dir
        self.ep = Endpointer(endpoint)
        self.reframer = Reframer(FRAME_BYTES)
        self.start = None
        self.lang = ""
        self.player = None
        self.rec = None
        self.recorder = None
        self.expect = None
        self.digits = ""
        self.quiet = 0               # frames of no input since the prompt ended or the last digit
        self.barged = False
        self.ending = None           # "handoff" | "goodbye" once the bot part is over
        self.final_mark = None
        self.final_deadline = None
        self.done = False            # set when the session should close the socket
        self.outcome = None          # what the stream-ended webhook should do
        self.bytes_in = 0
        self.bad_messages = 0
        self.events = []             # (monotonic time, what) for tests and benchmarks
        self.failure = None          # (where, detail) reported by the player thread
        self.drain_deadline = None   # set when the server is stopping (drain())
        # Benchmark knobs (Config.bench_asr / bench_endpoint): the simpler designs the bench compares.
        self.free_only = free_only           # no per-step grammar: free-form decoding only
        self.vosk_endpoint = vosk_endpoint   # naive: Vosk's own end-of-utterance rule, frame by frame
        self.since_voiced = 0                # frames since the last voiced one (naive path)
        self.t_voiced = 0.0                  # when the last voiced frame was handled
        # Per speech turn, where the time between the caller's last word and our first reply
        # frame went (ms): endpoint (trailing audio waited for), recognize (final result),
        # decide (flow + call record), prompt (queue -> first frame sent). See BENCHMARKS.md.
        self.timings = []

    # -- transport ---------------------------------------------------------------
    def send(self, text: str) -> None:
        with self._send_lock:
            self._send_raw(text)

    def handle(self, message) -> None:
        """One WebSocket message from Twilio. Never raises for bad input."""
        try:
            event = protocol.parse(message)
        except protocol.ProtocolError as exc:
            self.bad_messages += 1
            if self.bad_messages <= 5 or self.bad_messages % 100 == 0:
                log.warning("stream %s: ignored message (%s)", self._sid(), exc)
            return
        if isinstance(event, protocol.Media):
            if self.start is None:
                self._once("media before start; ignored")
                return
            if event.track not in ("inbound", "inbound_track"):
                return
            self.bytes_in += len(event.payload)
            try:
                for frame in self.reframer.push(event.payload):
                    self._frame(frame)
            except StreamFailure:
                raise
            except Exception as exc:  # noqa: BLE001 - decoding broke: the view sends the caller to a person
                raise StreamFailure("recognizer", repr(exc)) from exc
        elif isinstance(event, protocol.Start):
            self._on_start(event)
        elif isinstance(event, protocol.Dtmf):
            if self.start is None:
                self._once("dtmf before start; ignored")
                return
            self._on_dtmf(event.digit)
        elif isinstance(event, protocol.Mark):
            self._on_mark(event.name)
        elif isinstance(event, protocol.Stop):
            self._on_stop()
        # Connected carries nothing we need.

    def tick(self) -> None:
        """Called when no message came for a while: enforce the end-of-call timeout."""
        if self.failure is not None and not self.done:
            raise StreamFailure(self.failure[0], self.failure[1])
        if self.final_deadline is not None and time.monotonic() > self.final_deadline and not self.done:
            log.info("stream %s: no mark for the last prompt; ending the stream", self._sid())
            self._finish(self.ending)

    def close(self, error: str | None = None) -> None:
        """The socket is gone (or we are closing it): flush, record, tell the call record."""
        if self.start is not None and self.rec is not None:
            rest = self.reframer.flush()
            if rest and self.recorder:
                self.recorder.write(rest)
        if self.player:
            self.player.close()
        if self.recorder:
            self.recorder.close()
        if self.start is None:
            return
        outcome = self.outcome or ("error" if error and error != "dropped" else "dropped")
        stats = self.stats()
        if error:
            stats["failure"] = error
        try:
            self.dialogue.close(outcome, stats)
        except Exception:  # noqa: BLE001 - the action webhook still sends the caller to a person
            log.exception("stream %s: could not record the stream outcome", self._sid())

    def stats(self) -> dict:
        out = {"audio_in_bytes": self.bytes_in, "bad_messages": self.bad_messages}
        if self.rec is not None:
            out.update(asr_audio_seconds=round(self.rec.audio_seconds, 3),
                       asr_decode_seconds=round(self.rec.decode_seconds, 3))
        if self.player is not None:
            out.update(audio_out_frames=self.player.frames_sent, late_out_frames=self.player.late_frames)
        if self.timings:
            out["turn_timings"] = json.dumps(self.timings[-50:])
        return out

    # -- events ------------------------------------------------------------------
    def _on_start(self, start):
        if self.start is not None:
            self._once("second start event; ignored")
            return
        if start.encoding != protocol.ENCODING or start.sample_rate != 8000 or start.channels != 1:
            raise ValueError(f"unsupported media format {start.encoding} {start.sample_rate} Hz x{start.channels}")
        self.start = start
        turn = self.dialogue.begin(start.call_sid, start.custom)
        self.lang = turn.lang
        self.rec = Recognizer(self.models.get(self.lang), self.lang)
        self.player = Player(self.send, start.stream_sid, on_error=self._playback_failed)
        if self.recordings_dir is not None:
            self.recorder = WavRecorder(self.recordings_dir / f"{start.call_sid}.wav")
        log.info("stream %s: call %s started (lang=%s)", start.stream_sid, start.call_sid, self.lang)
        self._speak(turn)

    def _on_mark(self, name):
        if self.player is None:
            return
        self.player.marked(name)
        if self.ending and name == self.final_mark:
            self._finish(self.ending)
        elif not self.player.playing:
            self.quiet = 0

    def _on_stop(self):
        self.done = True
        if self.outcome is None:
            # The caller hung up (or Twilio ended the stream) before the bot part was over.
            self.outcome = "stopped"

    def _on_dtmf(self, digit):
        if self.ending:
            return
        self._event(f"dtmf {digit}")
        self.ep.reset()
        self.rec.reset()
        if self.expect is not None and self.expect.digits:
            if self.player.playing:
                self.player.clear()
            if digit == "#":
                value, self.digits = self.digits or "#", ""
                self._turn(Input("dtmf", value), {"input": "dtmf"})
            else:
                self.digits = (self.digits + digit)[-32:]
                self.quiet = 0
            return
        self._turn(Input("dtmf", digit), {"input": "dtmf"})

    def _frame(self, frame: bytes):
        if self.recorder:
            self.recorder.write(frame)
        if self.ending or self.rec is None:
            return
        voiced = is_voiced(frame)
        if voiced:
            self.t_voiced = time.perf_counter()
        if self.vosk_endpoint:
            self._naive_frame(frame, voiced)
            return
        if self.ep.state == Endpointer.IDLE:
            onset = self.ep.idle_frame(frame, voiced)
            if onset is not None:
                self._event("speech_start")
                self.barged = False
                for f in onset:
                    self.rec.accept(f)
                return
            if self.player.playing:
                return
            self.quiet += 1
            if self.quiet >= self.gather_frames:
                self.quiet = 0
                if self.digits:
                    value, self.digits = self.digits, ""
                    self._turn(Input("dtmf", value), {"input": "dtmf"})
                else:
                    self._turn(Input("silence"), {"input": "silence"})
            return
        self.rec.accept(frame)
        partial = self.rec.partial()
        if partial and not self.barged:
            self.barged = True
            if self.player.playing and self.player.clear():
                self._event("barge_in")
                log.info("stream %s: barge-in, prompt cleared", self._sid())
        if self.ep.speech_frame(voiced, partial) == "end":
            waited = self.ep.silent * FRAME_MS
            t0 = time.perf_counter()
            heard = self.rec.final()
            self.ep.reset()
            if not heard.text:
                self._event("noise")      # a cough, a door: no words, no turn
                return
            self._event(f"speech_end {heard.text!r}")
            self._timed_turn(heard, waited, t0)

    def _naive_frame(self, frame, voiced):
        """Benchmark baseline (IVR_BENCH_ENDPOINT=vosk): Vosk's Twilio example, on the socket's thread."""
        self.since_voiced = 0 if voiced else self.since_voiced + 1
        t0 = time.perf_counter()
        heard = self.rec.accept_endpoint(frame)
        if heard is None:
            if not self.barged and self.player.playing and voiced and self.rec.partial():
                self.barged = True
                if self.player.clear():
                    self._event("barge_in")
            return
        self.barged = False
        if heard.text:
            self._event(f"speech_end {heard.text!r}")
            self._timed_turn(heard, self.since_voiced * FRAME_MS, t0)

    def _timed_turn(self, heard, waited_ms, t0):
        timing = {"endpoint_ms": waited_ms, "recognize_ms": round((time.perf_counter() - t0) * 1000, 2)}
        if timing["recognize_ms"] > DECODE_BUDGET * 1000:
            # The caller has waited in silence already; a person answers rather than a late bot.
            raise StreamFailure("recognizer_slow", f"final result took {timing['recognize_ms'] / 1000:.1f}s")
        self._turn(Input("speech", heard.text, heard.confidence), {"input": "speech", "asr": heard.source},
                   timing=timing)

    # -- turns ---------------------------------------------------------------------
    def _turn(self, inp, info, timing=None):
        if self.player.playing:
            self.player.clear()
        t0 = time.perf_counter()
        try:
            turn = self.dialogue.respond(inp, info)
        except Exception as exc:  # noqa: BLE001 - a flow step (or its record) broke: a person takes over
            raise StreamFailure("step", repr(exc)) from exc
        if timing is not None:
            timing["decide_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        self._speak(turn, timing)

    def _speak(self, turn: Turn, timing=None):
        lang = self.lang
        parts = [(lambda text=text: self.prompts.get(text, lang)) for text in turn.prompts]
        queued, voiced_at = time.perf_counter(), self.t_voiced

        def first_frame():
            self._event("bot_audio")
            if timing is not None:
                now = time.perf_counter()
                timing["prompt_ms"] = round((now - queued) * 1000, 2)
                timing["server_ms"] = round((now - voiced_at) * 1000, 2)   # last voiced frame in -> reply out
        if timing is not None:
            self.timings.append(timing)
        mark = self.player.play(parts, on_first_frame=first_frame)
        self.quiet = 0
        self.digits = ""
        if turn.end:
            self.ending = turn.end
            self.final_mark = mark
            seconds = sum(len(t) for t in turn.prompts) * 0.15   # generous: ~7 chars per second
            self.final_deadline = time.monotonic() + seconds + FINAL_MARK_GRACE
            return
        self.expect = turn.expect
        self.ep.set_open(turn.open)
        self.rec.listen([] if self.free_only else turn.grammar, turn.open or self.free_only)

    def _finish(self, outcome):
        self.outcome = outcome
        self.done = True

    def _playback_failed(self, exc):
        """Player thread: a prompt could not be rendered or sent. The socket's thread ends the stream."""
        if self.failure is None:
            self.failure = ("tts", repr(exc))

    def drain(self) -> None:
        """The server is stopping: end the stream at the next pause with the outcome "shutdown",
        so /voice/stream-ended (served by another process) reconnects the call to the bot.

        A bot part that is already ending (handoff, goodbye) finishes as usual; a caller in the
        middle of an utterance gets DRAIN_WAIT seconds to finish it (their turn is kept)."""
        if self.done:
            return
        if self.start is None:
            self.done = True          # nothing started: the call record does not know this stream
            return
        if self.ending:
            return
        now = time.monotonic()
        if self.drain_deadline is None:
            self.drain_deadline = now + DRAIN_WAIT
            log.info("stream %s: server stopping; handing the call off at the next pause", self._sid())
        if self.ep.state == Endpointer.IDLE or now > self.drain_deadline:
            if self.player is not None and self.player.playing:
                self.player.clear()
            self._finish("shutdown")

    # -- helpers -------------------------------------------------------------------
    def _sid(self):
        return self.start.stream_sid if self.start else "(not started)"

    def _event(self, what):
        self.events.append((time.monotonic(), what))
        if len(self.events) > 500:
            del self.events[:250]

    def _once(self, what):
        self.bad_messages += 1
        if self.bad_messages <= 5:
            log.warning("stream %s: %s", self._sid(), what)
