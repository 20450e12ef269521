"""Match what a caller said to a flow intent, tolerant of paraphrase and ASR noise.

Fuzzy matching over the flow's own examples keeps the knowledge base in the
YAML a support manager edits: adding an example is the whole training step.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from rapidfuzz import fuzz, process

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = _PUNCT.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class Match:
    intent: str | None
    confidence: float
    runner_up: str | None = None


class IntentMatcher:
    """Scores a caller's words against every intent of a flow, for one language."""

    KEYWORD_SCORE = 0.9

    def __init__(self, flow, lang: str):
        self.lang = lang
        self.examples = []   # (normalized example, intent)
        self.keywords = []   # (compiled pattern, intent)
        for intent in flow.intents.values():
            for ex in intent.examples.get(lang, []):
                self.examples.append((normalize(ex), intent.name))
            for kw in intent.keywords.get(lang, []):
                self.keywords.append((_phrase_pattern(normalize(kw)), intent.name))
        self.frustration = [_phrase_pattern(normalize(p)) for p in flow.frustration.get(lang, [])]

    def scores(self, text: str, among=None) -> dict:
        norm = normalize(text)
        out = {}
        if not norm:
            return out
        choices = [ex for ex, name in self.examples if among is None or name in among]
        names = [name for ex, name in self.examples if among is None or name in among]
        for _, score, idx in process.extract(norm, choices, scorer=fuzz.WRatio, limit=None) if choices else []:
            name = names[idx]
            out[name] = max(out.get(name, 0.0), score / 100.0)
        for pattern, name in self.keywords:
            if (among is None or name in among) and pattern.search(norm):
                out[name] = max(out.get(name, 0.0), self.KEYWORD_SCORE)
        return out

    def match(self, text: str, among=None) -> Match:
        ranked = sorted(self.scores(text, among).items(), key=lambda kv: -kv[1])
        if not ranked:
            return Match(None, 0.0)
        runner = ranked[1][0] if len(ranked) > 1 else None
        return Match(ranked[0][0], round(ranked[0][1], 3), runner)

    def is_frustrated(self, text: str) -> bool:
        norm = normalize(text)
        return any(p.search(norm) for p in self.frustration)

    def phrases(self, intents) -> list:
        """Phrases a recognizer grammar should accept for these intents."""
        out = []
        for ex, name in self.examples:
            if name in intents and ex not in out:
                out.append(ex)
        return out


def _phrase_pattern(phrase: str):
    # Latin words need word boundaries ("hours" must not fire on "hoursx"); Korean
    # attaches particles to words, so there a substring is the right unit.
    if re.search(r"[a-z0-9]", phrase):
        return re.compile(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)")
    return re.compile(re.escape(phrase))
