"""Typed slips of the flow's own words ("agnet", "complanit", "smkoe") read as those words.

A recognizer only ever returns words of its vocabulary, but words also reach the matcher typed: an
SMS or chat front end, or the sentences of a labelled set (`ivr eval`). A typed word one slip off one
of the flow's own words (two letters swapped, one dropped, added or wrong; the first letter kept)
that is no word of the language is read as that word, when exactly one of the flow's words is that
near (the likelier slip first), or one of them is far more common in the flow's text. Without it
one slip in "agent", "smoke" or "password" was enough to miss a person, a fire or a hijacked
account: with one slip in a long word of every sentence of the readable English sets, 30 and 35 of
649 urgent or person requests missed a person (two draws of slips); read this way, 6 and 6
(BENCHMARKS.md, round 18).

What counts as a word of the language is pyspellchecker's dictionary, so a real word is never
changed ("spoke" is not "smoke", "seater" is not "heater"); Korean has none there, and its letter
groups match inside words already.
"""
from __future__ import annotations

import functools
from collections import Counter

from rapidfuzz.distance import OSA, Levenshtein
from spellchecker import SpellChecker

from .classifier import release_free_heap

MIN_LEN = 5        # shorter words have too many neighbours one slip away ("oled" -> "old")
DOMINANT = 3       # among several neighbours, one this many times more common in the flow's text wins


@functools.cache
def language_words(lang: str) -> frozenset | None:
    """The language's words as normalize() writes them ("theyve", not "they've"), or None."""
    try:
        checker = SpellChecker(language=lang)
    except ValueError:      # no dictionary for this language (Korean)
        return None
    from .phrases import normalize
    # Only words as long as a slip's stem (MIN_LEN - 1) are ever looked up: the rest would cost memory.
    words = frozenset(w for w in map(normalize, checker.word_frequency.dictionary) if len(w) >= MIN_LEN - 1)
    del checker
    release_free_heap()     # the dictionary as read (about 7 MB) is gone; give its pages back
    return words


def _slip(typed: str, word: str) -> int:
    """0: two letters swapped; 1: a letter left out or added; 2: a letter wrong."""
    if len(typed) != len(word):
        return 1
    return 0 if Levenshtein.distance(typed, word, score_cutoff=2) == 2 else 2


class Speller:
    """Reads a normalized sentence with typed slips of the flow's words corrected."""

    def __init__(self, vocab: Counter, known: frozenset):
        self.vocab = vocab
        self.known = known
        self.near = {}       # (first letter, length) -> the flow's words
        for word in vocab:
            if len(word) >= MIN_LEN and word.isalpha():
                self.near.setdefault((word[0], len(word)), []).append(word)
        self._read = {}      # typed word -> the word it is read as (itself when none)

    @classmethod
    def for_language(cls, lang: str, vocab: Counter):
        known = language_words(lang)
        return None if known is None else cls(vocab, known)

    def word(self, typed: str) -> str:
        if len(typed) < MIN_LEN or typed in self.vocab or typed in self.known or not typed.isalpha():
            return typed
        if typed.endswith("s") and (typed[:-1] in self.known or typed[:-1] in self.vocab):
            return typed     # a plural or a possessive without its apostrophe ("tellys", "nobodys")
        read = self._read.get(typed)
        if read is None:
            near = [w for n in (len(typed) - 1, len(typed), len(typed) + 1)
                    for w in self.near.get((typed[0], n), ()) if OSA.distance(typed, w, score_cutoff=1) <= 1]
            # The likelier slip first: two letters swapped, then one left out or doubled, then one
            # wrong ("deliverd" is "delivered", not "delivery"); among equals, the flow's commoner word.
            slip = {w: _slip(typed, w) for w in near}
            likeliest = min(slip.values(), default=None)
            best = sorted((w for w in near if slip[w] == likeliest), key=lambda w: (-self.vocab[w], w))
            if len(best) == 1 or (best and self.vocab[best[0]] >= DOMINANT * self.vocab[best[1]]):
                read = best[0]
            else:
                read = typed
            self._read[typed] = read
        return read

    def read(self, norm: str) -> tuple:
        """(the sentence as read, ((typed, read), ...) for every word read otherwise)."""
        words = norm.split()
        out = [self.word(w) for w in words]
        changed = tuple((a, b) for a, b in zip(words, out) if a != b)
        return (" ".join(out), changed) if changed else (norm, ())
