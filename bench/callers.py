"""Many simulated Twilio media-stream callers on one asyncio loop with one shared 20 ms clock.

The threaded simulator (ivr.simulate.stream_client: two threads per call) costs
~15 ms of CPU per call-second and fell behind real time at 30 calls on two
cores, which then showed up as *server* latency. Here one ticker sends every
active caller's next frame (pre-encoded JSON, so a frame costs one string
format and one socket write), and one reader per socket only json-parses what
the bot sends. Same protocol and same measurement as the threaded client:
the time from the caller's last voiced frame (as sent) to the first frame of
the bot's reply (as received).
"""
from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import xml.etree.ElementTree as ET

from websockets.asyncio.client import connect

from ivr.media.audio import FRAME_BYTES, SAMPLE_RATE, is_voiced, silence
from ivr.media.audio import frames as split_frames
from ivr.simulate.twilio_client import TwilioClient

TICK = FRAME_BYTES / SAMPLE_RATE            # 20 ms
SILENT = base64.b64encode(silence(20)).decode()


class Utterance:
    """Pre-encoded frames of one thing the caller says, and which frame is the last voiced one."""

    def __init__(self, audio: bytes):
        frames = list(split_frames(audio))
        self.payloads = [base64.b64encode(f).decode() for f in frames]
        self.sizes = [len(f) for f in frames]      # the last frame of a recording is usually short
        voiced = [i for i, f in enumerate(frames) if is_voiced(f)]
        self.last_voiced = voiced[-1] if voiced else len(frames) - 1


class Caller:
    def __init__(self, i, utterances, barge_in_after=1.0, end_wait=0.5, reply_timeout=15.0):
        self.i = i
        self.sid = "CA" + secrets.token_hex(16)
        self.stream_sid = "MZ" + secrets.token_hex(16)
        self.script = list(utterances)
        self.barge_frames = int(barge_in_after / TICK)
        self.end_frames = int(end_wait / TICK)
        self.timeout_frames = int(reply_timeout / TICK)
        self.ws = None
        self.seq = self.chunk = 0
        self.state, self.count = "prompt", 0      # prompt -> pause -> speak -> reply -> (prompt | end) -> done
        self.pos = 0
        self.utt = None
        self.t_last = None
        self.need_clear = False
        self.replied = False
        self.prompt_started = False
        self.play_until = 0.0
        self.marks = []
        self.latencies, self.late, self.sent_bytes, self.bot_frames = [], 0, 0, 0
        self.bytes_at_mark = 0       # audio sent before the latest mark echo: the server may end the
        self.stopped = False         # stream on the final mark, so later frames are never read (not lost)
        self.error = None
        self.done = asyncio.Event()
        self.t_start = self.t_end = None   # monotonic: webhook sent, stream over

    # -- what goes out -----------------------------------------------------------------
    def _msg(self, payload):
        self.seq += 1
        self.chunk += 1
        # Formatted by hand, not json.dumps: 50 messages a second per simulated caller.
        return (f'{{"event": "media", "sequenceNumber": "{self.seq}", "streamSid": "{self.stream_sid}", '
                f'"media": {{"track": "inbound", "chunk": "{self.chunk}", "timestamp": "{(self.chunk - 1) * 20}", '
                f'"payload": "{payload}"}}}}')

    def _event(self, obj):
        self.seq += 1
        return json.dumps(dict(obj, sequenceNumber=str(self.seq), streamSid=self.stream_sid))

    def next_messages(self, now) -> list:
        """Called once per tick: the frame this caller sends now (plus any marks now due)."""
        out = []
        if self.marks:
            due = [n for t, n in self.marks if t <= now]
            if due:
                self.marks = [(t, n) for t, n in self.marks if t > now]
                out += [self._event({"event": "mark", "mark": {"name": n}}) for n in due]
                self.bytes_at_mark = self.sent_bytes
        payload, size = SILENT, FRAME_BYTES
        self.count += 1
        if self.state == "prompt":
            if self.prompt_started:
                self.state, self.count = "pause", 0
            elif self.count > self.timeout_frames:
                self.state = "end"
        elif self.state == "pause" and self.count >= self.barge_frames:
            self.utt, self.pos = self.script.pop(0), 0
            self.need_clear = self.playing(now)
            self.replied = False
            self.state = "speak"
        if self.state == "speak":
            payload, size = self.utt.payloads[self.pos], self.utt.sizes[self.pos]
            if self.pos == self.utt.last_voiced:
                self.t_last = now
            self.pos += 1
            if self.pos == len(self.utt.payloads):
                self.state, self.count = "reply", 0
        elif self.state == "reply":
            if self.replied or self.count > self.timeout_frames:
                self.t_last = None
                self.prompt_started = self.replied
                self.state, self.count = ("prompt" if self.script else "end"), 0
        elif self.state == "end" and self.count >= self.end_frames:
            out.append(self._event({"event": "stop", "stop": {"accountSid": "AC" + "0" * 32, "callSid": self.sid}}))
            self.state, self.stopped = "done", True
            return out
        self.sent_bytes += size
        out.append(self._msg(payload))
        return out

    def playing(self, now):
        return bool(self.marks) or now < self.play_until

    # -- what comes in -------------------------------------------------------------------
    async def receive(self):
        try:
            async for raw in self.ws:
                now = time.monotonic()
                msg = json.loads(raw)
                event = msg.get("event")
                if event == "media":
                    self.bot_frames += 1
                    self.play_until = max(self.play_until, now) + len(msg["media"]["payload"]) * 3 / 4 / SAMPLE_RATE
                    self.prompt_started = True
                    # The reply counts from its first frame after the last voiced one, even while this
                    # caller still sends the utterance's trailing silence (~300 ms of espeak's output):
                    # a caller hears the bot at once, and waiting for "reply" measured our own tail.
                    if (self.state in ("speak", "reply") and self.t_last is not None and not self.need_clear
                            and not self.replied):
                        self.latencies.append(now - self.t_last)
                        self.replied = True
                elif event == "mark":
                    self.marks.append((self.play_until, msg["mark"]["name"]))
                elif event == "clear":
                    self.play_until = now
                    due, self.marks = [n for _, n in self.marks], []
                    self.need_clear = False
                    for n in due:
                        await self.ws.send(self._event({"event": "mark", "mark": {"name": n}}))
        except Exception as exc:  # noqa: BLE001 - reported per call
            if self.state != "done":
                self.error = repr(exc)
        finally:
            self.state = "done"
            self.done.set()


class CallerSwarm:
    """Start calls (webhook, then stream) and drive all their audio from one clock."""

    def __init__(self, base_url, token, lang="ko"):
        self.client = TwilioClient(base_url, token)
        self.base_url, self.token, self.lang = base_url, token, lang
        self.active = []
        self.late_ticks = 0

    async def _start(self, caller, delay):
        await asyncio.sleep(delay)
        caller.t_start = time.monotonic()
        try:
            await self._call(caller)
        finally:
            caller.t_end = time.monotonic()

    async def _call(self, caller):
        base = {"CallSid": caller.sid, "AccountSid": "AC" + "0" * 32, "From": f"+1500555{caller.i:04d}",
                "To": "+15005550100", "Direction": "inbound", "CallStatus": "in-progress"}
        status, body = await asyncio.to_thread(self.client.post, f"/voice?lang={self.lang}", base)
        if status != 200:
            raise RuntimeError(f"/voice answered {status}")
        stream = ET.fromstring(body).find(".//Stream")
        if stream is None:
            raise RuntimeError("no <Stream> in the answer to /voice (speech off or no model?)")
        custom = {p.get("name"): p.get("value") for p in stream if p.tag == "Parameter"}
        url = stream.get("url")
        sig = self.client.validator.compute_signature(url, {})
        target = url.replace(self.client.public_url.replace("http", "ws"), self.base_url.replace("http", "ws"))
        caller.ws = await connect(target, additional_headers={"X-Twilio-Signature": sig}, compression=None,
                                  max_queue=None, ping_interval=None)
        await caller.ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await caller.ws.send(caller._event({"event": "start", "start": {
            "accountSid": "AC" + "0" * 32, "streamSid": caller.stream_sid, "callSid": caller.sid,
            "tracks": ["inbound"], "customParameters": custom,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
        caller.base = base
        self.active.append(caller)
        await caller.receive()

    async def _ticker(self):
        start = time.monotonic()
        k = 0
        while self.running:
            k += 1
            due = start + k * TICK
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > TICK:
                self.late_ticks += 1
                for c in self.active:
                    c.late += 1
                if now - due > 0.5:          # stalled: do not burst to catch up
                    start, k = now, 0
            now = time.monotonic()
            for c in list(self.active):
                if c.state == "done":
                    self.active.remove(c)
                    try:
                        await c.ws.close()
                    except Exception:  # noqa: BLE001
                        pass
                    continue
                try:
                    for m in c.next_messages(now):
                        await c.ws.send(m)
                except Exception as exc:  # noqa: BLE001
                    c.error, c.state = repr(exc), "done"

    async def run(self, callers, spread):
        self.running = True
        ticker = asyncio.create_task(self._ticker())
        starts = [asyncio.create_task(self._start(c, spread * c.i / max(1, len(callers))))
                  for c in callers]
        results = await asyncio.gather(*starts, return_exceptions=True)
        for c, r in zip(callers, results):
            if isinstance(r, Exception) and not c.error:
                c.error = repr(r)
        await self._finish(ticker, callers)

    async def sustain(self, utterances, n, seconds, call_seconds):
        """n lines kept busy for `seconds`: each line places its next call as soon as the last one
        hangs up, and the lines start `call_seconds / n` apart, so callers speak at unrelated moments."""
        self.running = True
        ticker = asyncio.create_task(self._ticker())
        callers = []
        until = time.monotonic() + seconds

        async def line(k):
            await asyncio.sleep(call_seconds * k / n)
            while time.monotonic() < until:
                c = Caller(len(callers), utterances)
                callers.append(c)
                try:
                    await self._start(c, 0)
                except Exception as exc:  # noqa: BLE001 - reported per call
                    c.error = c.error or repr(exc)
                    await asyncio.sleep(TICK)
        await asyncio.gather(*(line(k) for k in range(n)))
        await self._finish(ticker, callers)
        return callers

    async def _finish(self, ticker, callers):
        self.running = False
        await ticker
        await asyncio.gather(*[asyncio.to_thread(self.client.post, "/voice/status",
                                                 dict(c.base, CallStatus="completed", CallDuration="10"))
                               for c in callers if hasattr(c, "base")], return_exceptions=True)


def run_sustained(base_url, token, utterances, n, seconds, call_seconds, lang="ko"):
    """n calls in progress at all times for `seconds` (see CallerSwarm.sustain); returns all calls."""
    swarm = CallerSwarm(base_url, token, lang)
    callers = asyncio.run(swarm.sustain(utterances, n, seconds, call_seconds))
    return callers, swarm


def run_calls(base_url, token, utterances, n, spread=2.0, lang="ko"):
    """n simultaneous callers, each saying `utterances` in turn; returns the Caller objects."""
    callers = [Caller(i, utterances) for i in range(n)]
    swarm = CallerSwarm(base_url, token, lang)
    asyncio.run(swarm.run(callers, spread))
    return callers, swarm
