"""Match what a caller said to a flow intent, tolerant of paraphrase and ASR noise.

The knowledge lives in files a support manager edits: the flow (examples, keywords, concepts,
rules) and its training sentences (flows/training/). Three kinds of evidence are combined:

* a linear classifier (classifier.py) trained at flow load on the examples and the training
  sentences, over word stems, stem pairs, letter groups and the flow's concepts, with out of
  scope as a class of its own. It decides routine questions: it learns which words tell one
  intent from the others across hundreds of sentences, where a keyword ("gift card", "my
  order") also occurs in other requests.
* keywords and concept rules of the intents that go to a person (complaint, money safety,
  physical safety, a person): a keyword heard anywhere (also split, glued or one letter off:
  "re fund", "overheeting") or concepts heard together (`rules: [{all: [money, not_mine]}]`)
  lift the intent whatever the classifier says. Rules are the manager's word for the families
  that must never be missed, on sentences nobody wrote down.
* signals: an urgent intent's concept heard alone ("money", "heat") makes it possible: its
  confidence sits at the flow's urgent threshold, so an uncertain caller goes to a person
  rather than to a clarification, unless the classifier finds the sentence out of scope.

Every score says why (`via`): the keyword, the rule and the words that made it, the signal, and
the classifier's probability with the caller's words that weighed most and the nearest training
sentence, so the call page and the agent's briefing can show it. The previous design (nearest
example by TF-IDF) remains as an option measured against (MatcherOptions, bench/matchers.py).

Cost: about a millisecond per turn, ~25 MB of trained classifiers per process plus numpy and
scipy (BENCHMARKS.md, "Intent matching").
"""
from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import unicodedata
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path

from rapidfuzz import fuzz, process

from .analysis import STOPWORDS, char_ngram_sizes, char_text, is_stopword, stem
from .classifier import Features, LinearClassifier

log = logging.getLogger(__name__)

__all__ = ["IntentMatcher", "MatcherOptions", "Match", "normalize", "STOPWORDS"]

_APOSTROPHE = re.compile(r"['’`´]")
_PUNCT = re.compile(r"[^\w\s*]", re.UNICODE)
_SPACE = re.compile(r"\s+")

STOP_WEIGHT = 0.2
CONCEPT_WEIGHT = 1.5       # a concept token weighs like a rare word and a half: it stands for many words
WORD_SHARE = 0.55          # share of word features in the similarity; the rest is characters
SIM_FULL = 0.8             # similarity at which confidence is 1.0 (a near copy of an example)
KEYWORD_FLOOR = 0.75       # confidence of a keyword hit with no example support
NEAR_KEYWORD_FLOOR = 0.66  # ... of a keyword one letter off: "deliver" in "delivery" is weaker evidence
RULE_FLOOR = 0.8           # ... of a concept rule: two ideas together are stronger than one word
FUZZY_MIN_LEN = 7          # shorter keywords must match exactly: "shipping" is not "shopping"
FUZZY_RATIO = 90


@dataclass(frozen=True)
class MatcherOptions:
    """How the matcher decides; the defaults are the design that measured best on the validation
    sets (bench/matchers.py compares the others, BENCHMARKS.md has the table)."""
    classifier: bool = True          # a linear classifier trained on examples + training sentences
    features: Features = Features()
    l2: float = 1e-5
    iterations: int = 100
    concept_features: bool = True    # concepts heard become classifier features
    similarity: bool = False         # also the nearest-example TF-IDF similarity (the previous design)
    floors: str = "handoff"          # whose keywords and rules lift the confidence: all | handoff | none
    keyword_sentences: bool = False  # keywords also train the classifier, as one-phrase sentences
    # When the classifier finds a sentence out of scope with at least this probability, a signal
    # concept ("bank" in "what time does the bank close") or a keyword heard one letter off
    # ("parking" for "sparking") does not lift an intent; rules and exact keywords still do.
    oos_veto: float = 0.5


# Trained classifiers by what they were trained on (sentences, labels, concepts, options): a flow
# loaded again unchanged (a reload, every test that builds an engine) does not train again.
# ... and by the code that turns sentences into features and trains: a classifier kept on disk by
# an older release is trained again rather than read with features it was not trained on.
_CODE = hashlib.sha256(b"".join((Path(__file__).parent / name).read_bytes()
                                for name in ("intents.py", "classifier.py", "analysis.py"))).hexdigest()
_TRAINED = OrderedDict()
_TRAINED_MAX = 8
_SAVED_MAX = 16   # trained classifiers kept on disk (cache_dir), newest first
_TRAINED_LOCK = threading.Lock()


def normalize(text: str) -> str:
    """Lower case, no punctuation, single spaces; "didn't" and "didnt" are the same word."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = _APOSTROPHE.sub("", text)
    text = _PUNCT.sub(" ", text).replace("*", " ")
    return _SPACE.sub(" ", text).strip()


def _phrase_norm(text: str) -> str:
    """normalize() for flow phrases, keeping a trailing `*` (any ending) on words."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = _PUNCT.sub(" ", _APOSTROPHE.sub("", text))
    return _SPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class Match:
    intent: str | None
    confidence: float
    runner_up: str | None = None
    via: str = ""            # why: "keyword 'refund'", "rule money + not_mine (...)", "example '...'"


class _Sentence:
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


class _Phrase:
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
        self.latin = bool(re.search(r"[a-z0-9]", bare))
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
            sent = _Sentence(sent)
        norm = sent.norm
        if not self.latin:
            # Recognizer spacing varies in Korean ("영업 시간"): compare without spaces first
            # (one test rules most phrases out), then place the hit in the spaced text.
            flat, where = sent.despaced()
            i = flat.find(self.compact)
            if i < 0:
                return None
            j = norm.find(self.text)
            if j >= 0:
                return j, j + len(self.text), True
            return where[i], where[i + len(self.compact) - 1] + 1, True
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


class _PhraseIndex:
    """Phrases (keywords, concept words) indexed so that a sentence looks up only those that can be
    in it, instead of a few hundred lookups per turn.

    A Latin phrase starts at the start of a word, so its first word is a prefix of one of the
    sentence's words; without a star it may also be heard glued or one letter off (its letters
    among the sentence's words run together, or among the near matches). A Korean phrase matches
    inside words, so its first syllable must be in the sentence."""

    def __init__(self, items):
        """items: [(tag, _Phrase)]."""
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
            for letter in set(sent.norm):
                for c in self.by_letter.get(letter, ()):
                    found[id(c)] = c
        return list(found.values())


class _Index:
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


@dataclass(frozen=True)
class _Rule:
    intent: str
    all: tuple
    none: tuple = ()

    @property
    def name(self) -> str:
        return " + ".join(self.all)


class IntentMatcher:
    """Scores a caller's words against every intent of a flow, for one language."""

    def __init__(self, flow, lang: str, options: MatcherOptions | None = None, cache_dir=None):
        """cache_dir: where trained classifiers are kept between processes (None: in this process only)."""
        self.lang = lang
        self.flow = flow
        self.cache_dir = cache_dir
        self.options = options = options or MatcherOptions()
        self.concepts = {}   # name -> [_Phrase]
        for name, langs in (getattr(flow, "concepts", None) or {}).items():
            phrases = [_Phrase(_phrase_norm(p)) for p in (langs or {}).get(lang, []) if normalize(p)]
            if phrases:
                self.concepts[name] = phrases
        self.examples = []   # (normalized example, intent)
        self.keywords = []   # (_Phrase, intent)
        self.rules = []      # _Rule
        self.signals = {}    # intent -> {concept}
        for intent in flow.intents.values():
            for ex in intent.examples.get(lang, []):
                if normalize(ex):
                    self.examples.append((normalize(ex), intent.name))
            for kw in intent.keywords.get(lang, []):
                if normalize(kw):
                    self.keywords.append((_Phrase(_phrase_norm(kw)), intent.name))
            for rule in getattr(intent, "rules", ()) or ():
                needed = tuple(rule.get("all") or ())
                if needed and all(c in self.concepts for c in needed):
                    self.rules.append(_Rule(intent.name, needed, tuple(rule.get("none") or ())))
            signals = {c for c in getattr(intent, "signals", ()) or () if c in self.concepts}
            if signals:
                self.signals[intent.name] = signals
        self.partners = {(a, b) for r in self.rules for a in r.all + r.none for b in r.all + r.none}
        self._concept_index = _PhraseIndex([(name, p) for name, ps in self.concepts.items() for p in ps])
        self.index = None
        if options.similarity or not options.classifier:
            self.index = _Index([(ex, tuple(self._concepts(_Sentence(ex)))) for ex, _ in self.examples], lang)
        self._keyword_index = _PhraseIndex([(name, phrase) for phrase, name in self.keywords])
        self.frustration = [_Phrase(_phrase_norm(p)) for p in flow.frustration.get(lang, []) if normalize(p)]
        # Keywords and frustration phrases may be heard one letter off ("overheeting"); concept
        # words list their forms (charge*), so they need not.
        self.fuzzy = {}
        for phrase in [k for k, _ in self.keywords] + self.frustration:
            if phrase.latin and not phrase.star and len(phrase.compact) >= FUZZY_MIN_LEN:
                self.fuzzy.setdefault(len(phrase.compact), set()).add(phrase.compact)
        self.fuzzy = {n: sorted(v) for n, v in self.fuzzy.items()}
        self._last = None
        self._last_explained = None
        self.training = []     # (sentence, intent or None): what the classifier learned from
        self.handoff_intents = {i.name for i in flow.intents.values() if i.handoff is not None}
        self.classifier = self._train(flow) if options.classifier else None

    def _train(self, flow):
        """The classifier over the flow's examples and training sentences (None: fewer than two classes)."""
        rows = [(ex, name) for ex, name in self.examples]
        rows += [(normalize(t), name) for t, name in (getattr(flow, "training", None) or {}).get(self.lang, ())]
        if self.options.keyword_sentences:
            rows += [(normalize(kw.text), name) for kw, name in self.keywords]
        rows = [(t, name) for t, name in rows if t and (name is None or name in flow.intents)]
        if len({name for _, name in rows}) < 2:
            return None
        self.training = rows
        concepts = sorted((n, tuple(p.text for p in ps)) for n, ps in self.concepts.items())
        key = hashlib.sha256(repr((_CODE, self.lang, rows, self.options, concepts)).encode()).hexdigest()
        with _TRAINED_LOCK:
            clf = _TRAINED.get(key)
        saved = Path(self.cache_dir) / f"{key[:32]}.npz" if self.cache_dir else None
        if clf is None and saved is not None and saved.is_file():
            try:
                clf = LinearClassifier.load(saved)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("trained classifier %s unreadable (%s): training again", saved, exc)
        if clf is None:
            # Every non-empty sentence has features (its letter groups), so the classifier's rows
            # are self.training's, in order: nearest() indexes both.
            clf = LinearClassifier([self._features(t) for t, _ in rows], [name for _, name in rows],
                                   l2=self.options.l2, iterations=self.options.iterations)
        if saved is not None and not saved.is_file():
            try:
                clf.save(saved)
                # Flows change: keep the newest few, not one file per edit for ever.
                for old in sorted(saved.parent.glob("*.npz"), key=lambda p: p.stat().st_mtime)[:-_SAVED_MAX]:
                    old.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("cannot keep the trained classifier in %s: %s", saved, exc)
        with _TRAINED_LOCK:
            _TRAINED[key] = clf
            while len(_TRAINED) > _TRAINED_MAX:
                _TRAINED.popitem(last=False)
        return clf

    def _features(self, norm: str, heard=None) -> dict:
        if heard is None and self.options.concept_features:
            heard = self._concepts(_Sentence(norm))
        return self.options.features.of(norm, self.lang, tuple(heard or ()) if self.options.concept_features else ())

    def _concepts(self, sent) -> dict:
        """Concepts heard in the sentence: name -> the words that carried it.

        A concept's words inside a longer hit of another concept do not count: "express" in
        "american express" is a way to pay, not a delivery option. Concepts that a rule
        combines never hide each other: "two payments" is both money and twice.
        """
        found = {}    # name -> (start, end)
        for name, phrase in self._concept_index.candidates(sent):
            hit = phrase.find(sent)
            if hit and not hit[2]:
                continue   # one letter off a keyword ("parking" for "sparking") is not a concept's word
            if hit and (name not in found or hit[1] - hit[0] > found[name][1] - found[name][0]):
                found[name] = hit[:2]
        return {name: sent.norm[start:end] for name, (start, end) in found.items()
                if not any(o != name and (o, name) not in self.partners and s <= start and end <= e
                           and (e - s) > (end - start) for o, (s, e) in found.items())}

    def _analyse(self, norm: str):
        """Concepts, similarities and keyword hits of one sentence, whatever the step listens for.

        The engine asks twice per turn (global rules, then the step's own intents): the last
        sentence's analysis is kept, one entry, replaced whole (safe across threads)."""
        cached = self._last
        if cached is not None and cached[0] == norm:
            return cached[1]
        sent = _Sentence(norm).find_near(self.fuzzy)
        heard = self._concepts(sent)
        sims = self.index.similarities(norm, tuple(heard)) if self.index is not None else []
        found = [(phrase, name, hit) for name, phrase in self._keyword_index.candidates(sent)
                 for hit in (phrase.find(sent),) if hit]
        feats = probs = None
        if self.classifier is not None:
            feats = self._features(norm, heard)
            probs = self.classifier.predict(feats)
        analysis = (heard, sims, found, feats, probs)
        self._last = (norm, analysis, sent)
        return analysis

    def ranked(self, text: str, among=None) -> list:
        """[(intent, confidence, via)] best first; confidence in 0..1.

        The classifier's probability (out of scope is a class of its own, so a question the
        hotline does not handle leaves every intent low) is lifted by the flow's keywords and
        concept rules: a rule is the manager's word that two ideas together mean an intent."""
        norm = normalize(text)
        if not norm:
            return []
        heard, sims, found_keywords, feats, probs = self._analyse(norm)
        base = {}      # intent -> (confidence, via) before keywords and rules
        if probs is not None:
            for name, p in probs.items():
                if name is not None and (among is None or name in among):
                    base[name] = (p, "classifier")
        for (ex, name), sim in zip(self.examples, sims):
            conf = min(1.0, max(sim, 0.0) / SIM_FULL)
            if (among is None or name in among) and (name not in base or conf > base[name][0]):
                base[name] = (conf, f"example '{ex}'")
        hits = {}     # intent -> (keyword, start, end, exact)
        for phrase, name, found in found_keywords:
            if among is not None and name not in among:
                continue
            if _better(found, phrase.text, hits.get(name)):
                hits[name] = (phrase.text,) + found
        hits = _unshadowed(hits)
        fired = {}    # intent -> rule
        for rule in self.rules:
            if (among is None or rule.intent in among) and rule.intent not in fired \
                    and all(c in heard for c in rule.all) and not any(c in heard for c in rule.none):
                fired[rule.intent] = rule
        signalled = {name: sorted(c for c in concepts if c in heard) for name, concepts in self.signals.items()
                     if (among is None or name in among) and any(c in heard for c in concepts)}
        oos = probs.get(None, 0.0) if probs is not None else 0.0
        if oos >= self.options.oos_veto:
            signalled = {}
            hits = {n: h for n, h in hits.items() if h[3]}
        lifted = self.options.floors
        if lifted != "all":
            keep = self.handoff_intents if lifted == "handoff" else set()
            hits = {n: h for n, h in hits.items() if n in keep}
            fired = {n: r for n, r in fired.items() if n in keep}
        out = []
        for name in set(base) | set(hits) | set(fired) | set(signalled):
            conf, via = base.get(name, (0.0, ""))
            floor = 0.0
            if name in signalled and conf < self.flow.urgent_threshold:
                # Possible, not certain: at the urgent threshold, so that when nothing else is
                # understood the caller goes to a person on this intent's queue (engine.global_intent).
                conf = self.flow.urgent_threshold
                via = "signal " + ", ".join(f"{c} ('{heard[c]}')" for c in signalled[name])
            if name in hits:
                keyword, _, _, exact = hits[name]
                floor = KEYWORD_FLOOR if exact else NEAR_KEYWORD_FLOOR
                via = f"keyword '{keyword}'" + ("" if exact else " (near match)")
            if name in fired:
                rule = fired[name]
                said = f"rule {rule.name} (" + ", ".join(f"'{heard[c]}'" for c in rule.all) + ")"
                if name not in hits:
                    via = said
                elif any(heard[c] not in hits[name][0] for c in rule.all):   # the rule adds something
                    via = f"{via} + {said}"
                floor = max(floor, RULE_FLOOR)
            if floor:
                conf = floor + (1 - floor) * conf
            out.append((name, round(conf, 3), via))
        out.sort(key=lambda r: (-r[1], r[0]))
        if out and probs is not None:
            name, conf, via = out[0]
            out[0] = (name, conf, self._explain(norm, feats, probs, name, via, heard))
        return out

    def _explain(self, norm, feats, probs, name, via, heard) -> str:
        """Why the classifier leans to `name`: its probability, the caller's words that weighed
        most, and the nearest training sentence: "classifier 0.82 (words 'never bought'), nearest
        'i never bought this'". Only for the intent that ranks first, once per sentence (the
        engine asks twice per turn)."""
        cached = self._last_explained
        if cached is not None and cached[:2] == (norm, name):
            said = cached[2]
        else:
            said = self._classifier_says(norm, feats, probs, name, heard)
            self._last_explained = (norm, name, said)
        return said if via == "classifier" else f"{via}; {said}"

    def _classifier_says(self, norm, feats, probs, name, heard) -> str:
        p = probs.get(name, 0.0)
        words = self._reason_words(norm, feats, name, heard)
        said = f"classifier {p:.2f}" + (f" (words {', '.join(words)})" if words else "")
        row, sim = self.classifier.nearest(feats, name)
        if sim > 0:
            said += f", nearest '{self.training[row][0]}'"
        oos = probs.get(None, 0.0)
        if oos >= p:
            said += f"; out of scope {oos:.2f}"
        return said

    def _reason_words(self, norm, feats, name, heard) -> list:
        """Up to three of the caller's words (or concepts, with the words that carried them) that
        raised `name` the most: ["'money back' (return_words)", "'headphones'"]."""
        tokens = norm.split()
        stems = {}
        for t in tokens:
            if not is_stopword(t, self.lang):
                stems.setdefault(stem(t, self.lang), t)
        pairs = {f"{stem(a, self.lang)} {stem(b, self.lang)}": f"{a} {b}" for a, b in zip(tokens, tokens[1:])}
        out, said = [], []
        for feature, _ in self.classifier.reasons(feats, name, top=6):
            kind, _, value = feature.partition(" ")
            if kind == "#" and value in heard:
                words, label = heard[value], f"'{heard[value]}' ({value})"
            elif kind in ("w", "p"):
                words = (stems if kind == "w" else pairs).get(value)
                label = f"'{words}'"
            else:
                continue
            if words and not any(words in w or w in words for w in said):
                said.append(words)
                out.append(label)
            if len(out) == 3:
                break
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
        cached = self._last
        sent = cached[2] if cached is not None and cached[0] == norm else _Sentence(norm).find_near(self.fuzzy)
        return next((p.text for p in self.frustration if p.find(sent)), None)

    def is_frustrated(self, text: str) -> bool:
        return self.frustration_phrase(text) is not None

    def phrases(self, intents) -> list:
        """Phrases a recognizer grammar should accept for these intents: examples, then keywords."""
        out, seen = [], set()
        for phrase in [ex for ex, name in self.examples if name in intents] + \
                      [kw.text.replace("*", "") for kw, name in self.keywords if name in intents]:
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
