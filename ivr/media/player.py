"""Paced playback of prompts to Twilio: 20 ms frames in real time, then a mark.

Pacing (instead of pushing a whole prompt at once) keeps Twilio's buffer
short, so a `clear` on barge-in silences the bot at once and the mark Twilio
echoes back means "the caller has heard it all". One thread per call: a
stalled socket or a slow dynamic render delays only that call.
"""
from __future__ import annotations

import contextvars
import itertools
import logging
import queue
import threading
import time

from . import protocol
from .audio import FRAME_BYTES, FRAME_MS, frames

log = logging.getLogger("ivr.media")

LEAD_FRAMES = 10         # send each frame up to 200 ms before it plays...
BATCH_FRAMES = 4         # ...waking once per 80 ms to send the frames then due (30 calls x 50 wake-ups/s
                         # of GIL hand-offs cost more than the sends themselves). Twilio's buffer thus
                         # holds 140-200 ms: a worker that stalls for less never leaves the caller a
                         # gap (with 60 ms and these batches it held 0-60 ms, and a loaded server's
                         # hiccups became audible), and `clear` still empties it at once on barge-in.


class Player:
    def __init__(self, send, stream_sid: str, clock=time.monotonic, sleep=None, on_error=None):
        self.send = send                  # thread-safe callable(str)
        self.on_error = on_error          # callable(exc): a prompt failed to render or send (not a closed socket)
        self.stream_sid = stream_sid
        self.clock = clock
        # Between batches the thread waits on this event, which clear() and close() set: the next
        # prompt after a barge-in starts at once instead of when the cleared one's wait would end
        # (up to 80 ms: measured as the turn's "prompt" time in bench.turn_latency). Tests may pass
        # their own sleep (a virtual clock) instead.
        self._wake = threading.Event()
        self.sleep = sleep or self._wake.wait
        self.q = queue.Queue()
        self.generation = 0               # bumped by clear(): stale items stop
        self.lock = threading.Lock()
        self.pending_marks = set()        # sent, not yet echoed by Twilio
        self.sending = None               # generation of the prompt being sent right now, None between prompts
        self.frames_sent = 0
        self.late_frames = 0              # frames sent more than one frame behind schedule
        self.first_frame_at = None        # monotonic time of the first frame of the current item
        self._names = itertools.count(1)
        self._closed = False
        # In the starter's context: its lines carry the call's SID (ivr/logs.py).
        self.thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,),
                                       name=f"ivr-player-{stream_sid[-6:]}", daemon=True)
        self.thread.start()

    def play(self, parts, on_first_frame=None) -> str:
        """Queue audio (an iterable of bytes or zero-arg callables returning bytes); returns the mark name."""
        name = f"p{next(self._names)}"
        with self.lock:
            self.pending_marks.add(name)
            self.q.put((self.generation, parts, name, on_first_frame))
        return name

    @property
    def playing(self) -> bool:
        """True while Twilio may still be playing something of ours."""
        return bool(self.pending_marks) or self.sending == self.generation

    def clear(self) -> bool:
        """Barge-in: drop queued audio, tell Twilio to flush its buffer. True if anything was playing.

        What was cleared stops counting as playing at once, though the player's thread may still be
        asleep mid-prompt: a second clear() sends nothing, and Twilio answers `clear` with the marks
        it held (unknown by then), the rest were never sent."""
        with self.lock:
            was = self.playing
            self.generation += 1
            self.pending_marks.clear()
            while True:
                try:
                    self.q.get_nowait()
                except queue.Empty:
                    break
        self._wake.set()            # a thread waiting mid-prompt notices the new generation now
        if was:
            self.send(protocol.clear(self.stream_sid))
        return was

    def marked(self, name: str) -> bool:
        """Twilio echoed a mark: that audio has been heard (or cleared)."""
        with self.lock:
            known = name in self.pending_marks
            self.pending_marks.discard(name)
        return known

    def close(self):
        self._closed = True
        self._wake.set()
        self.q.put(None)

    def _run(self):
        while not self._closed:
            item = self.q.get()
            if item is None:
                return
            gen, parts, name, on_first = item
            self._wake.clear()      # set by a clear() before this item was queued: not for this item
            self.sending = gen
            try:
                if self._send_parts(gen, parts, on_first):
                    self.send(protocol.mark(self.stream_sid, name))
                else:
                    with self.lock:
                        self.pending_marks.discard(name)
            except Exception as exc:  # a broken socket ends playback, the session notices
                if self._closed or isinstance(exc, OSError) or type(exc).__name__ == "ConnectionClosed":
                    log.info("stream %s: playback stopped, the stream is closed", self.stream_sid)
                else:
                    log.warning("stream %s: playback stopped", self.stream_sid, exc_info=True)
                    if self.on_error is not None:
                        self.on_error(exc)
                with self.lock:
                    self.pending_marks.discard(name)
            finally:
                self.sending = None

    def _send_parts(self, gen, parts, on_first) -> bool:
        start, n = None, 0
        step = FRAME_MS / 1000.0
        for part in parts:
            if gen != self.generation or self._closed:
                return False
            audio = part() if callable(part) else part
            for frame in frames(audio or b"", FRAME_BYTES):
                if gen != self.generation or self._closed:
                    return False
                now = self.clock()
                if start is None:
                    start = now
                    self.first_frame_at = now
                due = start + (n - LEAD_FRAMES) * step
                if due > now:
                    self.sleep(due - now + (BATCH_FRAMES - 1) * step)
                elif now - due > (LEAD_FRAMES + 1) * step:
                    self.late_frames += 1
                with self.lock:
                    # Checked and sent under the lock clear() takes: no frame of a cleared prompt
                    # can follow the `clear` message on the wire.
                    if gen != self.generation:
                        return False
                    self.send(protocol.media(self.stream_sid, frame))
                if n == 0 and on_first:
                    on_first()
                n += 1
                self.frames_sent += 1
        return gen == self.generation
