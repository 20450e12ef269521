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
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path

from .analysis import STOPWORDS, is_stopword, stem
from .classifier import Features, LinearClassifier, release_free_heap
from .phrases import (
    FUZZY_MIN_LEN,
    ExampleIndex,
    Phrase,
    PhraseIndex,
    Sentence,
    better_hit,
    inside,
    normalize,
    overlapped,
    phrase_norm,
    unshadowed,
)
from .spelling import Speller

log = logging.getLogger(__name__)

__all__ = ["IntentMatcher", "MatcherOptions", "Match", "normalize", "STOPWORDS"]

SIM_FULL = 0.8             # similarity at which confidence is 1.0 (a near copy of an example)
KEYWORD_FLOOR = 0.75       # confidence of a keyword hit with no example support
NEAR_KEYWORD_FLOOR = 0.66  # ... of a keyword one letter off: "deliver" in "delivery" is weaker evidence
RULE_FLOOR = 0.8           # ... of a concept rule: two ideas together are stronger than one word


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
    # A keyword heard one letter off lifts its intent only when the classifier gives that intent at
    # least this much: "parking" in "pay my parking ticket" is not "sparking", "transfer my" in "pay by
    # bank transfer, my company" is not "transfer me"; "overheeting" beside "laptop" still is.
    near_support: float = 0.05
    # Typed words one slip off the flow's own words are read as those words ("agnet": agent), where
    # the language has a dictionary of its words (spelling.py).
    spelling: bool = True


# Trained classifiers by what they were trained on (sentences, labels, concepts, options): a flow
# loaded again unchanged (a reload, every test that builds an engine) does not train again.
# ... and by the code that turns sentences into features and trains: a classifier kept on disk by
# an older release is trained again rather than read with features it was not trained on.
_CODE = hashlib.sha256(b"".join((Path(__file__).parent / name).read_bytes()
                                for name in ("intents.py", "phrases.py", "classifier.py", "analysis.py",
                                             "spelling.py"))).hexdigest()
_TRAINED = OrderedDict()
_TRAINED_MAX = 8
_SAVED_MAX = 16   # trained classifiers kept on disk (cache_dir), newest first
_TRAINED_LOCK = threading.Lock()


@dataclass(frozen=True)
class Match:
    intent: str | None
    confidence: float
    runner_up: str | None = None
    via: str = ""            # why: "keyword 'refund'", "rule money + not_mine (...)", "example '...'"
    heard: tuple = ()        # (concept, the caller's words that carried it) for every concept heard
    out_of_scope: float = 0.0   # the classifier's probability that the sentence is none of the flow's
    # How like the intent's nearest training sentence the caller's words are (cosine of the
    # classifier's features; 1.0 when no classifier, or when the words are one of the intent's own
    # examples or keywords): a sentence unlike all of them is new to it.
    nearest: float = 1.0


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
        self.concepts = {}   # name -> [Phrase]
        # Concepts that only tell the engine whose matter it is (settings: elsewhere_unless) or that
        # it has no answer (no_answer_concepts) are not classifier features: "your" is how callers
        # address anyone, and as a feature it pulled "what's your favourite colour" towards "your
        # service is rubbish"; a job seeker's words taught the classifier that complaints without
        # the word are out of scope. Whose matter it is hides no other concept's words.
        self.mine = frozenset(getattr(flow, "elsewhere_unless", None) or ())
        no_answer = getattr(flow, "no_answer_concepts", None) or {}
        self.unanswered = frozenset(no_answer)
        # Concepts that only lift such a hold (no_answer_concepts' `unless`: the shop's products).
        lifting = frozenset(c for bars in no_answer.values() for c in bars.get("unless", ()))
        self.unfeatured = self.mine | self.unanswered | lifting
        # Concepts that only say whose matter it is hide no other concept's words ("your email" is an
        # email; 충전기, the shop's product, is still a charger to the safety concepts), except that a
        # product hides another business's word inside it: 마트 (a supermarket) in 스마트워치.
        self.quiet = self.mine | lifting
        self.lifting = lifting
        self.theirs = frozenset(getattr(flow, "elsewhere_concepts", None) or ())
        # Phrases whose keywords are someone else's ("manager" in "the manager position").
        self.elsewhere = self.theirs | self.unanswered
        for name, langs in (getattr(flow, "concepts", None) or {}).items():
            phrases = [Phrase(phrase_norm(p)) for p in (langs or {}).get(lang, []) if normalize(p)]
            if phrases:
                self.concepts[name] = phrases
        self.examples = []   # (normalized example, intent)
        self.keywords = []   # (Phrase, intent)
        self.rules = []      # _Rule
        self.signals = {}    # intent -> {concept}
        for intent in flow.intents.values():
            for ex in intent.examples.get(lang, []):
                if normalize(ex):
                    self.examples.append((normalize(ex), intent.name))
            for kw in intent.keywords.get(lang, []):
                if normalize(kw):
                    self.keywords.append((Phrase(phrase_norm(kw)), intent.name))
            for rule in getattr(intent, "rules", ()) or ():
                needed = tuple(rule.get("all") or ())
                if needed and all(c in self.concepts for c in needed):
                    self.rules.append(_Rule(intent.name, needed, tuple(rule.get("none") or ())))
            signals = {c for c in getattr(intent, "signals", ()) or () if c in self.concepts}
            if signals:
                self.signals[intent.name] = signals
        # The flow's own phrases of each intent, as a recognizer grammar has them (phrases()): said on
        # their own, they are never new to the bot, however short ("crashes").
        self.own = {}
        for intent in flow.intents:
            for phrase in self.phrases([intent]):
                self.own.setdefault(normalize(phrase), set()).add(intent)
        self.partners = {(a, b) for r in self.rules for a in r.all + r.none for b in r.all + r.none}
        self._concept_index = PhraseIndex([(name, p) for name, ps in self.concepts.items() for p in ps])
        self.index = None
        if options.similarity or not options.classifier:
            self.index = ExampleIndex([(ex, tuple(self._concepts(Sentence(ex)))) for ex, _ in self.examples], lang)
        self._keyword_index = PhraseIndex([(name, phrase) for phrase, name in self.keywords])
        self.frustration = [Phrase(phrase_norm(p)) for p in flow.frustration.get(lang, []) if normalize(p)]
        # Word sequences that stand for nothing (hello, wait, pardon?), longest first.
        self.fillers = sorted({tuple(normalize(p).split()) for p in (getattr(flow, "fillers", None) or {})
                               .get(lang, []) if normalize(p)}, key=len, reverse=True)
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
        self.speller = Speller.for_language(lang, self._vocabulary(flow)) if options.spelling else None

    def _vocabulary(self, flow) -> Counter:
        """The flow's own words in this language, by how often its text uses them."""
        words = Counter()
        for text, _ in self.training or self.examples:
            words.update(text.split())
        for phrase in [k for k, _ in self.keywords] + [p for ps in self.concepts.values() for p in ps]:
            words.update(phrase.text.replace("*", " ").split())
        return words

    def read(self, text: str) -> tuple:
        """(the caller's words normalized, with typed slips of the flow's words read as those words;
        ((typed, read), ...))."""
        norm = normalize(text)
        return self.speller.read(norm) if self.speller is not None else (norm, ())

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
        key = hashlib.sha256(repr((_CODE, self.lang, rows, self.options, concepts,
                                   sorted(self.unfeatured))).encode()).hexdigest()
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
            release_free_heap()   # the features and the optimizer's arrays are gone by now
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
            heard = self._concepts(Sentence(norm))
        heard = tuple(c for c in heard or () if c not in self.unfeatured) if self.options.concept_features else ()
        return self.options.features.of(norm, self.lang, heard)

    def _concepts(self, sent) -> dict:
        """Concepts heard in the sentence: name -> the words that carried it."""
        return {name: sent.norm[start:end] for name, (start, end) in self._concept_spans(sent).items()}

    def _concept_spans(self, sent) -> dict:
        """Concepts heard in the sentence: name -> (start, end) of the words that carried it.

        A concept's words inside a longer hit of another concept do not count: "express" in
        "american express" is a way to pay, not a delivery option. Concepts that a rule
        combines never hide each other: "two payments" is both money and twice. Whose matter it is
        (elsewhere_unless) hides nothing: "your email" is this shop's and still an email. A phrase
        the flow has no answer for does: "station" in "radio station" is no journey.
        """
        found = {}    # name -> (start, end)
        for name, phrase in self._concept_index.candidates(sent):
            hit = phrase.find(sent)
            if hit and not hit[2]:
                continue   # one letter off a keyword ("parking" for "sparking") is not a concept's word
            if hit and (name not in found or hit[1] - hit[0] > found[name][1] - found[name][0]):
                found[name] = hit[:2]
        korean = self.lang == "ko"
        out = {}
        for name, (start, end) in found.items():
            hiding = [span for o, span in found.items()
                      if o != name and (o, name) not in self.partners
                      and (o not in self.quiet or (o in self.lifting and name in self.theirs))]
            if not (inside(start, end, hiding) or (korean and overlapped(start, end, hiding))):
                out[name] = (start, end)
        return out

    def _keywords(self, sent, theirs) -> list:
        """[(phrase, intent, (start, end, exact))] of the keywords heard. A keyword inside a longer
        phrase of another business's matter (`theirs`: spans of elsewhere_concepts) is that
        business's word, as "return" in "tax return" is: 민원 (a complaint) in 구청 민원실 (the
        district office's service desk). Said again elsewhere in the sentence, it counts there
        ("the letting agent told me to ask for an agent")."""
        found, masked = [], None
        for name, phrase in self._keyword_index.candidates(sent):
            hit = phrase.find(sent)
            if hit and inside(hit[0], hit[1], theirs):
                if masked is None:   # the same sentence with their phrases blanked out, positions kept
                    chars = list(sent.norm)
                    for s, e in theirs:
                        chars[s:e] = "_" * (e - s)
                    masked = Sentence("".join(chars)).find_near(self.fuzzy)
                hit = phrase.find(masked)
            if hit:
                found.append((phrase, name, hit))
        return found

    def _analyse(self, norm: str):
        """Concepts, similarities and keyword hits of one sentence, whatever the step listens for.

        The engine asks twice per turn (global rules, then the step's own intents): the last
        sentence's analysis is kept, one entry, replaced whole (safe across threads)."""
        cached = self._last
        if cached is not None and cached[0] == norm:
            return cached[1]
        sent = Sentence(norm).find_near(self.fuzzy)
        spans = self._concept_spans(sent)
        heard = {name: sent.norm[start:end] for name, (start, end) in spans.items()}
        sims = self.index.similarities(norm, tuple(heard)) if self.index is not None else []
        found = self._keywords(sent, [span for name, span in spans.items() if name in self.elsewhere])
        if self.lang == "ko":
            hits = [hit[:2] for _, _, hit in found]
            found = [f for f in found if not overlapped(f[2][0], f[2][1], hits)]
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
        norm, typed = self.read(text)
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
            if better_hit(found, phrase.text, hits.get(name)):
                hits[name] = (phrase.text,) + found
        hits = unshadowed(hits)
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
        if probs is not None and self.options.near_support:
            hits = {n: h for n, h in hits.items() if h[3] or probs.get(n, 0.0) >= self.options.near_support}
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
        if out and typed:
            name, conf, via = out[0]
            out[0] = (name, conf, via + "; read " + ", ".join(f"'{a}' as '{b}'" for a, b in typed))
        return out

    def _explain(self, norm, feats, probs, name, via, heard) -> str:
        """Why the classifier leans to `name`: its probability, the caller's words that weighed
        most, and the nearest training sentence: "classifier 0.82 (words 'never bought'), nearest
        'i never bought this'". Only for the intent that ranks first, once per sentence (the
        engine asks twice per turn)."""
        cached = self._last_explained
        if cached is None or cached[:2] != (norm, name):
            cached = self._last_explained = (norm, name) + self._classifier_says(norm, feats, probs, name, heard)
        said = cached[2]
        return said if via == "classifier" else f"{via}; {said}"

    def _classifier_says(self, norm, feats, probs, name, heard) -> tuple:
        """(what the classifier says, the cosine of the nearest training sentence of `name`)."""
        p = probs.get(name, 0.0)
        words = self._reason_words(norm, feats, name, heard)
        said = f"classifier {p:.2f}" + (f" (words {', '.join(words)})" if words else "")
        row, sim = self.classifier.nearest(feats, name)
        if sim > 0:
            said += f", nearest '{self.training[row][0]}'"
        oos = probs.get(None, 0.0)
        if oos >= p:
            said += f"; out of scope {oos:.2f}"
        return said, sim

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
        norm, _ = self.read(text)
        heard, _, _, feats, probs = self._analyse(norm)    # the analysis ranked() just made (kept)
        return Match(name, conf, ranked[1][0] if len(ranked) > 1 else None, via, tuple(sorted(heard.items())),
                     round(float(probs.get(None, 0.0)), 3) if probs else 0.0, self._nearest(norm, feats, name))

    def _nearest(self, norm, feats, name) -> float:
        """How like the intent's nearest training sentence the words are (Match.nearest): the
        cosine the explanation of this sentence computed, or, when another thread's sentence has
        replaced that one-entry cache in between, computed again."""
        if self.classifier is None or name not in self.classifier.classes or name in self.own.get(norm, ()):
            return 1.0
        explained = self._last_explained
        if explained is not None and explained[:2] == (norm, name):
            return round(explained[3], 3)
        return round(self.classifier.nearest(feats, name)[1], 3)

    def frustration_phrase(self, text: str) -> str | None:
        """The frustration phrase the caller used, if any."""
        norm, _ = self.read(text)
        cached = self._last
        sent = cached[2] if cached is not None and cached[0] == norm else Sentence(norm).find_near(self.fuzzy)
        return next((p.text for p in self.frustration if p.find(sent)), None)

    def is_frustrated(self, text: str) -> bool:
        return self.frustration_phrase(text) is not None

    def without_fillers(self, text: str) -> str:
        """What the caller said without the flow's fillers (whole words: "음" leaves "음성" alone):
        `text` itself when there are none in it, "" when there was nothing else."""
        if not self.fillers:
            return text
        words = normalize(text).split()
        out, i, found = [], 0, False
        while i < len(words):
            hit = next((f for f in self.fillers if tuple(words[i:i + len(f)]) == f), None)
            if hit:
                i += len(hit)
                found = True
            else:
                out.append(words[i])
                i += 1
        return " ".join(out) if found else text

    def phrases(self, intents) -> list:
        """Phrases a recognizer grammar should accept for these intents: examples, then keywords."""
        out, seen = [], set()
        for phrase in [ex for ex, name in self.examples if name in intents] + \
                      [kw.text.replace("*", "") for kw, name in self.keywords if name in intents]:
            if phrase not in seen:
                seen.add(phrase)
                out.append(phrase)
        return out
