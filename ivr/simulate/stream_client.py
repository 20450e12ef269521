"""Twilio's side of a media stream, for the simulator, tests and benchmarks.

Connects to the <Stream url> with a valid signature, sends the caller's audio
as mu-law frames paced in real time (silence between utterances, as a phone
line does), plays the bot's audio on a virtual clock, echoes marks when that
audio has "played", honours clear, and measures the time from the caller's
last voiced frame to the bot's first reply frame.

As on Twilio, the stream ends when the server closes it (the caller then goes on to the
<Connect action>'s TwiML) or when the caller hangs up. A caller with nothing more to say hears the
bot's last prompt out and hangs up only after `end_wait` seconds of the bot saying nothing; the
inputs the stream ended before are handed back (StreamResult.rest) for whatever comes next.
"""
from __future__ import annotations

import itertools
import secrets
import threading
import time
from dataclasses import dataclass, field

import websocket
from twilio.request_validator import RequestValidator

from ..media import protocol
from ..media.audio import FRAME_BYTES, SAMPLE_RATE, is_voiced, silence
from .speaker import load_audio, synthesize

PAUSE_BEFORE_SPEAKING = 0.3
# A prompt is one run of audio ended by its mark. The server renders a prompt's parts as it plays them,
# so its audio may pause mid-prompt: the caller counts it as still talking until the mark comes, or
# until this long passes with no audio (a server that sends no marks).
MARK_WAIT = 5.0
# A caller who listens to the end (listen_to_end) hangs up this long after the last input at the latest.
LISTEN_AT_MOST = 120.0


def open_stream(url: str, signature: str, call_sid: str, custom: dict | None = None, **options):
    """A media-stream socket opened as Twilio opens one: the signed handshake, `connected`, then
    `start` with `custom` as its parameters (not sent when custom is None). Returns the socket and
    the TwilioStream that builds the stream's further messages; `options` go to websocket-client."""
    ws = websocket.create_connection(url, header=[f"X-Twilio-Signature: {signature}"], **options)
    tw = protocol.TwilioStream("MZ" + secrets.token_hex(16), call_sid)
    ws.send(tw.connected())
    if custom is not None:
        ws.send(tw.start(custom))
    return ws, tw


@dataclass
class StreamResult:
    labels: list = field(default_factory=list)       # what the caller did, in order
    latencies: list = field(default_factory=list)    # seconds: last voiced frame -> first reply frame
    sent: bytearray = field(default_factory=bytearray)
    frames_sent: int = 0
    late_sends: int = 0          # frames we sent more than 20 ms behind schedule (our own overload)
    bot_frames: int = 0
    bot_gaps: int = 0            # reply audio that stalled >100 ms mid-prompt (late frames from the bot)
    clears: int = 0
    closed_by_server: bool = False
    hung_up: bool = False
    error: str | None = None
    rest: list = field(default_factory=list)         # inputs not given: the stream had ended before them


class StreamCaller:
    def __init__(self, auth_token: str, *, lang="ko", barge_in_after: float | None = None, frame_sizes=(FRAME_BYTES,),
                 reply_timeout: float = 20.0, end_wait: float = 4.0, listen_to_end: bool = True,
                 signature: str | None = None):
        self.validator = RequestValidator(auth_token)
        self.lang = lang
        self.barge_in_after = barge_in_after   # None: wait for each prompt to finish before speaking
        self.frame_sizes = frame_sizes          # bytes per media message, cycled (Twilio does not promise 160)
        self.reply_timeout = reply_timeout
        self.end_wait = end_wait
        self.signature = signature              # override, to test refusal
        # True: after the last input, hear the bot out, then hang up once it has said nothing for end_wait s
        # (the server closes the stream first when the call goes on elsewhere). False: hang up end_wait s
        # after the last reply starts, mid-prompt if it is longer.
        self.listen_to_end = listen_to_end

    # -- the caller's side -----------------------------------------------------------
    def audio_for(self, kind: str, value: str) -> bytes:
        if kind == "say":
            return synthesize(value, self.lang)
        if kind == "audio":
            return load_audio(value)
        raise ValueError(kind)

    def run(self, url: str, custom: dict, call_sid: str, inputs, audio: dict | None = None) -> StreamResult:
        """inputs: ("say", text) | ("audio", path) | ("press", digits) | ("wait", seconds: the caller stays
        silent that long before the next input); audio: pre-rendered {input: bytes}. The inputs the
        stream ended before (the server closed it) are the result's `rest`, in order."""
        inputs = list(inputs)
        sig = self.signature if self.signature is not None else self.validator.compute_signature(url, {})
        self.ws, self.tw = open_stream(url, sig, call_sid, custom, timeout=10, enable_multithread=True)
        self.res = res = StreamResult()
        self.lock = threading.Lock()
        self.play_until = 0.0          # when the bot audio received so far will have played
        self.pending_marks = []        # (due time, name)
        self.last_bot_frame = 0.0
        self.unmarked = False          # bot audio came that no mark has ended yet (a prompt being sent)
        self.waiting_since = None      # last voiced frame time of an utterance awaiting its reply
        self.need_clear = False
        self.speaking = False
        self.reply_started = threading.Event()
        self.prompt_started = threading.Event()
        self.closed = threading.Event()
        self.sizes = itertools.cycle(self.frame_sizes)
        self.next_send = time.monotonic()
        rx = threading.Thread(target=self._receive, name="sim-stream-rx", daemon=True)
        rx.start()
        given = 0                      # inputs begun on this stream
        try:
            for kind, value in inputs:
                if kind == "wait":
                    self._wait_reply()
                    if self.closed.is_set():
                        break
                    given += 1
                    self._stream(silence(int(float(value) * 1000)))
                    continue
                if not self._wait_turn():
                    break
                given += 1
                if value == "":
                    continue      # silence: the next input waits for what the bot says when its wait is over
                if kind == "press":
                    res.labels.append(f"press {value}")
                    for i, digit in enumerate(value):
                        if i == len(value) - 1:   # the reply may come at once: expect it before the last key
                            self._expect_reply(time.monotonic(), playing=self._playing())
                        self._send(self.tw.dtmf(digit))
                        self._stream(silence(100))
                else:
                    data = (audio or {}).get((kind, value)) or self.audio_for(kind, value)
                    res.labels.append(value if kind == "say" else f"(audio {value})")
                    self._speak(data)
            # After the last input: hear the reply out; the server closes the stream when the bot is done.
            self._wait_reply()
            if self.listen_to_end:
                self._hear_out()
            else:
                deadline = time.monotonic() + self.end_wait
                while not self.closed.is_set() and time.monotonic() < deadline:
                    self._stream(silence(100))
            if not self.closed.is_set():
                res.hung_up = True
                self._send(self.tw.stop())
        except (websocket.WebSocketException, OSError) as exc:
            if not self.closed.is_set():
                res.error = str(exc)
        finally:
            self.closed.set()
            try:
                self.ws.close()
            except Exception:  # noqa: BLE001
                pass
            rx.join(timeout=2)
            res.rest = inputs[given:]
        return res

    def _hear_out(self):
        """Keep the line open while the bot talks, and end_wait s after it stops (its last prompt played to
        its mark), as a caller with nothing more to say does; the server closes the stream meanwhile when
        the bot part is over."""
        give_up = time.monotonic() + LISTEN_AT_MOST
        quiet_since = None
        while not self.closed.is_set() and time.monotonic() < give_up:
            if self._playing():
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= self.end_wait:
                return
            self._stream(silence(100))

    # -- pacing ------------------------------------------------------------------------
    def _send(self, text):
        self.ws.send(text)

    def _stream(self, data: bytes):
        """Send audio in real time, echoing marks whose audio has played."""
        pos = 0
        while pos < len(data) and not self.closed.is_set():
            size = next(self.sizes)
            chunk = data[pos:pos + size]
            now = time.monotonic()
            if self.next_send > now:
                time.sleep(self.next_send - now)
            elif now - self.next_send > 0.02:
                self.res.late_sends += 1
                if now - self.next_send > 0.5:
                    self.next_send = now      # we stalled; do not burst to catch up
            self._echo_marks()
            self._send(self.tw.media(chunk))
            if is_voiced(chunk) and self.waiting_since is not None:
                self.waiting_since = time.monotonic()
            self.res.sent += chunk
            self.res.frames_sent += 1
            self.next_send += len(chunk) / SAMPLE_RATE
            pos += len(chunk)

    def _speak(self, data: bytes):
        playing = self._playing()
        self.reply_started.clear()
        self.need_clear = playing
        self.waiting_since = time.monotonic()   # moved to each voiced frame as it is sent
        self.speaking = True                    # bot audio now is the old prompt, not the reply
        try:
            self._stream(data)
        finally:
            self.speaking = False
        self._expect_reply(self.waiting_since, playing=None)

    def _expect_reply(self, t_last, playing):
        if playing is not None:
            self.reply_started.clear()
            self.need_clear = playing
        self.waiting_since = t_last
        self.last_voiced = t_last

    def _wait_reply(self):
        """Keep the line open (silence) until the reply starts or the stream ends."""
        if self.waiting_since is None:
            return
        deadline = time.monotonic() + self.reply_timeout
        while not self.reply_started.is_set() and not self.closed.is_set() and time.monotonic() < deadline:
            self._stream(silence(20))
        self.waiting_since = None

    def _wait_turn(self) -> bool:
        """Wait for the bot's prompt: speak after it (or `barge_in_after` seconds into it)."""
        self._wait_reply()
        start = time.monotonic()
        while not self.closed.is_set() and time.monotonic() - start < self.reply_timeout:
            if not self.prompt_started.is_set():
                self._stream(silence(20))
                continue
            if self.barge_in_after is not None:
                self._stream(silence(int(self.barge_in_after * 1000)))
                break
            if not self._playing():
                self._stream(silence(int(PAUSE_BEFORE_SPEAKING * 1000)))
                break
            self._stream(silence(20))
        self.prompt_started.clear()
        return not self.closed.is_set()

    def _playing(self) -> bool:
        """The bot is talking: its audio is still playing, or the prompt it belongs to has not ended
        with its mark yet (its next part may still be on the way)."""
        now = time.monotonic()
        with self.lock:
            return bool(self.pending_marks) or now < self.play_until or \
                (self.unmarked and now - self.last_bot_frame < MARK_WAIT)

    def _echo_marks(self):
        now = time.monotonic()
        with self.lock:
            due = [n for t, n in self.pending_marks if t <= now]
            self.pending_marks = [(t, n) for t, n in self.pending_marks if t > now]
        for name in due:
            self._send(self.tw.mark(name))

    # -- what the bot sends -----------------------------------------------------------
    def _receive(self):
        while not self.closed.is_set():
            try:
                raw = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except (websocket.WebSocketException, OSError):
                break
            if not raw:
                break
            msg = protocol.parse_outbound(raw)
            now = time.monotonic()
            event = msg.get("event")
            if event == "media":
                self.res.bot_frames += 1
                with self.lock:
                    if self.play_until > now and self.last_bot_frame and now - self.last_bot_frame > 0.1 \
                            and self.play_until - now < 0.02:
                        self.res.bot_gaps += 1
                    self.play_until = max(self.play_until, now) + len(msg["audio"]) / SAMPLE_RATE
                    self.unmarked = True
                    self.last_bot_frame = now
                self.prompt_started.set()
                if self.waiting_since is not None and not self.need_clear and not self.speaking \
                        and not self.reply_started.is_set():
                    self.res.latencies.append(now - self.waiting_since)
                    self.reply_started.set()
            elif event == "mark":
                with self.lock:
                    self.pending_marks.append((self.play_until, msg["mark"]["name"]))
                    self.unmarked = False
            elif event == "clear":
                self.res.clears += 1
                with self.lock:
                    self.play_until = now
                    self.unmarked = False
                    due = [n for _, n in self.pending_marks]
                    self.pending_marks = []
                self.need_clear = False
                for name in due:       # Twilio returns the marks of cleared audio
                    try:
                        self._send(self.tw.mark(name))
                    except Exception:  # noqa: BLE001
                        pass
        self.res.closed_by_server = not self.res.hung_up
        self.closed.set()
