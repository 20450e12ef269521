"""Match what a caller said to a flow intent, tolerant of paraphrase and ASR noise.

The knowledge lives in the YAML a support manager edits: adding an example or
a keyword is the whole training step, and the flow loads in milliseconds. Two
signals are combined, because each fails where the other holds:

* similarity to the intent's examples (TF-IDF over words, word pairs and
  character n-grams, cosine to the nearest example). Character n-grams absorb
  recognizer noise ("warrenty", "re fund"); words and word pairs carry meaning.
  Words the flow has never seen count against a match, so an out-of-scope
  question ("can you recommend a restaurant") scores low instead of latching
  onto its one familiar word, which is what plain fuzzy ratios did.
* keywords (synonyms): a keyword heard anywhere lifts its intent above the
  threshold. Recognizers split and glue words, so a keyword also matches
  adjacent words joined ("re fund" -> refund) and, for long keywords, one
  letter off ("overheeting").

No model files, no training run, no dependency beyond rapidfuzz.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

from rapidfuzz import fuzz

_APOSTROPHE = re.compile(r"['’`´]")
_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")

# Function words say nothing about what a caller wants; at full weight "i need
# a plumber" looks like "i need a repair". They keep a little weight so word
# pairs such as "where is" still count. Languages without a list (Korean
# attaches particles to words) rely on IDF alone.
STOPWORDS = {
    "en": frozenset("""
        a an the i im id ive ill me my mine myself you youre your yours we our us it its this that
        these those there theres is are was were be been being am do does did doing have has had
        having can could would should will shall may might must to of in on at for from with by about
        as and or but so if then than just also too very really please hi hello hey um uh er ah oh
        well okay ok like want wanna need get got some any one thing things
    """.split()),
}
STOP_WEIGHT = 0.2
CHAR_NGRAMS = (3, 4)
WORD_SHARE = 0.55          # share of word features in the similarity; the rest is characters
SIM_FULL = 0.8             # similarity at which confidence is 1.0 (a near copy of an example)
KEYWORD_FLOOR = 0.75       # confidence of a keyword hit with no example support
NEAR_KEYWORD_FLOOR = 0.66  # ... of a keyword one letter off: "deliver" in "delivery" is weaker evidence
FUZZY_MIN_LEN = 7          # shorter keywords must match exactly: "shipping" is not "shopping"
FUZZY_RATIO = 90


def normalize(text: str) -> str:
    """Lower case, no punctuation, single spaces; "didn't" and "didnt" are the same word."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = _APOSTROPHE.sub("", text)
    text = _PUNCT.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class Match:
    intent: str | None
    confidence: float
    runner_up: str | None = None
    via: str = ""            # why: "keyword 'refund'" or "example 'where is my order'"


class _Phrase:
    """A keyword or frustration phrase, found in what the recognizer heard."""

    def __init__(self, phrase: str):
        self.text = phrase
        self.compact = phrase.replace(" ", "")
        self.words = len(phrase.split())
        self.latin = bool(re.search(r"[a-z0-9]", phrase))
        # Latin words need word boundaries ("hours" must not fire on "hoursx"); Korean
        # attaches particles to words, so there a substring is the right unit.
        self.pattern = re.compile(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)") if self.latin else None

    def find(self, norm: str, tokens: list):
        """(start, end, exact) of the phrase in `norm`, or None; exact=False for a near miss."""
        if not self.latin:
            i = norm.find(self.text)
            if i >= 0:
                return i, i + len(self.text), True
            # Recognizer spacing varies in Korean ("영업 시간"): compare without spaces.
            where = [k for k, ch in enumerate(norm) if ch != " "]
            i = "".join(norm[k] for k in where).find(self.compact)
            return (where[i], where[i + len(self.compact) - 1] + 1, True) if i >= 0 else None
        m = self.pattern.search(norm)
        if m:
            return m.start(), m.end(), True
        # Recognizers split words ("re fund", "over heating") and add a plural s;
        # a long keyword may also be one letter off ("overheeting").
        target = self.compact
        for i, (start, _) in enumerate(tokens):
            joined = ""
            for j in range(i, min(len(tokens), i + self.words + 2)):
                joined += norm[tokens[j][0]:tokens[j][1]]
                if joined == target or joined == target + "s":
                    return start, tokens[j][1], True
                if (len(target) >= FUZZY_MIN_LEN and abs(len(joined) - len(target)) <= 1
                        and fuzz.ratio(joined, target) >= FUZZY_RATIO):
                    return start, tokens[j][1], False
                if len(joined) > len(target) + 1:
                    break
        return None


def _token_spans(norm: str) -> list:
    return [m.span() for m in re.finditer(r"\S+", norm)]


class _Index:
    """TF-IDF vectors of a flow's examples, one language; cosine to any sentence.

    Inverted lists keep a match to a few milliseconds for hundreds of examples.
    """

    def __init__(self, docs: list, lang: str):
        self.stop = STOPWORDS.get(lang, frozenset())
        feats = [self._features(d) for d in docs]
        self.n = len(docs)
        self.df = [Counter(), Counter()]
        for blocks in feats:
            for df, block in zip(self.df, blocks):
                df.update(block.keys())
        self.postings = [{}, {}]     # per block: feature -> [(doc, weight)]
        for doc, blocks in enumerate(feats):
            for postings, vec in zip(self.postings, self._vector(blocks)):
                for f, w in vec.items():
                    postings.setdefault(f, []).append((doc, w))

    def _features(self, norm: str):
        tokens = norm.split()
        weight = {t: (STOP_WEIGHT if t in self.stop else 1.0) for t in tokens}
        words = Counter()
        for t in tokens:
            words[t] = max(words[t], weight[t])
        for a, b in zip(tokens, tokens[1:]):
            words[a + " " + b] = max(words[a + " " + b], min(weight[a], weight[b]))
        content = [t for t in tokens if t not in self.stop] or tokens
        compact = "^" + "".join(content) + "$"
        chars = Counter(compact[i:i + n] for n in CHAR_NGRAMS for i in range(len(compact) - n + 1))
        chars = {g: 1.0 + math.log(c) for g, c in chars.items()}
        return dict(words), chars

    def _vector(self, blocks):
        out = []
        for df, block in zip(self.df, blocks):
            # Unseen features get the highest IDF: unknown words pull a sentence away from every intent.
            vec = {f: w * (math.log((self.n + 1) / (df.get(f, 0) + 1)) + 1.0) for f, w in block.items()}
            norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
            out.append({f: v / norm for f, v in vec.items()})
        return out

    def similarities(self, norm: str) -> list:
        sims = [0.0] * self.n
        for share, postings, query in zip((WORD_SHARE, 1 - WORD_SHARE), self.postings,
                                          self._vector(self._features(norm))):
            for f, q in query.items():
                for doc, w in postings.get(f, ()):
                    sims[doc] += share * q * w
        return sims


class IntentMatcher:
    """Scores a caller's words against every intent of a flow, for one language."""

    def __init__(self, flow, lang: str):
        self.lang = lang
        self.examples = []   # (normalized example, intent)
        self.keywords = []   # (_Phrase, intent)
        for intent in flow.intents.values():
            for ex in intent.examples.get(lang, []):
                if normalize(ex):
                    self.examples.append((normalize(ex), intent.name))
            for kw in intent.keywords.get(lang, []):
                if normalize(kw):
                    self.keywords.append((_Phrase(normalize(kw)), intent.name))
        self.index = _Index([ex for ex, _ in self.examples], lang)
        self.frustration = [_Phrase(normalize(p)) for p in flow.frustration.get(lang, []) if normalize(p)]

    def ranked(self, text: str, among=None) -> list:
        """[(intent, confidence, via)] best first; confidence in 0..1."""
        norm = normalize(text)
        if not norm:
            return []
        best = {}      # intent -> (similarity, example)
        for (ex, name), sim in zip(self.examples, self.index.similarities(norm)):
            if (among is None or name in among) and sim > best.get(name, (-1.0, ""))[0]:
                best[name] = (sim, ex)
        hits = {}     # intent -> (keyword, start, end, exact)
        spans = _token_spans(norm)
        for phrase, name in self.keywords:
            if among is not None and name not in among:
                continue
            found = phrase.find(norm, spans)
            if found and _better(found, phrase.text, hits.get(name)):
                hits[name] = (phrase.text,) + found
        hits = _unshadowed(hits)
        out = []
        for name in set(best) | set(hits):
            sim, ex = best.get(name, (0.0, ""))
            conf = min(1.0, max(sim, 0.0) / SIM_FULL)
            via = f"example '{ex}'"
            if name in hits:
                keyword, _, _, exact = hits[name]
                floor = KEYWORD_FLOOR if exact else NEAR_KEYWORD_FLOOR
                conf = floor + (1 - floor) * conf
                via = f"keyword '{keyword}'" + ("" if exact else " (near match)")
            out.append((name, round(conf, 3), via))
        out.sort(key=lambda r: (-r[1], r[0]))
        return out

    def scores(self, text: str, among=None) -> dict:
        return {name: conf for name, conf, _ in self.ranked(text, among)}

    def match(self, text: str, among=None) -> Match:
        ranked = self.ranked(text, among)
        if not ranked:
            return Match(None, 0.0)
        name, conf, via = ranked[0]
        return Match(name, conf, ranked[1][0] if len(ranked) > 1 else None, via)

    def frustration_phrase(self, text: str) -> str | None:
        """The frustration phrase the caller used, if any."""
        norm = normalize(text)
        spans = _token_spans(norm)
        return next((p.text for p in self.frustration if p.find(norm, spans)), None)

    def is_frustrated(self, text: str) -> bool:
        return self.frustration_phrase(text) is not None

    def phrases(self, intents) -> list:
        """Phrases a recognizer grammar should accept for these intents: examples, then keywords."""
        out, seen = [], set()
        for phrase in [ex for ex, name in self.examples if name in intents] + \
                      [kw.text for kw, name in self.keywords if name in intents]:
            if phrase not in seen:
                seen.add(phrase)
                out.append(phrase)
        return out


def _better(found, keyword, current) -> bool:
    """Prefer exact hits, then longer keywords: they say more about what the caller wants."""
    if current is None:
        return True
    return (found[2], len(keyword)) > (current[3], len(current[0]))


def _unshadowed(hits: dict) -> dict:
    """Drop a hit that lies inside another intent's longer hit.

    "american express" is a way to pay; the "express" inside it is not express delivery.
    """
    out = {}
    for name, (kw, start, end, exact) in hits.items():
        inside = any(o != name and s <= start and end <= e and (e - s) > (end - start)
                     for o, (_, s, e, _) in hits.items())
        if not inside:
            out[name] = (kw, start, end, exact)
    return out
