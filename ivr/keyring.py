"""The server secret, and the keys derived from it for each use.

One secret per deployment: `IVR_SECRET_KEY`, or, when unset, a random key
created once in Redis (`keys.SECRET_KEY`, SET NX so concurrent first starts
agree) and shared by every process. It signs dashboard sessions as it is;
every other use gets its own key, HMAC-SHA256(secret, purpose), so no two
uses can be played against each other:

  stream_key  signs the per-call credential in each <Stream> (ivr/streamauth.py)
  hash_key    keys the hashes of caller numbers and client addresses in Redis key names
              (ivr/keys.py): without the secret, a number cannot be tried against a key

The secret is fetched on first use, not at start-up (a hotline must start and
send callers to a person while Redis is down), then kept for the life of the
process: changing it means restarting every process (docs/security.md).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading

from . import keys

STREAM = b"ivr stream credential v1"
HASHES = b"ivr key-name hashes v1"


def shared_secret(redis) -> str:
    """A random key created once and kept in Redis, so every process signs alike and logins
    survive restarts. SET NX makes concurrent first starts agree on one key."""
    redis.set(keys.SECRET_KEY, secrets.token_hex(32), nx=True)
    return redis.get(keys.SECRET_KEY)


class Keyring:
    def __init__(self, redis, configured: str | None = None):
        self.redis = redis
        self._secret = configured or None
        self._derived = {}
        self._lock = threading.Lock()

    def secret(self) -> str:
        if self._secret is None:
            with self._lock:
                if self._secret is None:
                    self._secret = shared_secret(self.redis)
        return self._secret

    def derive(self, purpose: bytes) -> bytes:
        key = self._derived.get(purpose)
        if key is None:
            key = hmac.new(self.secret().encode(), purpose, hashlib.sha256).digest()
            self._derived[purpose] = key
        return key

    @property
    def stream_key(self) -> bytes:
        return self.derive(STREAM)

    @property
    def hash_key(self) -> bytes:
        return self.derive(HASHES)
