"""Parse and build Twilio Media Streams messages (both directions).

Reference: Twilio "Media Streams - WebSocket Messages". Twilio sends
connected, start, media, dtmf, mark and stop; the server may send media,
mark and clear. sequenceNumber, chunk and timestamp travel as strings.
Parsing is strict about shape and lenient about extras: anything malformed
raises ProtocolError, which the session logs and skips; it never ends a call.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

# Twilio's media frames are a few hundred bytes; anything this big is not Twilio.
MAX_MESSAGE_CHARS = 64 * 1024
MAX_PAYLOAD_BYTES = 16 * 1024
ENCODING = "audio/x-mulaw"
SAMPLE_RATE = 8000


class ProtocolError(ValueError):
    """A message that is not valid Twilio Media Streams; skip it, keep the call."""


@dataclass(frozen=True)
class Connected:
    protocol: str = "Call"
    version: str = ""


@dataclass(frozen=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str = ""
    custom: dict = field(default_factory=dict)
    encoding: str = ENCODING
    sample_rate: int = SAMPLE_RATE
    channels: int = 1
    tracks: tuple = ("inbound",)


@dataclass(frozen=True)
class Media:
    payload: bytes
    track: str = "inbound"
    chunk: int = 0
    timestamp_ms: int = 0


@dataclass(frozen=True)
class Dtmf:
    digit: str
    track: str = "inbound_track"


@dataclass(frozen=True)
class Mark:
    name: str


@dataclass(frozen=True)
class Stop:
    call_sid: str = ""


_DIGITS = set("0123456789*#")


def _obj(msg, name) -> dict:
    value = msg.get(name)
    if not isinstance(value, dict):
        raise ProtocolError(f"{msg.get('event')}: '{name}' object missing")
    return value


def _str(d, name, default=None, limit=128) -> str:
    value = d.get(name, default)
    if value is None:
        raise ProtocolError(f"'{name}' missing")
    if not isinstance(value, (str, int)) or len(str(value)) > limit:
        raise ProtocolError(f"'{name}' is not a short string")
    return str(value)


def _int(d, name) -> int:
    raw = d.get(name, "0")
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ProtocolError(f"'{name}' is not a number: {str(raw)[:20]!r}") from None


def parse(message) -> object:
    """One WebSocket text message -> Connected | Start | Media | Dtmf | Mark | Stop."""
    if isinstance(message, (bytes, bytearray)):
        raise ProtocolError("binary message (Twilio sends JSON text)")
    if not isinstance(message, str):
        raise ProtocolError("not a text message")
    if len(message) > MAX_MESSAGE_CHARS:
        raise ProtocolError(f"message of {len(message)} chars is over the {MAX_MESSAGE_CHARS} limit")
    try:
        msg = json.loads(message)
    except ValueError:
        raise ProtocolError("invalid JSON") from None
    except RecursionError:
        # "[[[[...": 64 KB of nesting exhausts the decoder's stack long before the size limit.
        raise ProtocolError("JSON nested too deeply") from None
    if not isinstance(msg, dict):
        raise ProtocolError("message is not a JSON object")
    event = msg.get("event")
    if event == "media":
        media = _obj(msg, "media")
        raw = media.get("payload")
        if not isinstance(raw, str):
            raise ProtocolError("media: payload missing")
        if len(raw) > MAX_PAYLOAD_BYTES * 4 // 3 + 4:
            raise ProtocolError("media: payload too large")
        try:
            payload = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("media: payload is not base64") from None
        return Media(payload, track=_str(media, "track", "inbound"), chunk=_int(media, "chunk"),
                     timestamp_ms=_int(media, "timestamp"))
    if event == "start":
        start = _obj(msg, "start")
        fmt = start.get("mediaFormat") or {}
        if not isinstance(fmt, dict):
            raise ProtocolError("start: mediaFormat is not an object")
        custom = start.get("customParameters") or {}
        if not isinstance(custom, dict):
            raise ProtocolError("start: customParameters is not an object")
        custom = {str(k)[:64]: str(v)[:256] for k, v in list(custom.items())[:32]}
        stream_sid = _str(start, "streamSid", msg.get("streamSid"), limit=64)
        tracks = start.get("tracks") or ["inbound"]
        return Start(stream_sid=stream_sid, call_sid=_str(start, "callSid", limit=64),
                     account_sid=_str(start, "accountSid", "", limit=64), custom=custom,
                     encoding=str(fmt.get("encoding", ENCODING)), sample_rate=_int(fmt, "sampleRate") or SAMPLE_RATE,
                     channels=_int(fmt, "channels") or 1,
                     tracks=tuple(str(t) for t in tracks) if isinstance(tracks, list) else ("inbound",))
    if event == "dtmf":
        dtmf = _obj(msg, "dtmf")
        digit = _str(dtmf, "digit", limit=1)
        if digit not in _DIGITS:
            raise ProtocolError(f"dtmf: {digit!r} is not a key")
        return Dtmf(digit, track=_str(dtmf, "track", "inbound_track"))
    if event == "mark":
        return Mark(_str(_obj(msg, "mark"), "name", limit=256))
    if event == "stop":
        stop = msg.get("stop") if isinstance(msg.get("stop"), dict) else {}
        return Stop(call_sid=str(stop.get("callSid", ""))[:64])
    if event == "connected":
        return Connected(str(msg.get("protocol", "Call"))[:32], str(msg.get("version", ""))[:32])
    raise ProtocolError(f"unknown event {str(event)[:32]!r}")


# -- server -> Twilio ----------------------------------------------------------
def media(stream_sid: str, payload: bytes) -> str:
    return json.dumps({"event": "media", "streamSid": stream_sid,
                       "media": {"payload": base64.b64encode(payload).decode("ascii")}})


def mark(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid})


def parse_outbound(message) -> dict:
    """Server -> Twilio message as a dict with decoded audio (the simulator's side)."""
    msg = json.loads(message)
    if msg.get("event") == "media":
        msg["audio"] = base64.b64decode(msg["media"]["payload"])
    return msg


# -- Twilio -> server (what the simulator sends) --------------------------------
class TwilioStream:
    """Builds Twilio's messages for one stream with running sequence numbers."""

    def __init__(self, stream_sid: str, call_sid: str, account_sid: str = "AC" + "0" * 32):
        self.stream_sid, self.call_sid, self.account_sid = stream_sid, call_sid, account_sid
        self.seq = 0
        self.chunk = 0
        self.samples = 0

    def _next(self) -> str:
        self.seq += 1
        return str(self.seq)

    def connected(self) -> str:
        return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, custom: dict) -> str:
        return json.dumps({"event": "start", "sequenceNumber": self._next(), "streamSid": self.stream_sid, "start": {
            "accountSid": self.account_sid, "streamSid": self.stream_sid, "callSid": self.call_sid,
            "tracks": ["inbound"], "customParameters": custom,
            "mediaFormat": {"encoding": ENCODING, "sampleRate": SAMPLE_RATE, "channels": 1}}})

    def media(self, payload: bytes) -> str:
        self.chunk += 1
        ts = self.samples * 1000 // SAMPLE_RATE
        self.samples += len(payload)
        return json.dumps({"event": "media", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                           "media": {"track": "inbound", "chunk": str(self.chunk), "timestamp": str(ts),
                                     "payload": base64.b64encode(payload).decode("ascii")}})

    def dtmf(self, digit: str) -> str:
        return json.dumps({"event": "dtmf", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                           "dtmf": {"track": "inbound_track", "digit": digit}})

    def mark(self, name: str) -> str:
        return json.dumps({"event": "mark", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                           "mark": {"name": name}})

    def stop(self) -> str:
        return json.dumps({"event": "stop", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                           "stop": {"accountSid": self.account_sid, "callSid": self.call_sid}})
