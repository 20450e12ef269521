"""Repeatable speech decoding in tests.

Kaldi dithers audio with noise drawn from the C library's process-wide rand() (docs/speech.md),
so what one call's recognizer hears depends on every decode that ran before it in the process:
a test that passed alone could fail after other tests, or in another order. Seeding rand()
right before a call makes that call's decoding repeatable, as long as nothing else decodes in
the process meanwhile (one call at a time).
"""
from __future__ import annotations

import ctypes

_libc = ctypes.CDLL(None)     # the process's own C library: the rand() Kaldi draws from


def seed_dither(seed: int) -> None:
    _libc.srand(seed)
