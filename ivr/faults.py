"""Fault injection for reliability tests: off unless IVR_FAULTS names a fault.

IVR_FAULTS=recognizer_error,recognizer_slow,tts_error,step_error (read by
Config.from_env, the only reader of the environment) makes the real code
fail on purpose, at the place the real failure would happen:

  recognizer_error  Recognizer.final() raises (an exception inside decoding)
  recognizer_slow   Recognizer.final() takes SLOW_SECONDS (an overloaded machine)
  tts_error         PromptAudio.get() raises (the prompt renderer is broken)
  step_error        Engine.handle() raises (a bug in a flow step)

create_app() sets the active faults for the process; with none set each hook
is one frozenset lookup. Never set this in production.
"""
from __future__ import annotations

import time

KNOWN = ("recognizer_error", "recognizer_slow", "tts_error", "step_error")
SLOW_SECONDS = 4.0

_active: frozenset = frozenset()


class InjectedFault(RuntimeError):
    """Raised by a hook whose fault is switched on."""


def parse(raw: str) -> frozenset:
    names = frozenset(n.strip() for n in (raw or "").split(",") if n.strip())
    unknown = sorted(names - set(KNOWN))
    if unknown:
        raise ValueError(f"IVR_FAULTS: unknown fault(s) {', '.join(unknown)}; known: {', '.join(KNOWN)}")
    return names


def configure(names) -> None:
    global _active
    _active = frozenset(names or ())


def active() -> frozenset:
    return _active


def inject(name: str) -> None:
    """Raise InjectedFault when `name` is switched on."""
    if name in _active:
        raise InjectedFault(f"injected fault: {name}")


def delay(name: str, seconds: float = SLOW_SECONDS) -> None:
    """Sleep when `name` is switched on."""
    if name in _active:
        time.sleep(seconds)
