"""One phone call over a media stream: listen, decide when the caller is done, answer.

Everything for the call happens on the WebSocket's own thread except audio
playback (the Player's thread): parsing, endpointing, decoding (Vosk
releases the GIL) and the turn itself. What the bot says next comes from a
`dialogue` object (ivr.speech.dialogue: flow engine + call record); when the
caller has finished speaking is the `listener`'s business (ivr.speech.listener).
This module only knows audio, timing and the stream protocol.

A session goes through four phases:

    WAITING --start (admitted: ivr/streamauth.py)--> TALKING --last prompt queued--> ENDING --its mark--> DONE
                          `------------ stop / drain / failure ------------^
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field

from .. import logs, metrics
from ..flows.engine import Input
from ..media import protocol
from ..media.audio import FRAME_BYTES, FRAME_MS, Reframer, WavRecorder, is_voiced
from ..media.player import Player
from .listener import Listener, Noise, Onset, Utterance, Words

log = logging.getLogger("ivr.stream")

FINAL_MARK_GRACE = 3.0     # seconds past the last prompt's length to wait for its mark
DECODE_BUDGET = 3.0        # seconds a final recognition may take before the caller goes to a person
DRAIN_WAIT = 5.0           # server stopping: seconds to let a caller finish speaking before the hand-off
# Twilio sends `connected` and `start` as soon as the socket opens; a socket that has not sent an admitted
# `start` after this long is not a call, and must not hold a server thread (docs/security.md).
START_WAIT = 5.0
# Once started, Twilio sends a media frame every 20 ms for as long as the call lasts, silence included: a
# stream without one for this long is broken or hostile, and ends as failed (the caller goes to a person).
MEDIA_WAIT = 5.0


_SPEECH_TURN = metrics.TURN_LATENCY.labels(input="speech")


class StartTimeout(Exception):
    """No `start` within START_WAIT of the socket opening: close it, nothing was recorded."""


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


class Phase:
    WAITING = "waiting"    # socket open, no `start` yet
    TALKING = "talking"    # the bot part: prompts, caller turns
    ENDING = "ending"      # the last prompt (handoff or goodbye) is playing; input is ignored
    DONE = "done"          # close the socket


@dataclass
class Step:
    """What the current step listens for, and the caller's progress at it."""
    expect: object = None
    digits: str = ""         # keys pressed towards a digit string ended by '#'
    quiet: int = 0           # frames of no input since the prompt ended or the last key
    barged: bool = False     # the caller's words already cleared the prompt


@dataclass
class Ending:
    kind: str                # handoff | goodbye
    mark: str                # the last prompt's mark: once Twilio echoes it, the caller heard it all
    deadline: float          # monotonic: stop waiting for the mark after this


@dataclass
class Counters:
    bytes_in: int = 0
    bad_messages: int = 0


class StreamSession:
    def __init__(self, send, dialogue, *, models, prompts, listener=Listener.for_model, endpoint=None,
                 gather_timeout=6, recordings_dir=None):
        self._send_raw = send
        self._send_lock = threading.Lock()
        self.dialogue = dialogue
        self.models = models
        self.prompts = prompts
        self.make_listener = listener          # (model, lang, endpoint config) -> Listener
        self.endpoint = endpoint
        self.gather_frames = max(1, int(gather_timeout * 1000 // FRAME_MS))
        self.recordings_dir = recordings_dir
        self.phase = Phase.WAITING
        self.start_deadline = time.monotonic() + START_WAIT
        self.start = None                      # the `start` event once it came (and was admitted)
        self.lang = ""
        self.player = None
        self.listener = None
        self.recorder = None
        self.reframer = Reframer(FRAME_BYTES)
        self.step = Step()
        self.ending = None                     # Ending, in phase ENDING
        self.outcome = None                    # what the stream-ended webhook should do
        self.failure = None                    # (where, detail) reported by the player thread
        self.drain_deadline = None             # set when the server is stopping (drain())
        self.counters = Counters()
        self.media_at = 0.0                    # monotonic() of the last media message (from `start` on)
        self.t_voiced = 0.0                    # perf_counter() of the last voiced frame
        # Per speech turn, where the time between the caller's last word and our first reply
        # frame went (ms): endpoint (trailing audio waited for), recognize (final result),
        # decide (flow + call record), prompt (queue -> first frame sent). See BENCHMARKS.md.
        self.timings = []

    @property
    def done(self) -> bool:
        return self.phase == Phase.DONE

    @property
    def started(self) -> bool:
        return self.start is not None

    @property
    def sid(self) -> str:
        return self.start.stream_sid if self.start else "(not started)"

    # -- transport ---------------------------------------------------------------
    def send(self, text: str) -> None:
        with self._send_lock:
            self._send_raw(text)

    def handle(self, message) -> None:
        """One WebSocket message from Twilio. Never raises for bad input."""
        try:
            event = protocol.parse(message)
        except protocol.ProtocolError as exc:
            self.counters.bad_messages += 1
            n = self.counters.bad_messages
            if n <= 5 or n % 100 == 0:
                log.warning("stream %s: ignored message (%s)", self.sid, exc)
            return
        if isinstance(event, protocol.Start):
            self._on_start(event)
        elif isinstance(event, protocol.Stop):
            self._on_stop()
        elif not self.started and isinstance(event, (protocol.Media, protocol.Dtmf)):
            self._bad(f"{type(event).__name__.lower()} before start; ignored")
        elif isinstance(event, protocol.Media):
            self._on_media(event)
        elif isinstance(event, protocol.Dtmf):
            self._on_dtmf(event.digit)
        elif isinstance(event, protocol.Mark):
            self._on_mark(event.name)
        # Connected carries nothing we need.

    def tick(self) -> None:
        """Called after every message and when none came for a while: enforce the start, media and
        end-of-call timeouts."""
        if self.phase == Phase.WAITING and time.monotonic() > self.start_deadline:
            raise StartTimeout()
        if self.failure is not None and not self.done:
            raise StreamFailure(*self.failure)
        if self.phase == Phase.TALKING and time.monotonic() - self.media_at > MEDIA_WAIT:
            # (While the last prompt plays, its own deadline ends the stream as planned.)
            raise StreamFailure("no_media", f"no media for {MEDIA_WAIT:.0f} s")
        if self.phase == Phase.ENDING and time.monotonic() > self.ending.deadline:
            log.info("stream %s: no mark for the last prompt; ending the stream", self.sid)
            self._finish(self.ending.kind)

    def close(self, error: str | None = None) -> None:
        """The socket is gone (or we are closing it): flush, record, tell the call record."""
        if self.started and self.recorder:
            rest = self.reframer.flush()
            if rest:
                self.recorder.write(rest)
        if self.player:
            self.player.close()
        if self.recorder:
            self.recorder.close()
        if not self.started:
            return
        outcome = self.outcome or ("error" if error and error != "dropped" else "dropped")
        stats = self.stats()
        if error:
            stats["failure"] = error
        try:
            self.dialogue.close(outcome, stats)
        except Exception:  # the action webhook still sends the caller to a person
            log.exception("stream %s: could not record the stream outcome", self.sid)

    def stats(self) -> dict:
        out = {"audio_in_bytes": self.counters.bytes_in, "bad_messages": self.counters.bad_messages}
        if self.listener is not None:
            recognizer = self.listener.recognizer
            out.update(asr_audio_seconds=round(recognizer.audio_seconds, 3),
                       asr_decode_seconds=round(recognizer.decode_seconds, 3))
        if self.player is not None:
            out.update(audio_out_frames=self.player.frames_sent, late_out_frames=self.player.late_frames)
        if self.timings:
            out["turn_timings"] = json.dumps(self.timings[-50:])
        return out

    # -- events ------------------------------------------------------------------
    def _on_start(self, start):
        if self.started:
            self._bad("second start event; ignored")
            return
        if start.encoding != protocol.ENCODING or start.sample_rate != 8000 or start.channels != 1:
            raise ValueError(f"unsupported media format {start.encoding} {start.sample_rate} Hz x{start.channels}")
        # Is this the call's stream? StreamRefused leaves the session unstarted: nothing is recorded.
        self.dialogue.admit(start.call_sid, start.custom)
        logs.bind_call(start.call_sid)      # this thread's lines (and its player's) now name the call
        self.start = start
        turn = self.dialogue.begin()
        self.lang = turn.lang
        self.listener = self.make_listener(self.models.get(self.lang), self.lang, self.endpoint)
        self.player = Player(self.send, start.stream_sid, on_error=self._playback_failed)
        if self.recordings_dir is not None:
            self.recorder = WavRecorder(self.recordings_dir / f"{start.call_sid}.wav")
        self.phase = Phase.TALKING
        self.media_at = time.monotonic()
        log.info("stream %s: call %s started (lang=%s)", start.stream_sid, start.call_sid, self.lang)
        self._speak(turn)

    def _on_media(self, event):
        if event.track not in ("inbound", "inbound_track"):
            return
        self.media_at = time.monotonic()
        self.counters.bytes_in += len(event.payload)
        try:
            for frame in self.reframer.push(event.payload):
                self._frame(frame)
        except StreamFailure:
            raise
        except Exception as exc:  # decoding broke: the view sends the caller to a person
            raise StreamFailure("recognizer", repr(exc)) from exc

    def _on_mark(self, name):
        if self.player is None:
            return
        self.player.marked(name)
        if self.phase == Phase.ENDING and name == self.ending.mark:
            self._finish(self.ending.kind)
        elif not self.player.playing:
            self.step.quiet = 0

    def _on_stop(self):
        if self.outcome is None:
            # The caller hung up (or Twilio ended the stream) before the bot part was over.
            self.outcome = "stopped"
        self.phase = Phase.DONE

    def _on_dtmf(self, digit):
        if self.phase != Phase.TALKING:
            return
        log.debug("stream %s: key %s", self.sid, digit)
        self.listener.reset()
        step = self.step
        if step.expect is not None and step.expect.digits:
            if self.player.playing:
                self.player.clear()
            if digit == "#":
                value, step.digits = step.digits or "#", ""
                self._turn(Input("dtmf", value), "dtmf")
            else:
                step.digits = (step.digits + digit)[-32:]
                step.quiet = 0
            return
        self._turn(Input("dtmf", digit), "dtmf")

    def _frame(self, frame: bytes):
        if self.recorder:
            self.recorder.write(frame)
        if self.phase != Phase.TALKING:
            return
        voiced = is_voiced(frame)
        if voiced:
            self.t_voiced = time.perf_counter()
        was_idle = self.listener.idle
        event = self.listener.feed(frame, voiced)
        if isinstance(event, Onset):
            log.debug("stream %s: speech starts", self.sid)
            self.step.barged = False
        elif isinstance(event, Words):
            if not self.step.barged:
                self.step.barged = True
                if self.player.playing and self.player.clear():
                    log.info("stream %s: barge-in, prompt cleared", self.sid)
        elif isinstance(event, Utterance):
            self.step.barged = False
            self._utterance(event)
        elif isinstance(event, Noise):
            self.step.barged = False
            log.debug("stream %s: noise, no words", self.sid)   # a cough, a door: no turn
        elif was_idle and not self.player.playing:
            self._count_quiet()

    def _count_quiet(self):
        step = self.step
        step.quiet += 1
        if step.quiet < self.gather_frames:
            return
        step.quiet = 0
        if step.digits:
            value, step.digits = step.digits, ""
            self._turn(Input("dtmf", value), "dtmf")
        else:
            self._turn(Input("silence"), "silence")

    def _utterance(self, u: Utterance):
        recognize_ms = round((time.perf_counter() - u.started) * 1000, 2)
        metrics.RECOGNITION_LATENCY.labels(engine="vosk").observe(recognize_ms / 1000)
        if recognize_ms > DECODE_BUDGET * 1000:
            # The caller has waited in silence already; a person answers rather than a late bot.
            raise StreamFailure("recognizer_slow", f"final result took {recognize_ms / 1000:.1f}s")
        log.debug("stream %s: heard %r", self.sid, u.heard.text)
        self._turn(Input("speech", u.heard.text, u.heard.confidence), "speech", asr=u.heard.source,
                   timing={"endpoint_ms": u.waited_ms, "recognize_ms": recognize_ms})

    # -- turns ---------------------------------------------------------------------
    def _turn(self, inp, kind, asr=None, timing=None):
        if self.player.playing:
            self.player.clear()
        t0 = time.perf_counter()
        try:
            turn = self.dialogue.respond(inp, {"input": kind, "asr": asr})
        except Exception as exc:  # a flow step (or its record) broke: a person takes over
            raise StreamFailure("step", repr(exc)) from exc
        if timing is not None:
            timing["decide_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        self._speak(turn, timing)

    def _speak(self, turn: Turn, timing=None):
        lang = self.lang
        parts = [(lambda text=text: self.prompts.get(text, lang)) for text in turn.prompts]
        queued, voiced_at = time.perf_counter(), self.t_voiced

        def first_frame():
            if timing is not None:
                now = time.perf_counter()
                timing["prompt_ms"] = round((now - queued) * 1000, 2)
                timing["server_ms"] = round((now - voiced_at) * 1000, 2)   # last voiced frame in -> reply out
                if voiced_at:
                    _SPEECH_TURN.observe(now - voiced_at)
        if timing is not None:
            self.timings.append(timing)
        mark = self.player.play(parts, on_first_frame=first_frame)
        self.step = Step(expect=turn.expect)
        if turn.end:
            seconds = sum(len(t) for t in turn.prompts) * 0.15   # generous: ~7 chars per second
            self.ending = Ending(turn.end, mark, time.monotonic() + seconds + FINAL_MARK_GRACE)
            self.phase = Phase.ENDING
            return
        self.listener.listen(turn.grammar, turn.open)

    def _finish(self, outcome):
        self.outcome = outcome
        self.phase = Phase.DONE

    def _playback_failed(self, exc):
        """Player thread: a prompt could not be rendered or sent. The socket's thread ends the stream."""
        if self.failure is None:
            self.failure = ("tts", repr(exc))

    def drain(self) -> None:
        """The server is stopping: end the stream at the next pause with the outcome "shutdown",
        so /voice/stream-ended (served by another process) reconnects the call to the bot.

        A bot part that is already ending (handoff, goodbye) finishes as usual; a caller in the
        middle of an utterance gets DRAIN_WAIT seconds to finish it (their turn is kept)."""
        if self.phase == Phase.WAITING:
            self.phase = Phase.DONE          # nothing started: the call record does not know this stream
            return
        if self.phase != Phase.TALKING:
            return
        now = time.monotonic()
        if self.drain_deadline is None:
            self.drain_deadline = now + DRAIN_WAIT
            log.info("stream %s: server stopping; handing the call off at the next pause", self.sid)
        if self.listener.idle or now > self.drain_deadline:
            if self.player is not None and self.player.playing:
                self.player.clear()
            self._finish("shutdown")

    # -- helpers -------------------------------------------------------------------
    def _bad(self, what):
        self.counters.bad_messages += 1
        if self.counters.bad_messages <= 5:
            log.warning("stream %s: %s", self.sid, what)
