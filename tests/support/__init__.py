"""Scaffolding shared by the tests (and reused by bench/): real processes, a clock, call helpers.

Imported as `tests.support...` (pytest puts the repository root on sys.path, see pyproject).
"""
from __future__ import annotations


class Clock:
    """A clock the test moves by hand, so timelines (waits) are exact."""

    def __init__(self, t=1_800_000_000.0):
        self.t = t

    def __call__(self):
        return self.t

    def advance(self, seconds):
        self.t += seconds


def press(d):
    return ("press", d)


def say(t):
    return ("say", t)


def port_of(config) -> int:
    """The loopback port a test config's PUBLIC_URL names (tests serve on that port)."""
    return int(config.public_url.rsplit(":", 1)[1])
