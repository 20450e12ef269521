"""Hold music made on the spot, so a queue never sounds silent and needs no external file.

Its length sets the announcement rhythm: Twilio re-requests the waitUrl each
time the music ends, and that is when the caller hears their position again.
"""
from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

RATE = 8000
# A slow, quiet arpeggio (C major, A minor, F major, G major), one note per 0.5 s.
_CHORDS = [(261.63, 329.63, 392.00), (220.00, 261.63, 329.63), (174.61, 220.00, 261.63), (196.00, 246.94, 293.66)]


def render(path: Path, seconds: int) -> Path:
    note = RATE // 2
    samples = []
    notes = [f for chord in _CHORDS for f in chord + (chord[1],)]
    for i in range(seconds * 2):
        freq = notes[i % len(notes)]
        for n in range(note):
            t = n / RATE
            env = math.exp(-3.0 * t) * min(1.0, n / 80)
            value = env * (0.6 * math.sin(2 * math.pi * freq * t) + 0.2 * math.sin(4 * math.pi * freq * t))
            samples.append(int(value * 6000))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    tmp.replace(path)
    return path


def ensure(audio_dir: Path, seconds: int) -> Path:
    path = Path(audio_dir) / f"hold-{seconds}s.wav"
    return path if path.exists() else render(path, seconds)
