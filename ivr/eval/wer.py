"""Word and character error rates by Levenshtein distance (no dependency).

Both sides are normalized like the intent matcher normalizes caller text
(lower case, no punctuation), so "Refund!" heard as "refund" is no error.
For Korean, words are space-separated eojeol and spacing is unreliable, so
the report also gives the character error rate (spaces removed).
"""
from __future__ import annotations

from ..flows.intents import normalize


def edit_distance(ref, hyp) -> int:
    """Minimum substitutions + deletions + insertions turning sequence `ref` into `hyp`."""
    ref, hyp = list(ref), list(hyp)
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def word_errors(ref: str, hyp: str) -> tuple:
    """(edits, reference words)."""
    r, h = normalize(ref).split(), normalize(hyp).split()
    return edit_distance(r, h), len(r)


def char_errors(ref: str, hyp: str) -> tuple:
    """(edits, reference characters), spaces ignored."""
    r, h = normalize(ref).replace(" ", ""), normalize(hyp).replace(" ", "")
    return edit_distance(r, h), len(r)


def wer(ref: str, hyp: str) -> float:
    edits, n = word_errors(ref, hyp)
    return edits / n if n else float(bool(normalize(hyp)))


def cer(ref: str, hyp: str) -> float:
    edits, n = char_errors(ref, hyp)
    return edits / n if n else float(bool(normalize(hyp)))
