"""Decide, frame by frame, when the caller starts and stops talking.

Vosk's own endpointing waits ~0.6 s of silence (rule2 in model.conf) and is
only checked when audio is fed; a phone bot that answers that late feels
slow. This endpointer runs on the 20 ms frames themselves: energy says
"voice" or "not", the recognizer's partial result confirms it is speech
(not a cough or line noise) and tells us when the words have stopped
changing. Time is counted in frames of audio, not wall-clock, so the same
audio always gives the same decisions.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ..media.audio import FRAME_MS


@dataclass(frozen=True)
class EndpointConfig:
    start_window: int = 5          # frames looked at for speech onset
    start_voiced: int = 3          # ...of which this many must be voiced (60 ms)
    preroll: int = 15              # frames kept before onset and fed to the recognizer (300 ms)
    end_silence_ms: int = 220      # trailing silence before an utterance may end (directed steps)
    open_end_silence_ms: int = 450 # ...at an open question, where callers pause between phrases
    stable_ms: int = 100           # ...and the partial result unchanged for this long
    max_silence_ms: int = 700      # end anyway after this much silence
    max_utterance_ms: int = 12000  # nobody answers a menu in a 12 s monologue

    @property
    def end_frames(self):
        return max(1, self.end_silence_ms // FRAME_MS)

    @property
    def open_end_frames(self):
        return max(1, self.open_end_silence_ms // FRAME_MS)

    @property
    def stable_frames(self):
        return max(1, self.stable_ms // FRAME_MS)

    @property
    def max_silence_frames(self):
        return max(self.end_frames, self.max_silence_ms // FRAME_MS)

    @property
    def max_frames(self):
        return self.max_utterance_ms // FRAME_MS


class Endpointer:
    """States: idle -> speaking -> (end) idle. Feed one frame at a time."""

    IDLE, SPEAKING = "idle", "speaking"

    def __init__(self, cfg: EndpointConfig | None = None):
        self.cfg = cfg or EndpointConfig()
        self.end_frames = self.cfg.end_frames
        self.reset()

    def reset(self):
        self.state = self.IDLE
        self.window = deque(maxlen=self.cfg.start_window)
        self.preroll = deque(maxlen=self.cfg.preroll)
        self.frames = 0            # frames in the current utterance
        self.silent = 0            # trailing unvoiced frames
        self.partial = ""
        self.stable = 0            # frames the partial has not changed
        self.confirmed = False     # the recognizer heard words in this utterance

    def idle_frame(self, frame: bytes, voiced: bool) -> list | None:
        """While idle: returns the frames to start recognizing with on onset, else None."""
        self.window.append(voiced)
        self.preroll.append(frame)
        if sum(self.window) >= self.cfg.start_voiced:
            self.state = self.SPEAKING
            out = list(self.preroll)
            self.preroll.clear()
            self.window.clear()
            self.frames = len(out)
            self.silent = 0
            return out
        return None

    def speech_frame(self, voiced: bool, partial: str | None) -> str | None:
        """While speaking: 'end' when the utterance is over (the recognizer's final result then
        tells speech from noise)."""
        self.frames += 1
        self.silent = 0 if voiced else self.silent + 1
        if partial is not None and partial != self.partial:
            self.partial, self.stable = partial, 0
        else:
            self.stable += 1
        if partial:
            self.confirmed = True
        c = self.cfg
        if self.frames >= c.max_frames:
            return "end"
        if self.silent >= self.end_frames:
            # Vosk's partial lags the audio by ~0.2 s: an empty partial after a short word is
            # normal (the final result flushes it); a partial still changing means the decoder
            # is catching up on the last word, so give it a moment.
            if not self.partial or self.stable >= c.stable_frames or self.silent >= c.max_silence_frames:
                return "end"
        return None

    def set_open(self, open_: bool) -> None:
        """Open questions get more trailing silence: people pause mid-sentence, not mid-word."""
        self.end_frames = self.cfg.open_end_frames if open_ else self.cfg.end_frames
