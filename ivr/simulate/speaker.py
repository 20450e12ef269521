"""The simulated caller's voice: espeak-ng speech or a WAV file, as 8 kHz mu-law."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from ..speech.tts import VOICES, wav_to_ulaw


def synthesize(text: str, lang: str, speed: int | None = None) -> bytes:
    """What a caller saying `text` sounds like on the line (espeak-ng, then the phone codec)."""
    if not shutil.which("espeak-ng"):
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory(prefix="ivr-say-") as tmp:
        wav = Path(tmp) / "say.wav"
        cmd = ["espeak-ng", "-v", VOICES.get(lang, lang), "-w", str(wav)]
        if speed:
            cmd += ["-s", str(speed)]
        subprocess.run(cmd + [text], check=True, capture_output=True, timeout=30)
        return wav_to_ulaw(wav)


def load_audio(path) -> bytes:
    """Any audio file sox reads, as 8 kHz mono mu-law."""
    return wav_to_ulaw(Path(path), volume=1.0)
