"""Build Vosk grammars from what a flow step expects.

A directed step ("say refund, opening hours or agent") decodes against a
handful of option words: small grammars are what a small model gets right
(a dozen short phrases, not the sixty examples and keywords the intent
matcher knows). Only phrases whose every word is in the model's vocabulary
go in: Vosk would drop unknown words with a warning and then match nonsense.
"""
from __future__ import annotations

import json

from ..flows.digits import _WORDS as DIGIT_WORDS
from ..flows.intents import normalize

# Directed steps listen for option words, not whole sentences: examples of at
# most this many words. Sentence examples still serve the intent matcher.
DIRECTED_MAX_WORDS = 2
AGENT_INTENT = "agent_request"


def for_step(flow, expect, lang: str) -> tuple:
    """(candidate phrases, open) for the recognizer at this step; vocabulary is checked later."""
    if expect is None:
        return [], True
    if expect.digits:
        # Number entry: the spoken digits of the language, one word at a time, and the words for
        # a person: "상담원" in the middle of an order number reaches one too.
        return list(DIGIT_WORDS.get(lang, {})) + person_words(flow, lang) + off_menu(flow, lang), False
    if expect.open:
        # The open question has free-form recognition for words off the menu; fillers in its grammar
        # only moved the guesses (measured: 오늘 날씨 어때요 became "으음 ..." and a complaint).
        return list(expect.phrases) + off_menu(flow, lang, fillers=False), True
    step = flow.steps.get(expect.step)
    wanted = {o.intent for o in step.options} if step else set()
    wanted |= {n for n, i in flow.intents.items() if i.handoff is not None} | {AGENT_INTENT}
    short = []
    for name, intent in flow.intents.items():
        if name in wanted:
            short += [p for p in intent.examples.get(lang, []) if len(normalize(p).split()) <= DIRECTED_MAX_WORDS]
    return (short or list(expect.phrases)) + off_menu(flow, lang), False


def off_menu(flow, lang: str, fillers: bool = True) -> list:
    """What callers say besides the options, in every grammar: the flow's frustration phrases (a
    fed-up caller reaches a person, not the option word nearest "짜증나") and its fillers (hello,
    wait, pardon?), which absorb words that are no option instead of being forced into one.

    Not the phrases with a one-letter word (말이 안 통, 짜증 나; the fillers 음, 어, 아): Vosk decodes a
    grammar's words in any order, so 안, 나, 통 alone matched any short sound (the matcher read
    "안 돼" as a broken product or a complaint), and 음, 어, 아 took option words (시간, 반품, 상담원)
    from the menu (docs/speech.md, "Words that are no option"). Nor those the flow's setting
    grammar_leave_out names, measured to take option words (시간 낭비: 사람 was heard as 낭비)."""
    out = {normalize(p) for p in (flow.settings.get("grammar_leave_out") or {}).get(lang, [])}
    phrases = list(flow.frustration.get(lang, [])) + (list(flow.fillers.get(lang, [])) if fillers else [])
    return [p for p in phrases if normalize(p) not in out and all(len(w) > 1 for w in normalize(p).split())]


def person_words(flow, lang: str) -> list:
    """The short ways to ask for a person (agent_request's examples of at most two words):
    in every step's grammar, whatever else the step listens for."""
    intent = flow.intents.get(AGENT_INTENT)
    examples = intent.examples.get(lang, []) if intent else []
    return [p for p in examples if len(normalize(p).split()) <= DIRECTED_MAX_WORDS]


def in_vocabulary(phrases, in_vocab) -> list:
    """Normalized, de-duplicated phrases whose every word the model knows."""
    out = []
    for phrase in phrases:
        norm = normalize(phrase)
        words = norm.split()
        if words and norm not in out and all(in_vocab(w) for w in words):
            out.append(norm)
    return out


def to_json(phrases) -> str:
    return json.dumps(list(phrases), ensure_ascii=False)
