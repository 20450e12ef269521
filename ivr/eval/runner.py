"""Run a labelled set through the recognizer and the flow engine the live calls use.

Each item is one caller turn at one step (the flow's start step unless the item
names another, e.g. the open question `how_can_help`). With a speech model the
item's audio is fed, in 20 ms frames as a media stream delivers it, to the same
`Recognizer` with the same grammar (`grammar.for_step`) a live call has at that
step: a directed menu decodes against its short option phrases, an open step
against every phrase plus free-form recognition. Then the engine decides, exactly
as for a caller, and the decision is compared with the label.
"""
from __future__ import annotations

import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from ..flows.engine import Conversation, Engine, Input
from ..media.audio import frames, silence
from ..speech import grammar
from ..speech.recognizer import Recognizer
from .dataset import AudioSource, EvalItem, EvalSet
from .wer import char_errors, word_errors

# Silence after the caller's words before the utterance is taken as finished: the live
# endpointer waits IVR_ENDPOINT_SILENCE_MS (220 ms) after the partial result settles.
TAIL_SILENCE_MS = 240


@dataclass
class ItemResult:
    text: str
    step: str
    expected_intent: str | None
    expected_queue: str | None
    heard: str
    asr: str                  # grammar | free | text | "" (nothing heard)
    confidence: float | None
    intent: str | None        # what the engine routed on (None when it asked again)
    queue: str | None         # urgent | normal when handed to a person
    action: str               # goto | answer | clarify | handoff | hangup | slot
    detail: str
    audio_seconds: float = 0.0
    word_edits: int = 0
    words: int = 0
    char_edits: int = 0
    chars: int = 0
    # Out-of-scope items only: what happened when the caller, not understood, tried once more.
    second_queue: str | None = None
    second_detail: str = ""

    @property
    def intent_ok(self) -> bool:
        return self.intent == self.expected_intent

    @property
    def route_ok(self) -> bool:
        return self.queue == self.expected_queue

    @property
    def clarified(self) -> bool:
        return self.action == "clarify"

    @property
    def contained(self) -> bool:
        """The bot served the caller on this turn: no person, no request to say it again."""
        return self.queue is None and not self.clarified

    @property
    def human_path(self) -> bool:
        """An urgent item reached the urgent queue, a request for a person reached a person."""
        if self.expected_queue == "urgent":
            return self.queue == "urgent"
        return self.queue is not None

    @property
    def oos_handled(self) -> bool:
        """Out of scope: no answer, and a person after at most one clarification."""
        if self.queue is not None:
            return True
        return self.clarified and self.second_queue is not None


@dataclass
class EvalResult:
    set_path: str
    flow: str
    lang: str
    asr: str                  # vosk | text
    items: list
    min_accuracy: float | None = None
    seconds: float = 0.0
    metrics: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.min_accuracy is None or self.metrics["intent_accuracy"] >= self.min_accuracy

    def to_dict(self) -> dict:
        return {"set": self.set_path, "flow": self.flow, "lang": self.lang, "asr": self.asr,
                "min_accuracy": self.min_accuracy, "passed": self.passed, "seconds": round(self.seconds, 2),
                "metrics": self.metrics, "items": [asdict(r) for r in self.items]}


def _ratio(num, den):
    return round(num / den, 4) if den else None


def metrics(results: list, asr: str) -> dict:
    n = len(results)
    urgent = [r for r in results if r.expected_queue == "urgent"]
    words = sum(r.words for r in results)
    chars = sum(r.chars for r in results)
    per_intent = {}
    for r in results:
        key = r.expected_intent or "(out of scope)"
        row = per_intent.setdefault(key, {"items": 0, "correct": 0})
        row["items"] += 1
        row["correct"] += r.intent_ok
    per_step = {}
    for r in results:
        row = per_step.setdefault(r.step, {"items": 0, "correct": 0})
        row["items"] += 1
        row["correct"] += r.intent_ok
    for row in list(per_intent.values()) + list(per_step.values()):
        row["accuracy"] = _ratio(row["correct"], row["items"])
    predicted = Counter(r.intent for r in results if r.intent)
    for name, row in per_intent.items():
        row["route_ok"] = sum(r.intent_ok and r.route_ok for r in results
                              if (r.expected_intent or "(out of scope)") == name)
        row["recall"] = _ratio(row["correct"], row["items"])
        row["precision"] = _ratio(row["correct"], predicted.get(name, 0)) if name in predicted else None
    pairs = Counter((r.expected_intent or "(out of scope)", r.intent or "(clarify)")
                    for r in results if not r.intent_ok)
    human = [r for r in results if r.expected_queue is not None]
    not_urgent = [r for r in results if r.expected_queue != "urgent"]
    oos = [r for r in results if r.expected_intent is None]
    human_by_intent = {}
    for r in human:
        row = human_by_intent.setdefault(r.expected_intent or "(none)", {"items": 0, "reached": 0})
        row["items"] += 1
        row["reached"] += r.human_path
    return {
        "items": n,
        "intent_accuracy": _ratio(sum(r.intent_ok for r in results), n),
        "routing_accuracy": _ratio(sum(r.intent_ok and r.route_ok for r in results), n),
        "wer": _ratio(sum(r.word_edits for r in results), words) if asr != "text" else None,
        "cer": _ratio(sum(r.char_edits for r in results), chars) if asr != "text" else None,
        "urgent_items": len(urgent),
        "urgent_to_human_rate": _ratio(sum(r.queue == "urgent" for r in urgent), len(urgent)),
        "false_urgent": sum(r.queue == "urgent" and r.expected_queue != "urgent" for r in results),
        "false_urgent_rate": _ratio(sum(r.queue == "urgent" for r in not_urgent), len(not_urgent)),
        "human_items": len(human),
        "human_path_recall": _ratio(sum(r.human_path for r in human), len(human)),
        "human_path_missed": len(human) - sum(r.human_path for r in human),
        "human_path_by_intent": human_by_intent,
        "oos_items": len(oos),
        "oos_handled_rate": _ratio(sum(r.oos_handled for r in oos), len(oos)),
        "oos_answered": sum(r.intent is not None for r in oos),
        "clarification_rate": _ratio(sum(r.clarified for r in results), n),
        "containment": _ratio(sum(r.contained for r in results), n),
        "expected_containment": _ratio(sum(r.expected_queue is None and r.expected_intent is not None
                                           for r in results), n),
        "audio_seconds": round(sum(r.audio_seconds for r in results), 1),
        "per_step": per_step,
        "per_intent": dict(sorted(per_intent.items())),
        "confusions": [{"expected": e, "got": g, "count": c} for (e, g), c in pairs.most_common()],
    }


def recognize(model, lang, flow, expect, audio: bytes):
    """What a live call's recognizer hears at this step: same grammar, same 20 ms frames.

    A fresh recognizer per item, as for the first turn of a new call: Kaldi adapts to the
    speaker across utterances, so a shared one would make each result depend on the items
    decoded before it (and on which thread ran them).
    """
    rec = Recognizer(model, lang)
    phrases, open_ = grammar.for_step(flow, expect, lang)
    rec.listen(phrases, open_)
    for f in frames(audio + silence(TAIL_SILENCE_MS)):
        rec.accept(f)
    return rec.final()


def evaluate(eval_set: EvalSet, flow, lang: str | None = None, model=None, cache_dir=None,
             min_accuracy: float | None = None, workers: int | None = None, progress=None,
             engine: Engine | None = None) -> EvalResult:
    """Run every item; `model` is a loaded vosk.Model (None: text only, the transcript is what was heard).

    `engine`: an engine already built for `flow` (training its classifier takes a second or two)."""
    started = time.monotonic()
    lang = lang or eval_set.lang or flow.languages[0]
    if lang not in flow.languages:
        raise ValueError(f"flow {flow.id} does not speak {lang!r} (it speaks {', '.join(flow.languages)})")
    engine = engine or Engine(flow)
    for item in eval_set.items:
        step = item.step or flow.start
        if step not in flow.steps:
            raise ValueError(f"item {item.line}: flow {flow.id} has no step {step!r}")
        if model is None and not item.text:
            raise ValueError(f"item {item.line}: text-only evaluation needs the transcript (`text`)")
        if model is not None and flow.steps[step].type != "menu":
            raise ValueError(f"item {item.line}: step {step!r} is not a menu; evaluate menu steps")
    source = AudioSource(cache_dir or "var/eval-cache", lang, eval_set.voice_speed) if model is not None else None
    # An out-of-scope caller who was asked again says another out-of-scope thing (the next one in
    # the set, as text), so the repetition rule cannot do the work: the second miss must hand off.
    oos_texts = [i.text for i in eval_set.items if i.expected_intent is None and i.text]

    def run(item: EvalItem) -> ItemResult:
        step = item.step or flow.start
        conv = Conversation(flow.id, lang)
        if step == flow.start:
            engine.start(conv)
        else:
            conv.step = step
        expect = engine.expect(step, lang)
        seconds = 0.0
        if model is None:
            heard, conf, asr = item.text, None, "text"
        else:
            audio = source.get(item)
            seconds = len(audio) / 8000
            h = recognize(model, lang, flow, expect, audio)
            heard, conf, asr = h.text, h.confidence, h.source
        reply = engine.handle(conv, Input("speech", heard, conf) if heard else Input("silence"))
        d = reply.decision
        intent = d.intent if d is not None and d.action != "clarify" else None
        we, wn = word_errors(item.text, heard) if item.text else (0, 0)
        ce, cn = char_errors(item.text, heard) if item.text else (0, 0)
        result = ItemResult(item.text, step, item.expected_intent, item.expected_queue, heard, asr, conf,
                            intent, reply.route.queue if reply.route else None, d.action if d else "",
                            d.detail if d else "", round(seconds, 2), we, wn, ce, cn)
        if item.expected_intent is None and reply.route is None and d is not None and d.action == "clarify":
            others = [t for t in oos_texts if t != item.text] or ["?"]
            follow = others[oos_texts.index(item.text) % len(others)] if item.text in oos_texts else others[0]
            second = engine.handle(conv, Input("speech", follow))
            result.second_queue = second.route.queue if second.route else None
            result.second_detail = second.decision.detail if second.decision else ""
        if progress:
            progress(result)
        return result

    n = workers or (min(4, os.cpu_count() or 1) if model is not None else 1)
    if n > 1:
        with ThreadPoolExecutor(n, thread_name_prefix="ivr-eval") as pool:
            results = list(pool.map(run, eval_set.items))
    else:
        results = [run(item) for item in eval_set.items]
    asr = "vosk" if model is not None else "text"
    threshold = min_accuracy if min_accuracy is not None else eval_set.min_accuracy
    return EvalResult(str(eval_set.path), flow.id, lang, asr, results, threshold,
                      time.monotonic() - started, metrics(results, asr))
