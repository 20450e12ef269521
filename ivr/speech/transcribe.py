"""Callers' recordings, in the background: spoken comments and voicemail, transcribed offline.

After a rating the caller may leave a short spoken comment; a caller nobody can take may leave
a voicemail. Twilio posts each recording's RecordingUrl to a webhook, which stores the link and
submits it here. One worker thread downloads the recording as WAV through ivr.recordings (only
from Twilio's own host, credentials to nobody else; Twilio may need a moment before the file
exists, so a 404 is retried), decodes it free-form with the shared Vosk model of the call's
language and removes card numbers:

- a comment's text is stored as `comment` in the call record (`comment_transcribed` event);
  languages without a model: nothing is downloaded, and the log says so once;
- a voicemail is always stored (ivr.voicemail: data_dir/voicemail/{sid}.wav, 0600) so an
  operator can play it, transcribed where a model exists (`voicemail_text`), and deleted at
  Twilio once stored when IVR_VOICEMAIL_DELETE_REMOTE is on (`voicemail_stored` event).

The queue is bounded: when recordings arrive faster than one thread handles them, new ones are
dropped with a warning (the recording link stays stored, and Twilio keeps the recording).
"""
from __future__ import annotations

import json
import logging
import queue
import tempfile
import threading
import time
from pathlib import Path

from ..media.audio import frames, to_pcm16
from ..recordings import RecordingRefused, origin
from ..redact import redact
from .recognizer import Recognizer
from .tts import wav_to_ulaw

log = logging.getLogger("ivr.comments")  # one logger for comments and voicemail

CHUNK = 8000                       # 1 s of 8 kHz mu-law per decoder call


def transcribe_ulaw(model, lang: str, ulaw: bytes) -> str:
    """Free-form text of 8 kHz mu-law audio of any length (Vosk's own endpoints split it)."""
    recognizer = Recognizer(model, lang)
    recognizer.listen([], True)       # no grammar: free-form only
    free = recognizer.free_rec
    parts = []
    for chunk in frames(ulaw, CHUNK):
        if free.AcceptWaveform(to_pcm16(chunk)):
            parts.append(json.loads(free.Result()).get("text", ""))
    parts.append(recognizer.final().text)
    return " ".join(p.strip() for p in parts if p.strip())


class RecordingWorker:
    """One background thread for every recording a call leaves (see the module docstring)."""

    def __init__(self, store, models, source, data_dir=None, retention_seconds=30 * 86400, delete_remote=False,
                 maxsize=64, retries=4, retry_wait=2.0):
        self.store = store
        self.models = models
        self.source = source                  # ivr.recordings.Recordings: the allow-list and the credentials
        self.data_dir = data_dir
        self.retention_seconds = retention_seconds
        self.delete_remote = delete_remote
        self.retries = retries
        self.retry_wait = retry_wait
        self.queue = queue.Queue(maxsize=maxsize)
        self._thread = None
        self._lock = threading.Lock()
        self._warned = set()
        self.done = 0
        self.failed = 0
        self.dropped = 0
        self.refused = 0

    # -- producer side (the /voice/comment and /voice/voicemail webhooks) ------------------
    def submit(self, sid: str, url: str, lang: str) -> bool:
        """Queue a spoken comment; False when it will not be transcribed (not Twilio's URL, no model,
        queue full)."""
        if not self._trusted(sid, url, "comment"):
            return False
        if not self.models.available(lang):
            self._warn_no_model(lang, "spoken comments stay recordings, not text")
            return False
        return self._put(("comment", sid, url, lang))

    def submit_voicemail(self, sid: str, url: str, lang: str) -> bool:
        """Queue a voicemail to download and store (and transcribe where a model exists)."""
        if not self._trusted(sid, url, "voicemail"):
            return False
        return self._put(("voicemail", sid, url, lang))

    def _trusted(self, sid, url, what) -> bool:
        """Refused before anything is queued, let alone requested: not one of our recordings at Twilio."""
        try:
            self.source.check(url)
            return True
        except RecordingRefused as exc:
            self.refused += 1
            log.warning("%s of call %s not fetched: %s (%s)", what, sid, exc, origin(url)[:80])
            return False

    def _warn_no_model(self, lang, what):
        with self._lock:
            first = lang not in self._warned
            self._warned.add(lang)
        if first:
            log.warning("no Vosk model for lang=%s: %s (see `ivr models list`)", lang, what)

    def _put(self, job) -> bool:
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            self.dropped += 1
            log.warning("%s of call %s not fetched: %d recordings already waiting", job[0], job[1],
                        self.queue.qsize())
            return False
        self._start()
        return True

    def _start(self):
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="ivr-recordings", daemon=True)
                self._thread.start()

    # -- the worker ---------------------------------------------------------------------
    def _run(self):
        while True:
            job = self.queue.get()
            if job is None:
                self.queue.task_done()
                return
            kind, sid = job[0], job[1]
            try:
                if kind == "voicemail":
                    self.store_voicemail(*job[1:])
                else:
                    self.transcribe(*job[1:])
                self.done += 1
            except RecordingRefused as exc:
                self.failed += 1
                log.warning("%s of call %s not fetched: %s", kind, sid, exc)
            except Exception:  # one bad recording must not stop the worker
                self.failed += 1
                log.exception("%s of call %s: fetching or transcribing failed", kind, sid)
            finally:
                self.queue.task_done()

    def _fetch(self, url: str) -> bytes:
        return self.source.download(url, ".wav", retries=self.retries, retry_wait=self.retry_wait)

    def _text(self, wav: bytes, lang: str) -> tuple:
        """(text, seconds of audio) of a WAV recording, decoded free-form; card numbers removed."""
        with tempfile.TemporaryDirectory(prefix="ivr-recording-") as tmp:
            path = Path(tmp) / "recording.wav"
            path.write_bytes(wav)
            ulaw = wav_to_ulaw(path, volume=1.0)
        return redact(transcribe_ulaw(self.models.get(lang), lang, ulaw)).strip(), len(ulaw) / 8000

    def transcribe(self, sid: str, url: str, lang: str) -> str:
        """Download, decode, redact and store one comment (synchronously); the stored text."""
        started = time.monotonic()
        text, seconds = self._text(self._fetch(url), lang)
        fields = {"comment_asr": "vosk" if text else "no_speech", "comment_lang": lang,
                  "comment_transcribed_at": self.store.now()}
        if text:
            fields["comment"] = text
        self.store.record_once(sid, "comment_text", fields, "comment_transcribed")
        log.info("comment of call %s transcribed (%.1f s of audio in %.1f s)", sid, seconds,
                 time.monotonic() - started)
        return text

    def store_voicemail(self, sid: str, url: str, lang: str) -> str:
        """Download and keep one voicemail, transcribe it where a model exists; the text or ""."""
        from .. import voicemail

        started = time.monotonic()
        wav = self._fetch(url)
        path = voicemail.store_audio(self.data_dir, sid, wav, self.retention_seconds)
        fields = {"voicemail_stored_at": self.store.now(), "voicemail_bytes": len(wav)}
        text = ""
        if self.models.available(lang):
            text, _ = self._text(wav, lang)
            fields.update(voicemail_asr="vosk" if text else "no_speech", voicemail_text=text or None)
        else:
            self._warn_no_model(lang, "voicemails are stored and playable, not transcribed")
        if self.delete_remote:
            try:
                fields["voicemail_deleted_remote"] = 1 if self.source.delete(url) else None
            except Exception:
                log.warning("voicemail of call %s: stored, but deleting it at Twilio failed", sid, exc_info=True)
        self.store.record_once(sid, "voicemail_stored", fields, "voicemail_stored")
        log.info("voicemail of call %s stored (%d bytes, %s) in %.1f s", sid, len(wav), path.name,
                 time.monotonic() - started)
        return text

    def wait(self, timeout: float = 30.0) -> bool:
        """Until every queued recording is handled (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.queue.unfinished_tasks

    def close(self):
        if self._thread is not None and self._thread.is_alive():
            self.queue.put(None)
            self._thread.join(timeout=5)
