"""Phrases in a caller's sentence: normalization, keyword lookup and the TF-IDF index of examples.

What intents.py needs to find a flow's words in what a caller said, computed once per turn:
normalized text, words run together or split ("re fund"), Korean text without spaces, keywords
one letter off, and the nearest examples by TF-IDF (the previous design, kept as an option).
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter

from rapidfuzz import fuzz, process

from .analysis import char_ngram_sizes, char_text, is_stopword, stem

_APOSTROPHE = re.compile(r"['’`´]")
_PUNCT = re.compile(r"[^\w\s*]", re.UNICODE)
_SPACE = re.compile(r"\s+")

STOP_WEIGHT = 0.2
CONCEPT_WEIGHT = 1.5       # a concept token weighs like a rare word and a half: it stands for many words
WORD_SHARE = 0.55          # share of word features in the similarity; the rest is characters
FUZZY_MIN_LEN = 7          # shorter keywords must match exactly: "shipping" is not "shopping"
FUZZY_RATIO = 90
_LATIN = re.compile(r"[a-z0-9]")


def normalize(text: str) -> str:
    """Lower case, no punctuation, single spaces; "didn't" and "didnt" are the same word."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = _APOSTROPHE.sub("", text)
    text = _PUNCT.sub(" ", text).replace("*", " ")
    return _SPACE.sub(" ", text).strip()


def is_latin(phrase: str) -> bool:
    """Written in Latin letters or digits: matched on word boundaries (Korean: inside words)."""
    return bool(_LATIN.search(phrase))


def phrase_norm(text: str) -> str:
    """normalize() for flow phrases, keeping a trailing `*` (any ending) on words."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = _PUNCT.sub(" ", _APOSTROPHE.sub("", text))
    return _SPACE.sub(" ", text).strip()




class Sentence:
    """What every phrase lookup needs from one normalized sentence, computed once per turn:
    its words, their positions, the words run together in twos to fives ("re fund"), and
    for Korean the text without spaces. Looking up a few hundred keywords and concept words
    then costs a substring test each, not a regular expression and a fuzzy loop each."""

    MAX_JOIN = 5

    def __init__(self, norm: str):
        self.norm = norm
        self.spans = [m.span() for m in re.finditer(r"\S+", norm)]
        words = [norm[s:e] for s, e in self.spans]
        self.joined = {}      # words run together -> (start, end) of the first place they occur
        self.by_len = {}      # length -> [(joined, start, end)], for one-letter-off matches
        for i, (start, _) in enumerate(self.spans):
            joined = ""
            for j in range(i, min(len(words), i + self.MAX_JOIN)):
                joined += words[j]
                if joined not in self.joined:
                    self.joined[joined] = (start, self.spans[j][1])
                    self.by_len.setdefault(len(joined), []).append((joined, start, self.spans[j][1]))
        self._where = None
        self.near = {}

    def find_near(self, by_len: dict):
        """Words one letter off a long phrase: {phrase: (start, end)}, phrases grouped by length.

        One pass per sentence in rapidfuzz's C loop, instead of one fuzzy loop per phrase."""
        self.near = {}
        for size, items in sorted(self.by_len.items()):
            choices = [p for n in (size - 1, size, size + 1) for p in by_len.get(n, ())]
            if not choices:
                continue
            for joined, start, end in items:
                for phrase, _, _ in process.extract(joined, choices, scorer=fuzz.ratio,
                                                    score_cutoff=FUZZY_RATIO, limit=None):
                    self.near.setdefault(phrase, (start, end))
        return self

    def despaced(self):
        """(text without spaces, index in norm of each of its characters)."""
        if self._where is None:
            self._where = [k for k, ch in enumerate(self.norm) if ch != " "]
            self._flat = "".join(self.norm[k] for k in self._where)
        return self._flat, self._where


class Phrase:
    """A keyword, concept word or frustration phrase, found in what the recognizer heard.

    `charge*` matches any word starting with "charge" (charged, charges); without a star
    a phrase matches whole words, a plural s, split or glued words, and for long phrases
    one letter off.
    """

    def __init__(self, phrase: str):
        self.text = phrase
        self.star = "*" in phrase
        bare = phrase.replace("*", "")
        self.compact = bare.replace(" ", "")
        self.words = len(bare.split())
        self.latin = is_latin(bare)
        self.first = bare.split()[0] if bare.split() else bare
        if self.latin:
            # Latin words need word boundaries ("hours" must not fire on "hoursx").
            body = r"\s+".join(re.escape(w[:-1]) + r"\w*" if w.endswith("*") else re.escape(w)
                               for w in phrase.split())
            self.pattern = re.compile(r"(?<!\w)" + body + r"(?!\w)")
        else:
            # Korean attaches particles and endings to words: a substring is the right unit.
            self.text = bare
            self.pattern = None

    def find(self, sent):
        """(start, end, exact) of the phrase in the sentence, or None; exact=False for a near miss."""
        if isinstance(sent, str):
            sent = Sentence(sent)
        norm = sent.norm
        if not self.latin:
            # Recognizer spacing varies in Korean ("영업 시간"): compare without spaces first
            # (one test rules most phrases out), then place the hit in the spaced text.
            flat, where = sent.despaced()
            i = flat.find(self.compact)
            if i < 0:
                return None
            j = norm.find(self.text)
            if j >= 0 and not _straddles(norm, j, j + len(self.text)):
                return j, j + len(self.text), True
            while i >= 0:
                start, end = where[i], where[i + len(self.compact) - 1] + 1
                if not _straddles(norm, start, end):
                    return start, end, True
                i = flat.find(self.compact, i + 1)
            return None
        if self.first in norm:
            m = self.pattern.search(norm)
            if m:
                return m.start(), m.end(), True
        if self.star:
            return None
        # Recognizers split words ("re fund", "over heating") and add a plural s;
        # a long keyword may also be one letter off ("overheeting").
        hit = sent.joined.get(self.compact) or sent.joined.get(self.compact + "s")
        if hit:
            return hit[0], hit[1], True
        near = sent.near.get(self.compact)
        return (near[0], near[1], False) if near else None


def _straddles(norm: str, start: int, end: int) -> bool:
    """A Korean hit that begins inside one word and runs on into the next is pieces of two words,
    not the phrase: "속상" (upset) is not in "계속 상품" (still the product). A hit from a word's start
    may cross a space (the recognizer's spacing varies: "속 상해요"); one inside a word may not."""
    return start > 0 and norm[start - 1] != " " and " " in norm[start:end]


def inside(start: int, end: int, others) -> bool:
    """A hit that lies inside a longer one: "express" in "american express", 민원 in 민원실."""
    return any(s <= start and end <= e and e - s > end - start for s, e in others)


def overlapped(start: int, end: int, others) -> bool:
    """A Korean hit that begins inside another phrase's earlier hit: its first syllable belongs to
    that word, read left to right. "불이" (fire) in "환불이" (the refund) begins inside "환불"."""
    return any(s < start < e for s, e in others)


class PhraseIndex:
    """Phrases (keywords, concept words) indexed so that a sentence looks up only those that can be
    in it, instead of a few hundred lookups per turn.

    A Latin phrase starts at the start of a word, so its first word is a prefix of one of the
    sentence's words; without a star it may also be heard glued or one letter off (its letters
    among the sentence's words run together, or among the near matches). A Korean phrase matches
    inside words, so its first syllable must be in the sentence."""

    def __init__(self, items):
        """items: [(tag, Phrase)]."""
        self.by_first, self.by_compact, self.by_letter = {}, {}, {}
        for tag, phrase in items:
            if not phrase.latin:
                if phrase.compact:
                    self.by_letter.setdefault(phrase.compact[0], []).append((tag, phrase))
                continue
            self.by_first.setdefault(phrase.first, []).append((tag, phrase))
            if not phrase.star:
                self.by_compact.setdefault(phrase.compact, []).append((tag, phrase))

    def candidates(self, sent) -> list:
        found = {}
        if self.by_first:
            for word in sent.norm.split():
                for n in range(1, len(word) + 1):
                    for c in self.by_first.get(word[:n], ()):
                        found[id(c)] = c
        if self.by_compact:
            for joined in list(sent.joined) + list(sent.near):
                for key in (joined, joined[:-1] if joined.endswith("s") else None):
                    for c in self.by_compact.get(key, ()):
                        found[id(c)] = c
        if self.by_letter:
            for letter in sorted(set(sent.norm)):   # in order: a set's order changes with PYTHONHASHSEED
                for c in self.by_letter.get(letter, ()):
                    found[id(c)] = c
        return list(found.values())


class ExampleIndex:
    """TF-IDF vectors of a flow's examples, one language; cosine to any sentence.

    Two blocks (words and letter groups) weighed WORD_SHARE : 1 - WORD_SHARE.
    Inverted lists keep a match well under a millisecond for hundreds of examples.
    """

    def __init__(self, docs: list, lang: str):
        """docs: [(normalized text, concepts heard in it)]."""
        self.lang = lang
        self.ngrams = char_ngram_sizes(lang)
        feats = [self.features(d, c) for d, c in docs]
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

    def features(self, norm: str, concepts=()):
        lang = self.lang
        tokens = norm.split()
        weight = {t: (STOP_WEIGHT if is_stopword(t, lang) else 1.0) for t in tokens}
        stems = [stem(t, lang) for t in tokens]
        words = Counter()
        for t, s in zip(tokens, stems):
            words[s] = max(words[s], weight[t])
        for (a, sa), (b, sb) in zip(zip(tokens, stems), zip(tokens[1:], stems[1:])):
            pair = sa + " " + sb
            words[pair] = max(words[pair], min(weight[a], weight[b]))
        for c in concepts:
            words["#" + c] = CONCEPT_WEIGHT
        compact = "^" + char_text(tokens, lang) + "$"
        chars = Counter(compact[i:i + n] for n in self.ngrams for i in range(len(compact) - n + 1))
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

    def similarities(self, norm: str, concepts=()) -> list:
        sims = [0.0] * self.n
        for share, postings, query in zip((WORD_SHARE, 1 - WORD_SHARE), self.postings,
                                          self._vector(self.features(norm, concepts))):
            for f, q in query.items():
                for doc, w in postings.get(f, ()):
                    sims[doc] += share * q * w
        return sims




def better_hit(found, keyword, current) -> bool:
    """Prefer exact hits, then longer keywords: they say more about what the caller wants."""
    if current is None:
        return True
    return (found[2], len(keyword)) > (current[3], len(current[0]))


def unshadowed(hits: dict) -> dict:
    """Drop a hit that lies inside another intent's longer hit.

    "american express" is a way to pay; the "express" inside it is not express delivery.
    """
    out = {}
    for name, (kw, start, end, exact) in hits.items():
        others = [(s, e) for o, (_, s, e, _) in hits.items() if o != name]
        # Korean: also a hit that begins inside another's.
        if not (inside(start, end, others) or (not is_latin(kw) and overlapped(start, end, others))):
            out[name] = (kw, start, end, exact)
    return out
