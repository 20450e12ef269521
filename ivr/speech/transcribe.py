"""Transcribe callers' spoken comments offline, in the background.

After a rating the caller may leave a short spoken comment (<Record>); Twilio
posts its RecordingUrl to /voice/comment, which stores the link and submits
it here. One worker thread downloads `RecordingUrl + ".wav"` (HTTP basic auth
with TWILIO_ACCOUNT_SID and the auth token; Twilio may need a moment before
the file exists, so a 404 is retried), decodes it free-form with the shared
Vosk model of the call's language, removes card numbers and stores the text
as `comment` in the call record, with a `comment_transcribed` event.

Recordings are fetched only from Twilio's own HTTPS hosts (`api.twilio.com` and its
regional `api.<edge>.<region>.twilio.com`; IVR_RECORDING_ORIGINS replaces the list):
a RecordingUrl anywhere else is refused before any request, so the account's
credentials can never be sent to a host an attacker names. The credentials are an
unredirected header: a redirect (Twilio may send the media elsewhere) is followed
over HTTPS only, and without them.

The queue is bounded: when comments arrive faster than one thread decodes
them, new ones are dropped with a warning (the recording link stays stored).
Languages without a model: nothing is stored, and the log says so once.
"""
from __future__ import annotations

import base64
import json
import logging
import queue
import re
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from ..media.audio import frames, to_pcm16
from ..redact import redact
from .recognizer import Recognizer
from .tts import wav_to_ulaw

log = logging.getLogger("ivr.comments")

# Twilio's REST API, global and regional (edge.region): where RecordingUrl points.
TWILIO_API_HOST = re.compile(r"api(\.[a-z0-9-]+\.[a-z0-9-]+)?\.twilio\.com")
MAX_BYTES = 16 * 1024 * 1024      # a 20 s comment is ~320 KB as 8 kHz 16-bit WAV
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


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def trusted_recording_url(url: str, origins=()) -> bool:
    """An HTTPS URL on Twilio's API host, or one of the configured `origins` ("https://host[:port]")."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.username or parts.password:
        return False
    if origins:
        return origin(url) in {o.rstrip("/").lower() for o in origins}
    return parts.scheme == "https" and parts.port in (None, 443) and bool(
        TWILIO_API_HOST.fullmatch(parts.hostname or ""))


class _HttpsRedirectsOnly(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only over HTTPS. The credentials are an unredirected header, so urllib
    never carries them to the redirect's host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme != "https":
            raise urllib.error.HTTPError(newurl, code, "redirect to a non-HTTPS URL refused", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def recording_wav_url(url: str) -> str:
    """Twilio's RecordingUrl has no extension; .wav asks for the 8 kHz WAV."""
    return url if url.lower().endswith((".wav", ".mp3")) else url + ".wav"


class CommentTranscriber:
    def __init__(self, store, models, account_sid=None, auth_token=None, maxsize=64, timeout=20.0,
                 retries=4, retry_wait=2.0, origins=()):
        self.store = store
        self.origins = tuple(origins)    # empty: Twilio's API hosts over HTTPS (trusted_recording_url)
        self._opener = urllib.request.build_opener(_HttpsRedirectsOnly)
        self.models = models
        self.auth = None
        if account_sid and auth_token:
            raw = f"{account_sid}:{auth_token}".encode()
            self.auth = "Basic " + base64.b64encode(raw).decode()
        self.timeout = timeout
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

    # -- producer side (the /voice/comment webhook) -----------------------------------
    def submit(self, sid: str, url: str, lang: str) -> bool:
        """Queue a comment; False when it will not be transcribed (not Twilio's URL, no model, queue full)."""
        if not trusted_recording_url(url, self.origins):
            self.refused += 1
            log.warning("comment of call %s not fetched: its RecordingUrl is not on Twilio's HTTPS hosts (%s)", sid,
                        origin(url)[:80])
            return False
        if not self.models.available(lang):
            with self._lock:
                first = lang not in self._warned
                self._warned.add(lang)
            if first:
                log.warning("no Vosk model for lang=%s: spoken comments stay recordings, not text "
                            "(see `ivr models list`)", lang)
            return False
        try:
            self.queue.put_nowait((sid, url, lang))
        except queue.Full:
            self.dropped += 1
            log.warning("comment of call %s not transcribed: %d comments already waiting", sid, self.queue.qsize())
            return False
        self._start()
        return True

    def _start(self):
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="ivr-comments", daemon=True)
                self._thread.start()

    # -- the worker ---------------------------------------------------------------------
    def _run(self):
        while True:
            job = self.queue.get()
            if job is None:
                self.queue.task_done()
                return
            try:
                self.transcribe(*job)
                self.done += 1
            except Exception:  # one bad recording must not stop the worker
                self.failed += 1
                log.exception("comment of call %s: transcription failed", job[0])
            finally:
                self.queue.task_done()

    def transcribe(self, sid: str, url: str, lang: str) -> str:
        """Download, decode, redact and store one comment (synchronously); the stored text."""
        started = time.monotonic()
        wav = self.download(recording_wav_url(url))
        with tempfile.TemporaryDirectory(prefix="ivr-comment-") as tmp:
            path = Path(tmp) / "comment.wav"
            path.write_bytes(wav)
            ulaw = wav_to_ulaw(path, volume=1.0)
        text = redact(transcribe_ulaw(self.models.get(lang), lang, ulaw)).strip()
        fields = {"comment_asr": "vosk" if text else "no_speech", "comment_lang": lang,
                  "comment_transcribed_at": self.store.now()}
        if text:
            fields["comment"] = text
        self.store.record_once(sid, "comment_text", fields, "comment_transcribed")
        log.info("comment of call %s transcribed (%.1f s of audio in %.1f s)", sid, len(ulaw) / 8000,
                 time.monotonic() - started)
        return text

    def download(self, url: str) -> bytes:
        if not trusted_recording_url(url, self.origins):      # checked at submit too; never send credentials
            raise ValueError(f"not a Twilio recording URL: {origin(url)[:80]}")
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(url, headers={"User-Agent": "ivr-comment-transcriber"})
            if self.auth:
                req.add_unredirected_header("Authorization", self.auth)
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    data = resp.read(MAX_BYTES + 1)
                if len(data) > MAX_BYTES:
                    raise ValueError(f"recording larger than {MAX_BYTES} bytes")
                return data
            except urllib.error.HTTPError as exc:
                # Twilio answers 404 for a few seconds until the recording is processed.
                if exc.code != 404 or attempt == self.retries:
                    raise
            time.sleep(self.retry_wait * (attempt + 1))
        raise RuntimeError("unreachable")

    def wait(self, timeout: float = 30.0) -> bool:
        """Until every queued comment is handled (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.queue.unfinished_tasks

    def close(self):
        if self._thread is not None and self._thread.is_alive():
            self.queue.put(None)
            self._thread.join(timeout=5)
