"""8 kHz mu-law audio: framing, energy and WAV files, byte-exact.

Phone audio stays mu-law end to end (Twilio -> recorder, prompt cache ->
Twilio); only the recognizer gets linear PCM. The WAV files here carry the
mu-law bytes unchanged (format tag 7), so a recording can be compared byte
for byte with what the caller sent.
"""
from __future__ import annotations

import math
import os
import struct
import warnings
from pathlib import Path

with warnings.catch_warnings():
    # The stdlib module until 3.12, audioop-lts after; same API either way.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000     # one byte per sample
SILENCE_BYTE = 0xFF                              # mu-law code for 0
# Energy above this counts as voice. Phone-line noise sits near -60 dBFS and
# speech near -20 dBFS, so -42 leaves margin both ways.
VOICE_DBFS = -42.0


def silence(ms: int) -> bytes:
    return bytes([SILENCE_BYTE]) * (SAMPLE_RATE * ms // 1000)


def to_pcm16(ulaw: bytes) -> bytes:
    return audioop.ulaw2lin(ulaw, 2)


def from_pcm16(pcm: bytes) -> bytes:
    return audioop.lin2ulaw(pcm, 2)


def dbfs(ulaw: bytes) -> float:
    """Level of a mu-law frame in dB relative to full scale (-inf for silence)."""
    if not ulaw:
        return -math.inf
    rms = audioop.rms(audioop.ulaw2lin(ulaw, 2), 2)
    return 20 * math.log10(rms / 32768) if rms else -math.inf


def is_voiced(ulaw: bytes, threshold: float = VOICE_DBFS) -> bool:
    return dbfs(ulaw) >= threshold


def frames(data: bytes, size: int = FRAME_BYTES):
    """Split audio into frames of `size` bytes; the last may be shorter."""
    for i in range(0, len(data), size):
        yield data[i:i + size]


class Reframer:
    """Turns chunks of any size (Twilio does not promise 20 ms) into fixed frames."""

    def __init__(self, size: int = FRAME_BYTES):
        self.size = size
        self.buf = bytearray()

    def push(self, chunk: bytes) -> list:
        self.buf += chunk
        n = len(self.buf) // self.size * self.size
        if not n:
            return []
        out = [bytes(self.buf[i:i + self.size]) for i in range(0, n, self.size)]
        del self.buf[:n]
        return out

    def flush(self) -> bytes:
        rest, self.buf = bytes(self.buf), bytearray()
        return rest


# -- mu-law WAV files ----------------------------------------------------------
_WAVE_FORMAT_MULAW = 7


def _header(data_len: int) -> bytes:
    fmt = struct.pack("<HHIIHHH", _WAVE_FORMAT_MULAW, 1, SAMPLE_RATE, SAMPLE_RATE, 1, 8, 0)
    fact = struct.pack("<I", data_len)
    riff_len = 4 + (8 + len(fmt)) + (8 + len(fact)) + (8 + data_len)
    return (b"RIFF" + struct.pack("<I", riff_len) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"fact" + struct.pack("<I", len(fact)) + fact + b"data" + struct.pack("<I", data_len))


def write_ulaw_wav(path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(_header(len(data)) + data)
    os.replace(tmp, path)


def read_ulaw_wav(path) -> bytes:
    """The mu-law bytes of a WAV written by this module (or any format-7 WAV)."""
    raw = Path(path).read_bytes()
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a WAV file")
    pos, fmt = 12, None
    while pos + 8 <= len(raw):
        cid, size = raw[pos:pos + 4], struct.unpack("<I", raw[pos + 4:pos + 8])[0]
        body = raw[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt = struct.unpack("<HHIIHH", body[:16])
        elif cid == b"data":
            if not fmt or fmt[0] != _WAVE_FORMAT_MULAW or fmt[1] != 1 or fmt[2] != SAMPLE_RATE:
                raise ValueError(f"{path}: not 8 kHz mono mu-law")
            return body
        pos += 8 + size + (size & 1)
    raise ValueError(f"{path}: no data chunk")


class WavRecorder:
    """Appends mu-law audio to a WAV file as it arrives; sizes are fixed up on close."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "wb")
        self.f.write(_header(0))
        self.length = 0

    def write(self, data: bytes) -> None:
        if self.f and data:
            self.f.write(data)
            self.length += len(data)

    def close(self) -> None:
        if not self.f:
            return
        self.f.seek(0)
        self.f.write(_header(self.length))
        self.f.close()
        self.f = None
