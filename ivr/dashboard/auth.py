"""Operator accounts, login lock-out and server-side sessions, all in Redis.

Accounts live in Redis (not a file) so every server process, and the `ivr operators`
command, see the same ones. The browser's signed cookie only carries a random session
token; the session itself is a Redis key, so logging out, removing an operator or
expiry takes effect in every process at once.
"""
from __future__ import annotations

import re
import secrets
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .. import keys

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
MIN_PASSWORD = 10
# An attacker on one address may try several accounts; a shared office NAT needs more slack
# than a single account does, hence a higher per-address limit.
IP_FACTOR = 4

_hasher = PasswordHasher()
# Verified when the account does not exist, so a wrong name costs as long as a wrong password
# and response times do not reveal which names exist.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class AuthError(ValueError):
    pass


def check_name(name: str) -> str:
    name = (name or "").strip().lower()
    if not NAME_RE.match(name):
        raise AuthError("operator names are 1-32 characters: a-z, 0-9, dot, dash, underscore")
    return name


class Operators:
    """Operator accounts: argon2 password hashes in ivr:operator:{name}."""

    def __init__(self, redis, clock=time.time):
        self.r = redis
        self.clock = clock

    def add(self, name: str, password: str, replace: bool = False) -> str:
        name = check_name(name)
        if len(password or "") < MIN_PASSWORD:
            raise AuthError(f"passwords need at least {MIN_PASSWORD} characters")
        if not replace and self.r.exists(keys.operator(name)):
            raise AuthError(f"operator {name} already exists (use --replace to set a new password)")
        pipe = self.r.pipeline()
        pipe.hset(keys.operator(name), mapping={"password": _hasher.hash(password), "created_at": round(self.clock())})
        pipe.sadd(keys.OPERATORS, name)
        pipe.execute()
        if replace:
            # A new password is how a leaked one is rotated: whoever logged in with the old one is out.
            self._drop_sessions(name)
        return name

    def remove(self, name: str) -> bool:
        name = check_name(name)
        pipe = self.r.pipeline()
        pipe.delete(keys.operator(name))
        pipe.srem(keys.OPERATORS, name)
        removed = pipe.execute()[0] > 0
        self._drop_sessions(name)
        return removed

    def list(self) -> list:
        names = sorted(self.r.smembers(keys.OPERATORS))
        pipe = self.r.pipeline(transaction=False)
        for n in names:
            pipe.hmget(keys.operator(n), "created_at", "last_login_at")
        return [{"name": n, "created_at": c, "last_login_at": last} for n, (c, last) in zip(names, pipe.execute())]

    def exists(self, name: str) -> bool:
        return bool(self.r.exists(keys.operator(name)))

    def verify(self, name: str, password: str) -> bool:
        stored = self.r.hget(keys.operator(name), "password") if NAME_RE.match(name or "") else None
        try:
            _hasher.verify(stored or _DUMMY_HASH, password or "")
        except (VerificationError, InvalidHashError):
            return False
        if stored is None:
            return False
        if _hasher.check_needs_rehash(stored):
            self.r.hset(keys.operator(name), "password", _hasher.hash(password))
        self.r.hset(keys.operator(name), "last_login_at", round(self.clock()))
        return True

    def _drop_sessions(self, name: str):
        # Sessions are few (one per open browser); a SCAN on removal is cheaper than an index.
        for key in self.r.scan_iter(match=keys.SESSIONS_MATCH, count=500):
            if self.r.hget(key, "operator") == name:
                self.r.delete(key)


# One attempt, counted before the password is checked: both counters go up in one atomic step and
# the attempt may go on only while both are within their limits. Twelve concurrent wrong passwords
# with a limit of 5 therefore get exactly 5 checks; a check-then-count would let all 12 through.
_ATTEMPT = """
local pair, ip = KEYS[1], KEYS[2]
local max_pair, max_ip, lock = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local p = redis.call('INCR', pair)
redis.call('EXPIRE', pair, lock)
local i = redis.call('INCR', ip)
redis.call('EXPIRE', ip, lock)
if p > max_pair or i > max_ip then return lock end
return 0
"""

# The attempt was right: the pair starts afresh, the address gets the attempt back (never below zero,
# and never a counter without its expiry).
_SUCCEEDED = """
redis.call('DEL', KEYS[1])
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
"""


class Lockout:
    """Login attempts per (account, client address) pair and per client address; too many lock.

    Keyed by the pair, not the account alone, so that nobody can lock an operator out from
    everywhere by failing at their name: a lock holds for the address it came from. The
    per-address limit (IP_FACTOR times higher, for a shared office NAT) stops one address from
    guessing across accounts. Argon2 and 10-character passwords make guessing from many
    addresses slow as well (docs/security.md). A counter expires lock_seconds after the last
    attempt, so a lock ends by itself and an attacker who keeps trying keeps it locked.
    """

    def __init__(self, redis, max_failures: int, lock_seconds: int, hash_key: bytes):
        self.r = redis
        self.max = max(1, int(max_failures))
        self.lock_seconds = max(1, int(lock_seconds))
        self.hash_key = hash_key
        self._attempt = redis.register_script(_ATTEMPT)
        self._succeeded = redis.register_script(_SUCCEEDED)

    def _keys(self, name, ip):
        return (keys.login_failures("pair", f"{name or '-'}|{ip or '-'}", self.hash_key),
                keys.login_failures("ip", ip or "-", self.hash_key))

    def attempt(self, name: str, ip: str) -> int:
        """Count one attempt; seconds until another may be tried when over a limit (refuse it), else 0."""
        return int(self._attempt(keys=list(self._keys(name, ip)),
                                 args=[self.max, self.max * IP_FACTOR, self.lock_seconds]))

    def succeeded(self, name: str, ip: str):
        """The attempt was right: it was no failure. The pair starts afresh; the address gives the
        attempt back but keeps its record of guesses at other accounts."""
        self._succeeded(keys=list(self._keys(name, ip)))


class Sessions:
    """Server-side sessions: ivr:session:{token} -> operator, expiring after `hours`."""

    def __init__(self, redis, hours: int, clock=time.time):
        self.r = redis
        self.ttl = max(1, int(hours)) * 3600
        self.clock = clock

    def create(self, operator: str, ip: str) -> str:
        token = secrets.token_urlsafe(32)
        key = keys.session(token)
        self.r.hset(key, mapping={"operator": operator, "created_at": round(self.clock()), "ip": ip or ""})
        self.r.expire(key, self.ttl)
        return token

    def operator(self, token: str | None) -> str | None:
        """The operator logged in with this token, or None (unknown, expired, operator removed)."""
        if not token or len(token) > 100:
            return None
        name = self.r.hget(keys.session(token), "operator")
        if name and not self.r.exists(keys.operator(name)):
            return None
        return name

    def end(self, token: str | None):
        if token:
            self.r.delete(keys.session(token))
