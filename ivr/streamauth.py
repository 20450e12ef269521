"""Per-call, single-use credentials that bind a media stream to its call.

Twilio signs the WebSocket handshake like a webhook, but over the stream URL alone
(Twilio forbids a query string on it): the signature is the same for every
stream until the auth token changes, and the CallSid only arrives afterwards,
in the `start` message. So the signature proves "Twilio, or someone replaying
Twilio", never "this call". The binding is ours:

- Each <Stream> ivr returns carries a <Parameter name="credential">: version, stream
  leg, expiry and HMAC-SHA256(stream_key, "v1|CallSid|leg|expiry") (keyring.stream_key,
  derived from the server secret). Twilio hands the parameters back in `start`
  (customParameters) over the TLS socket it opened; nobody else sees them.
- At `start` the server checks the MAC and the expiry (no Redis), then claims the
  leg in one atomic script (CallStore.claim_stream): the call must exist, not be
  ended, have no stream live, and the leg must not have been claimed before.
  Anything else is refused before a byte is written, and the socket is closed
  (1008). A replayed handshake, a second stream for a live call, a stream for an
  ended call or a credential used twice all get nothing.
- A leg is a stream of the call: 0 from POST /voice, 1..MAX_RESUMES when a stopping
  server hands the call on (/voice/stream-ended issues the next leg's credential).

The check costs one HMAC and the claim replaces the write `start` always made:
no extra round trip, and nothing per media frame.
"""
from __future__ import annotations

import hashlib
import hmac

VERSION = "v1"
# Seconds from the TwiML to the `start` message. Twilio opens the stream at once; a retried
# POST /voice returns the stored TwiML (and its credential), so allow a few minutes.
TTL = 300
PARAMETER = "credential"


class StreamRefused(Exception):
    """`start` without a credential that matches a live, unclaimed call: close, change nothing."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason       # label of ivr_media_streams_refused_total


def _mac(key: bytes, sid: str, leg: int, expires: int) -> str:
    msg = f"{VERSION}|{sid}|{leg}|{expires}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:32]


def issue(key: bytes, sid: str, leg: int, now: float) -> str:
    expires = int(now) + TTL
    return f"{VERSION}.{leg}.{expires}.{_mac(key, sid, leg, expires)}"


def verify(key: bytes, sid: str, credential, now: float) -> int:
    """The stream leg the credential grants for this call; StreamRefused otherwise."""
    if not isinstance(credential, str) or not credential:
        raise StreamRefused("no_credential")
    parts = credential.split(".")
    if len(parts) != 4 or parts[0] != VERSION or not all(p.isascii() and p.isdigit() for p in parts[1:3]):
        raise StreamRefused("bad_credential")
    leg, expires = int(parts[1]), int(parts[2])
    if not hmac.compare_digest(parts[3], _mac(key, sid, leg, expires)):
        raise StreamRefused("bad_credential")
    if now > expires:
        raise StreamRefused("expired")
    return leg
