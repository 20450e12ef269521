"""Recordings kept at Twilio (spoken comments, voicemail): fetched from Twilio and nowhere else.

A `RecordingUrl` arrives in a webhook. The webhook is signed, but the URL is still data, and
fetching it with the account's credentials anywhere but Twilio would hand them to whoever
chose the URL. So before any request is made, a recording URL must

- be HTTPS (port 443) on Twilio's API host (api.twilio.com, or a regional
  api.<edge>.<region>.twilio.com), or have one of the origins IVR_RECORDING_ORIGINS lists
  instead (a deployment's own proxy), or the origin of TWILIO_API_URL (where ivr's REST calls
  go; a local stand-in in the tests);
- name a recording: /2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}, of this
  account when its SID is configured.

Anything else raises RecordingRefused and nothing is sent anywhere. Credentials travel in an
"unredirected" header: Twilio may answer a media request with a redirect to its storage,
which is followed (HTTPS only) without them. Comments and voicemail (ivr.speech.transcribe's
RecordingWorker) both download through this one module.
"""
from __future__ import annotations

import base64
import logging
import re
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

log = logging.getLogger("ivr.recordings")

# Twilio's REST API, global and regional (edge.region): where RecordingUrl points.
TWILIO_API_HOST = re.compile(r"api(\.[a-z0-9-]+\.[a-z0-9-]+)?\.twilio\.com")
RECORDING_PATH = re.compile(r"/2010-04-01/Accounts/(AC[0-9a-fA-F]{32})/Recordings/(RE[0-9a-fA-F]{32})"
                            r"(?:\.(wav|mp3|json))?")
MAX_BYTES = 32 * 1024 * 1024      # two minutes of 8 kHz 16-bit WAV is ~2 MB; far more is not a recording


class RecordingRefused(ValueError):
    """A URL that is not a recording on Twilio's host: nothing was requested."""


def origin(url: str) -> str:
    try:
        parts = urlsplit(url or "")
        return f"{parts.scheme}://{parts.netloc}".lower()
    except ValueError:
        return "?"


def trusted_recording_url(url: str, origins=()) -> bool:
    """An HTTPS URL on Twilio's API host, or on one of the configured `origins` ("https://host[:port]")
    instead. The host only; Recordings.check also wants a recording of this account."""
    try:
        parts = urlsplit(url or "")
        port = parts.port
    except ValueError:
        return False
    if parts.username or parts.password:
        return False
    if origins:
        return origin(url) in {o.rstrip("/").lower() for o in origins}
    return parts.scheme == "https" and port in (None, 443) and bool(TWILIO_API_HOST.fullmatch(parts.hostname or ""))


def _origin(url: str) -> tuple:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port


class _NoCredentialsRedirect(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to HTTPS (credentials are unredirected headers: never resent)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme != "https" and _origin(newurl) != _origin(req.full_url):
            raise RecordingRefused(f"redirect to a non-HTTPS address refused: {urlsplit(newurl).hostname}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class Recordings:
    """Download and delete recordings of one Twilio account, from Twilio only."""

    def __init__(self, api_url: str = "https://api.twilio.com", account_sid: str | None = None,
                 credentials: tuple | None = None, timeout: float = 20.0, origins=()):
        self.api_origin = _origin(api_url)
        self.origins = tuple(origins)
        self.account_sid = account_sid
        self.auth = None
        if credentials:
            self.auth = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoCredentialsRedirect)

    @classmethod
    def from_config(cls, config) -> Recordings:
        return cls(config.twilio_api_url, config.twilio_account_sid, config.twilio_credentials,
                   origins=config.recording_origins)

    def check(self, url: str) -> str:
        """The recording's URL without extension; RecordingRefused unless it is one of ours at Twilio."""
        parts = urlsplit(url or "")
        scheme, host, _ = _origin(url or "")
        ours = _origin(url or "") == self.api_origin and not (parts.username or parts.password)
        if not (ours or trusted_recording_url(url, self.origins)):
            raise RecordingRefused(f"recording URL on {host or 'no host'!r} refused: not on Twilio's HTTPS hosts")
        m = RECORDING_PATH.fullmatch(parts.path)
        if m is None or parts.query or parts.fragment:
            raise RecordingRefused("recording URL refused: not /2010-04-01/Accounts/AC…/Recordings/RE…")
        if self.account_sid and m.group(1) != self.account_sid:
            raise RecordingRefused("recording URL refused: another account's recording")
        return f"{scheme}://{parts.netloc}{parts.path.rsplit('.', 1)[0] if m.group(3) else parts.path}"

    def _request(self, url, method="GET"):
        req = urllib.request.Request(url, method=method, headers={"User-Agent": "ivr-recordings"})
        if self.auth:
            req.add_unredirected_header("Authorization", self.auth)
        return self._opener.open(req, timeout=self.timeout)

    def download(self, url: str, ext: str = ".wav", retries: int = 4, retry_wait: float = 2.0,
                 max_bytes: int = MAX_BYTES) -> bytes:
        """The recording as `ext` (.wav: 8 kHz 16-bit mono). Twilio answers 404 for a few seconds
        while a recording is processed, so a 404 is retried."""
        target = self.check(url) + ext
        for attempt in range(retries + 1):
            try:
                with self._request(target) as resp:
                    data = resp.read(max_bytes + 1)
                if len(data) > max_bytes:
                    raise ValueError(f"recording larger than {max_bytes} bytes")
                return data
            except urllib.error.HTTPError as exc:
                if exc.code != 404 or attempt == retries:
                    raise
            time.sleep(retry_wait * (attempt + 1))
        raise RuntimeError("unreachable")

    def delete(self, url: str) -> bool:
        """Delete the recording at Twilio (DELETE …/Recordings/RE….json); True when it is gone."""
        target = self.check(url) + ".json"
        try:
            with self._request(target, method="DELETE") as resp:
                return resp.status in (200, 204)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return True
            raise
