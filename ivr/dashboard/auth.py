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
        for key in self.r.scan_iter(match=keys.session("*"), count=500):
            if self.r.hget(key, "operator") == name:
                self.r.delete(key)


class Lockout:
    """Counts failed logins per account and per client address; too many lock both out.

    A counter expires lock_seconds after the last failure, so a lock ends by itself and
    an attacker who keeps trying keeps it locked rather than getting fresh attempts.
    """

    def __init__(self, redis, max_failures: int, lock_seconds: int):
        self.r = redis
        self.max = max(1, int(max_failures))
        self.lock_seconds = max(1, int(lock_seconds))

    def _keys(self, name, ip):
        return keys.login_failures("op", name or "-"), keys.login_failures("ip", ip or "-")

    def locked_for(self, name: str, ip: str) -> int:
        """Seconds until a login may be tried again; 0 when not locked."""
        op_key, ip_key = self._keys(name, ip)
        pipe = self.r.pipeline(transaction=False)
        pipe.get(op_key)
        pipe.ttl(op_key)
        pipe.get(ip_key)
        pipe.ttl(ip_key)
        op_n, op_ttl, ip_n, ip_ttl = pipe.execute()
        wait = 0
        if int(op_n or 0) >= self.max:
            wait = max(wait, op_ttl)
        if int(ip_n or 0) >= self.max * IP_FACTOR:
            wait = max(wait, ip_ttl)
        return max(0, int(wait))

    def failed(self, name: str, ip: str):
        pipe = self.r.pipeline()
        for key in self._keys(name, ip):
            pipe.incr(key)
            pipe.expire(key, self.lock_seconds)
        pipe.execute()

    def succeeded(self, name: str):
        # Only the account's counter: a valid login must not wipe an address's record of
        # guesses at other accounts.
        self.r.delete(self._keys(name, "")[0])


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
