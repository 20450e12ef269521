"""Voicemail: the messages callers leave when nobody can take the call, until an operator handled them.

Like ivr.queues, this concept owns its Redis key (`keys.VOICEMAILS`: sid -> left_at, the
messages nobody has handled yet), the call-record fields it writes (voicemail_*), and its
changes, returned as (fields, ops) to join the call's own atomic script: a retried webhook
or a double click changes nothing twice.

The audio itself is downloaded from Twilio in the background (ivr.speech.transcribe, through
ivr.recordings' allow-list), stored as data_dir/voicemail/{sid}.wav (0600, folder 0700),
transcribed when the call's language has a speech model, and deleted after the recording
retention (IVR_RECORDING_RETENTION_DAYS), like every other recording.
"""
from __future__ import annotations

import os
from pathlib import Path

from . import keys
from .calls import entry_ops
from .speech.recording import sweep

FOLDER = "voicemail"


def left(sid: str, url: str, seconds: str, now: float, ttl: int) -> tuple:
    """The caller left a message: (fields, ops). It waits for an operator from now on."""
    fields = {"voicemail_url": url, "voicemail_seconds": seconds, "voicemail_at": now, "voicemail_state": "new"}
    ops = [["ZADD", keys.VOICEMAILS, now, sid], ["EXPIRE", keys.VOICEMAILS, ttl]]
    return fields, ops


def handled(sid: str, operator: str, now: float, ttl: int) -> tuple:
    """An operator dealt with the message: it leaves the list; the call page keeps it."""
    fields = {"voicemail_state": "handled", "voicemail_handled_by": operator, "voicemail_handled_at": now}
    ops = [["ZREM", keys.VOICEMAILS, sid]] + entry_ops(sid, {
        "who": "operator", "operator": operator, "action": "voicemail_handled", "ts": now}, ttl)
    return fields, ops


def folder(data_dir) -> Path:
    path = Path(data_dir) / FOLDER
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def audio_path(data_dir, sid: str) -> Path:
    """Where a call's voicemail is kept (the sid is validated by the caller of this function)."""
    return Path(data_dir) / FOLDER / f"{sid}.wav"


def store_audio(data_dir, sid: str, data: bytes, retention_seconds: int) -> Path:
    """Write the audio readable by this user only; sweep messages past the retention."""
    path = folder(data_dir)
    sweep(path, retention_seconds)
    target = path / f"{sid}.wav"
    tmp = path / f".{sid}.wav.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, target)
    return target
