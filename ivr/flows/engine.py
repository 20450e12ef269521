"""The shallow flow engine: one caller input in, one bot reply out.

It is pure (no Redis, no Twilio, no audio) so the keypad webhooks, the media
stream and the tests all drive exactly the same decisions. The global rules
live here, not in flow files, because no flow may opt out of them: a person
on request, urgent problems to the urgent queue, one clarification at most.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace

from rapidfuzz import fuzz

from .. import faults
from .digits import only_digits, speakable, spoken_digits
from .intents import IntentMatcher, normalize
from .model import INPUT_STEPS, LOOKUP_FAILED, Flow, LookupFailed, wording

AGENT_INTENT = "agent_request"
MAX_MISSES = 2          # the second miss in a row goes to a person: one clarification, never a loop
MAX_TOTAL_MISSES = 3    # a caller who keeps half-succeeding is also better off with a person
REPEAT_RATIO = 90       # the same sentence again, give or take recognizer noise
MAX_CHAIN = 25


@dataclass
class Conversation:
    """Per-call state the engine needs between turns; stored in Redis as JSON."""
    flow: str
    lang: str
    step: str | None = None
    misses: int = 0         # misses in a row at the current step
    total_misses: int = 0   # misses in the whole call
    slots: dict = field(default_factory=dict)
    last_text: str = ""
    # Why this caller deserves priority (repeat_caller, transferred_before), if any.
    boost: str | None = None
    # "speech" when the call's language has a speech model (it talks over a media stream), else
    # "keypad": prompts the flow words both ways are said in this call's way (model.wording).
    mode: str = "keypad"
    # Outside the flow's opening hours (ivr.hours), decided by the caller of the engine for this
    # turn's moment: the greeting says so, and a person becomes an offer of a call back or a message.
    closed: bool = False

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True)
class Input:
    kind: str               # "dtmf" | "speech" | "silence"
    text: str = ""
    confidence: float | None = None   # recognizer confidence, for the transcript


@dataclass
class Expect:
    """What the current step waits for; drives <Gather> and the Vosk grammar."""
    step: str
    keys: list              # single keys the step accepts ("0" always)
    digits: bool            # a digit string ended by '#'
    phrases: list           # grammar for the recognizer
    open: bool              # free-form speech is meaningful here


@dataclass
class Route:
    queue: str              # urgent | normal
    reason: str
    boosted_by: str | None = None
    after_hours: bool = False   # nobody to take the call now: offer a call back or a message instead


@dataclass
class Decision:
    intent: str | None
    confidence: float
    action: str             # goto | answer | clarify | handoff | hangup | slot
    detail: str = ""


@dataclass
class Reply:
    prompts: list
    expect: Expect | None = None
    route: Route | None = None
    hangup: bool = False
    decision: Decision | None = None
    answered: bool = False   # an answer step was spoken: the bot served the caller

    @property
    def text(self) -> str:
        return " ".join(self.prompts)


_TEMPLATE = re.compile(r"\{([a-z_][a-z0-9_]*)(?:\.([a-z_][a-z0-9_]*))?\}")


class Engine:
    def __init__(self, flow: Flow, matcher_options=None, cache_dir=None):
        """cache_dir: where trained intent classifiers are kept, so a restart does not train again."""
        self.flow = flow
        self.matchers = {lang: IntentMatcher(flow, lang, matcher_options, cache_dir) for lang in flow.languages}
        self.global_intents = {n for n, i in flow.intents.items() if i.handoff is not None}
        # What a caller may bring up at any step: the hotline's topics (the start menu's options) and
        # the ways to a person. A reply that belongs to one question ("no", "that's all" ending the
        # call at "anything else?") is heard only where that question offers it: taken anywhere,
        # "no, I don't have the number" or "nothing works at all" hung up on the caller.
        start = flow.steps[flow.start]
        topics = {o.intent for o in start.options} if start.type == "menu" else set(flow.intents)
        self.anywhere = frozenset(topics | self.global_intents | {AGENT_INTENT})
        self._expects = {}   # (step, lang) -> Expect, see expect()
        self._among = {}     # step -> the intents understood there, see _understood()

    # -- entry points -------------------------------------------------------
    def start(self, conv: Conversation) -> Reply:
        # Out of hours the caller hears so first; the bot still answers what it can.
        opening = [self.flow.message("closed", conv.lang, mode=conv.mode)] if conv.closed else []
        return self._enter(conv, self.flow.start, opening)

    def handle(self, conv: Conversation, inp: Input, lookup=None) -> Reply:
        """`lookup(source, value)`: the record a data source (the flow's `sources:`) has for a slot
        value, None when it has none, LookupFailed when it gave no usable answer. The I/O is the
        caller's (ivr.data_sources); the engine only decides what the answer means for the call."""
        faults.inject("step_error")
        if conv.step is None or conv.step not in self.flow.steps:
            # The bot part is over (or the flow changed under a live call): a person takes it.
            return self._handoff(conv, "normal", "flow_ended", [], Decision(None, 0.0, "handoff", "no active step"))
        step = self.flow.steps[conv.step]
        text = (inp.text or "").strip()

        if inp.kind == "dtmf" and text == "0":
            return self._route_intent(conv, AGENT_INTENT, 1.0, None, [], "key 0")
        if inp.kind == "dtmf" and text == "*" and step.more and step.option_for_key("*") is None:
            # The caller asked for the whole menu: not a miss, no apology.
            return self._enter(conv, step.name, [], Decision(None, 1.0, "repeat", "key *: the whole menu"), again=True)
        if inp.kind == "speech" and text:
            # Hello, wait, pardon?: no evidence of anything. Alone they are not understood.
            kept = self.matchers[conv.lang].without_fillers(text)
            if not kept:
                return self._miss(conv, step, Decision(None, 0.0, "clarify", f"only fillers: '{normalize(text)}'"))
            if kept != text:
                text, inp = kept, replace(inp, text=kept)
        if inp.kind == "speech" and text and not (step.type == "ask" and only_digits(text, conv.lang)):
            reply = self._global_rules(conv, text)
            if reply is not None:
                return reply

        if step.type == "menu":
            return self._menu(conv, step, inp)
        if step.type == "ask":
            return self._ask(conv, step, inp, lookup)
        # answer/handoff/goodbye never wait for input; re-enter defensively.
        return self._enter(conv, step.name, [])

    def _global_rules(self, conv, text) -> Reply | None:
        """Rules every step obeys, before the step sees the words: a person when asked,
        urgent problems first, a frustrated caller out of the bot."""
        matcher = self.matchers[conv.lang]
        said = global_intent(self.flow, matcher.ranked(text), self.flow.confidence_threshold,
                             self.flow.urgent_threshold)
        if said is not None and not (self.flow.no_answer_concepts and self._held_handoff(*said)
                                     and self._no_answer(matcher.match(text), said[1], "handoffs")):
            name, confidence, via = said
            return self._route_intent(conv, name, confidence, None, [], via)
        phrase = matcher.frustration_phrase(text)
        norm = normalize(text)
        repeated = (len(norm.split()) >= 2 and bool(conv.last_text)
                    and fuzz.ratio(norm, conv.last_text) >= REPEAT_RATIO)
        conv.last_text = norm
        if phrase or repeated:
            why = f"frustration phrase '{phrase}'" if phrase else f"caller repeated themselves: '{norm}'"
            return self._handoff(conv, "normal", "frustrated", [], Decision(None, 0.0, "handoff", why))
        return None

    def expect(self, step_name: str, lang: str) -> Expect:
        """What a step waits for. Flows are immutable once loaded, so this is computed
        once per step and language: it sits on every webhook's path."""
        key = (step_name, lang)
        cached = self._expects.get(key)
        if cached is None:
            cached = self._expects[key] = self._build_expect(step_name, lang)
        return replace(cached, keys=list(cached.keys), phrases=list(cached.phrases))

    def _build_expect(self, step_name: str, lang: str) -> Expect:
        step = self.flow.steps[step_name]
        matcher = self.matchers[lang]
        if step.type == "ask":
            return Expect(step.name, ["0"], True, [], False)
        keys = sorted({o.key for o in step.options if o.key} | {"0"} | ({"*"} if step.more else set()))
        phrases = matcher.phrases(self._understood(step) if step.listen == "options" else set(self.flow.intents))
        return Expect(step.name, keys, False, phrases, step.listen == "open")

    def _understood(self, step) -> frozenset:
        """The intents a caller's words may mean at a menu: its options and the ways to a person,
        and at an open menu the hotline's topics too (see `anywhere`). Computed once per step."""
        among = self._among.get(step.name)
        if among is None:
            among = {o.intent for o in step.options} | self.global_intents | {AGENT_INTENT}
            if step.listen == "open":
                among |= self.anywhere
            among = self._among[step.name] = frozenset(among)
        return among

    # -- steps ---------------------------------------------------------------
    def _menu(self, conv, step, inp) -> Reply:
        if inp.kind == "dtmf":
            opt = step.option_for_key(inp.text[:1]) if len(inp.text) == 1 else None
            if opt:
                return self._route_intent(conv, opt.intent, 1.0, opt.goto, [], f"key {opt.key}")
            return self._miss(conv, step, Decision(None, 0.0, "clarify", f"key {inp.text!r} is not an option"))
        if inp.kind == "speech" and inp.text.strip():
            m = self.matchers[conv.lang].match(inp.text, among=self._understood(step))
            bar = self._bar(conv, m.intent)
            if m.intent and m.confidence >= bar:
                opt = next((o for o in step.options if o.intent == m.intent), None)
                return self._answer_unless_held(conv, step, m, opt.goto if opt else None)
            # Not understood: the guess stays out of `intent` (reports and the agent's briefing
            # read it as the topic) and goes into the detail, for whoever tunes the flow.
            best = f"best {m.intent} ({m.confidence:.2f})" if m.intent else "no intent"
            why = f" ({m.via})" if m.via else ""
            again = " (asked again)" if bar != self.flow.confidence_threshold else ""
            return self._miss(conv, step, Decision(None, m.confidence, "clarify",
                                                   f"low confidence: {best} < {bar:.2f}{again}" + why))
        return self._miss(conv, step, Decision(None, 0.0, "clarify", "no input"), silent=True)

    def _answer_unless_held(self, conv, step, m, goto) -> Reply:
        """The intent understood with enough confidence, unless what else the caller said holds it
        back (_elsewhere): then one clarification, whose detail says why (the guess stays out of
        `intent`, as for any clarification)."""
        held, passed = self._elsewhere(m)
        if held:
            why = f" ({m.via})" if m.via else ""
            return self._miss(conv, step, Decision(None, m.confidence, "clarify",
                                                   f"best {m.intent} ({m.confidence:.2f}), but {held}" + why))
        return self._route_intent(conv, m.intent, m.confidence, goto, [], m.via + (f"; {passed}" if passed else ""))

    def _elsewhere(self, m) -> tuple:
        """(held, passed). held: why a routine answer is held back, the caller named another
        business's matter (flow setting elsewhere_concepts), e.g. "a court order", "the bank's
        opening hours"; "" when not. passed: why such words did not hold it back because the caller
        also said it is this shop's matter ("your store by the station": elsewhere_unless). Words
        the flow has no answer for (no_answer_concepts: a caller who is not calling as a customer,
        a matter of the shop's it does not serve) hold back a routine answer, and a handoff on the
        classifier's lean alone, below each concept's confidences, unless the caller also named
        what lifts the concept's hold (its `unless`: "the dash cam in my car")."""
        spec = self.flow.intents.get(m.intent)
        if spec is None:
            return "", ""
        lifted = ""
        if spec.handoff is None or self._held_handoff(m.intent, m.confidence, m.via):
            said = self._no_answer(m, m.confidence, "answers" if spec.handoff is None else "handoffs")
            if said:
                return f"heard {said}: no answer for it here", ""
            lifted = self._no_answer_lifted(m)
        if spec.handoff is not None:
            return "", lifted
        new, near = self._new_to_it(m)
        if new:
            return new, ""
        lifted = "; ".join(filter(None, (lifted, near)))
        bars = self.flow.elsewhere_concepts
        # The caller also said it is this shop's matter: the place named beside it needs a stronger
        # out-of-scope lean.
        ours = [(c, words) for c, words in m.heard if c in self.flow.elsewhere_unless]
        floor = max((self.flow.elsewhere_unless[c] for c, _ in ours), default=0.0)
        heard = [(c, words) for c, words in m.heard if c in bars and m.out_of_scope >= bars[c]]
        said = [f"{c} ('{words}')" for c, words in heard if m.out_of_scope >= floor]
        beside = f" beside {ours[0][0]} ('{ours[0][1]}')" if ours else ""
        if said:
            return ("heard " + ", ".join(said) + beside + f" and out of scope {m.out_of_scope:.2f}: "
                    "another business's matter"), ""
        passed = [lifted] if lifted else []
        if heard:
            passed.append("heard " + ", ".join(f"{c} ('{words}')" for c, words in heard) + beside
                          + f", out of scope {m.out_of_scope:.2f} < {floor:.2f}: the shop's own matter")
        return "", "; ".join(passed)

    def _new_to_it(self, m) -> tuple:
        """(held, passed) by flow setting answer_nearest: the caller's words unlike every training
        sentence of the intent hold back a routine answer, unless they name what lifts the hold."""
        near = self.flow.answer_nearest
        if near is None or m.nearest >= near["below"]:
            return "", ""
        said = f"nearest training sentence {m.nearest:.2f} < {near['below']:.2f}"
        heard = dict(m.heard)
        lift = _lift(near, heard)
        if lift is None:
            return f"{said}: unlike what it answers", ""
        return "", f"{said} beside {lift} ('{heard[lift]}'): the shop's own matter"

    def _no_answer(self, m, confidence, kind) -> str:
        """The words the flow has no answer for (setting no_answer_concepts) that hold back a
        decision of this `kind` ("answers" or "handoffs") at this confidence: "not_customer ('we
        supply')", "unserved ('price match')"; "" when none. A concept holds back below its
        confidence for the kind; 1 holds back at any confidence, 0 never."""
        bars = self.flow.no_answer_concepts
        heard = dict(m.heard)
        return ", ".join(f"{c} ('{words}')" for c, words in m.heard
                         if c in bars and (bars[c][kind] >= 1 or confidence < bars[c][kind])
                         and not _lift(bars[c], heard))

    def _no_answer_lifted(self, m) -> str:
        """Why words the flow has no answer for held nothing back: the caller also named what lifts
        their hold, "heard not_sold ('my car') beside products ('dash cam'): the shop's own matter"."""
        bars = self.flow.no_answer_concepts
        heard = dict(m.heard)
        for c, words in m.heard:
            lift = _lift(bars[c], heard) if c in bars else None
            if lift:
                return f"heard {c} ('{words}') beside {lift} ('{heard[lift]}'): the shop's own matter"
        return ""

    def _held_handoff(self, name, confidence, via) -> bool:
        """Whether no-answer words may hold back this handoff: it rests on the classifier's lean
        alone, and the intent declares no signals. Money and physical safety (the intents with
        signals) are never held back, nor a keyword, rule or signal."""
        spec = self.flow.intents[name]
        return spec.handoff is not None and not spec.signals and not _lifted(via)

    def _bar(self, conv, intent) -> float:
        """The confidence an intent needs here: stricter for a routine answer once the caller was
        asked again (flow setting clarified_threshold); never for a way to a person."""
        spec = self.flow.intents.get(intent)
        if conv.misses and spec is not None and spec.handoff is None:
            return self.flow.clarified_threshold
        return self.flow.confidence_threshold

    def _ask(self, conv, step, inp, lookup=None) -> Reply:
        slot = step.slot
        if inp.kind == "dtmf":
            value = re.sub(r"\D", "", inp.text)
        elif inp.kind == "speech":
            value = spoken_digits(inp.text, conv.lang)
            if not value:
                # No number at all: the caller may have changed the subject ("actually, a refund").
                m = self.matchers[conv.lang].match(inp.text, among=self.anywhere)
                intent = self.flow.intents.get(m.intent)
                if intent and m.confidence >= self.flow.confidence_threshold and intent.goto != step.name:
                    return self._answer_unless_held(conv, step, m, None)
        else:
            return self._miss(conv, step, Decision(None, 0.0, "clarify", "no input"), silent=True)
        if not re.fullmatch(slot["pattern"], value or ""):
            # A wrong number hears the step's `invalid` text; no number at all hears `clarify`.
            return self._miss(conv, step, Decision(None, 0.0, "slot", f"{slot['name']}={value!r} does not match"),
                              invalid=bool(value))
        record = None
        if slot.get("lookup") in self.flow.sources:
            source = self.flow.sources[slot["lookup"]]
            try:
                if lookup is None:
                    raise LookupFailed("no data source connection")
                record = lookup(source, value)
            except LookupFailed as exc:
                # Never silence, never a loop: the flow's words for it, then a person.
                conv.slots[slot["name"]] = value
                return self._handoff(conv, "normal", LOOKUP_FAILED, [self._text(source.failed, conv)],
                                     Decision(None, 0.0, "handoff", f"source {source.name} failed: {exc}"))
        elif slot.get("lookup"):
            record = self.flow.data.get(slot["lookup"], {}).get(value)
        if slot.get("lookup") and record is None:
            # Not in the data file, or the source has no such record (404): asked again.
            return self._miss(conv, step, Decision(None, 0.0, "slot", f"{slot['name']}={value} not found"),
                              invalid=True)
        conv.misses = 0
        conv.slots[slot["name"]] = value
        if record is not None:
            conv.slots[slot.get("record") or slot["lookup"]] = record
        return self._enter(conv, step.next, [], Decision(None, 1.0, "slot", f"{slot['name']}={value}"))

    def _miss(self, conv, step, decision, invalid=False, silent=False) -> Reply:
        """One clarification, then a person: never a loop, not even a slow one."""
        conv.misses += 1
        conv.total_misses += 1
        if conv.misses >= MAX_MISSES or conv.total_misses >= MAX_TOTAL_MISSES:
            decision.detail += "; second miss" if conv.misses >= MAX_MISSES else \
                f"; {conv.total_misses} misses in this call"
            return self._handoff(conv, "normal", "not_understood", [], decision)
        lang = conv.lang
        if step.more and silent:
            # Silence at a short menu: the caller is waiting for the options; say them, no apology.
            return self._enter(conv, step.name, [], decision, again=True)
        sorry = (self._text(step.invalid, conv) if invalid and step.invalid else None) \
            or (self._text(step.clarify, conv) if step.clarify else None) \
            or self.flow.message("clarify", lang, mode=conv.mode)
        return self._enter(conv, step.name, [sorry], decision, again=True)

    # -- routing -------------------------------------------------------------
    def _route_intent(self, conv, name, confidence, goto, prompts, via="") -> Reply:
        intent = self.flow.intents[name]
        if intent.handoff is not None and not goto:
            conv.misses = 0
            kind = "urgent intent" if intent.urgent else "intent"
            return self._handoff(conv, intent.handoff.queue, intent.handoff.reason, prompts,
                                 Decision(name, confidence, "handoff", _why(kind, name, confidence, via)))
        target = goto or intent.goto
        step = self.flow.steps.get(conv.step)
        if target == conv.step and step is not None and step.type in INPUT_STEPS:
            # Back to the very step the caller is on ("yes" at "what else?"): no progress, so a miss.
            return self._miss(conv, step, Decision(name, confidence, "clarify",
                                                   _why("intent", name, confidence, via) + " leads back here"))
        conv.misses = 0
        return self._enter(conv, target, prompts,
                           Decision(name, confidence, "goto", _why("intent", name, confidence, via) + f" -> {target}"))

    def _handoff(self, conv, queue, reason, prompts, decision, say=None) -> Reply:
        boosted = None
        if conv.boost and queue == "normal" and self.flow.repeat_caller_queue == "urgent":
            queue, boosted = "urgent", conv.boost
            decision.detail += f"; priority: {conv.boost}"
        if conv.closed:
            # Nobody to connect: what to do meanwhile (an urgent safety or fraud problem), then the
            # offer of a call back or a message, which the transport renders (ivr.web.callback).
            guidance = self.flow.guidance(reason, conv.lang, mode=conv.mode) if queue == "urgent" else None
            prompts = prompts + [self.flow.message("closed_handoff", conv.lang, mode=conv.mode)]
            prompts += [guidance] if guidance else []
            decision.detail += "; out of hours: call back or message"
        else:
            if say is None:
                say = self.flow.message("handoff_urgent" if queue == "urgent" else "handoff", conv.lang,
                                        mode=conv.mode)
            prompts = prompts + [say]
        conv.step = None
        decision.action = "handoff"
        return Reply(prompts, route=Route(queue, reason, boosted, after_hours=conv.closed), decision=decision)

    def _enter(self, conv, name, prompts, decision=None, again=False) -> Reply:
        """Say the step (and the steps an answer chains to) and wait where a step waits.
        `again`: the caller is back at the same step after a miss; a step with `more` then
        says the rest of its menu instead of its short prompt."""
        answered = False
        for _ in range(MAX_CHAIN):
            step = self.flow.steps[name]
            conv.step = name
            if step.type == "handoff":
                own = self._fill(self._text(step.say, conv), conv) if step.say else None
                reply = self._handoff(conv, step.queue, step.reason, prompts,
                                      decision or Decision(None, 0.0, "handoff", step.reason), say=own)
                reply.answered = answered
                return reply
            said = step.more if again and step.more else step.say
            again = False
            if said:
                prompts = prompts + [self._fill(self._text(said, conv), conv)]
            if step.type == "answer":
                answered = True
                if decision is not None and decision.action == "goto":
                    decision.action = "answer"
                name = step.next
                continue
            if step.type == "goodbye":
                conv.step = None
                return Reply(prompts, hangup=True, decision=_with(decision, "hangup"), answered=answered)
            return Reply(prompts, expect=self.expect(name, conv.lang), decision=decision, answered=answered)
        raise RuntimeError(f"flow {self.flow.id}: answer chain at {name} is too long")

    @staticmethod
    def _text(field, conv) -> str:
        """A step's prompt in the call's language, worded for how the call talks (speech or keys)."""
        return wording(field[conv.lang], conv.mode)

    def _fill(self, text, conv) -> str:
        def sub(m):
            value = conv.slots.get(m.group(1))
            if m.group(2):
                value = value.get(m.group(2)) if isinstance(value, dict) else None
            return speakable(str(value)) if value is not None else ""
        return _TEMPLATE.sub(sub, text)


def global_intent(flow, ranked, threshold, urgent_threshold=None):
    """The handoff intent a caller asked for, whatever the step: (name, confidence, via) or None.

    A handoff intent wins over a routine one when it ranks first, or when the caller
    said one of its keywords or its concepts fired one of its rules ("my order arrived
    and the battery is swelling"). Urgent beats a plain request for a person, so a
    complaint lands in the urgent queue.

    Urgent recall first: when nothing reached the threshold, a handoff intent that ranks
    first, or an urgent one signalled by one of its concepts, at `urgent_threshold` or more,
    goes to its queue rather than to a clarification. A needless transfer costs an agent a
    minute; a missed fraud or fire costs far more.
    """
    top = ranked[0][0] if ranked else None
    candidates = [(name, conf, via) for name, conf, via in ranked
                  if conf >= threshold and flow.intents[name].handoff is not None
                  and (name == top or via.startswith(("keyword", "rule")))]
    if candidates:
        return max(candidates, key=lambda c: (flow.intents[c[0]].urgent, c[1]))
    if urgent_threshold is None or any(conf >= threshold for _, conf, _ in ranked):
        return None
    uncertain = [(name, conf, "uncertain " + via) for name, conf, via in ranked
                 if flow.intents[name].handoff is not None and conf >= urgent_threshold
                 and (name == top or (flow.intents[name].urgent and via.startswith("signal")))]
    return max(uncertain, key=lambda c: c[1]) if uncertain else None


def _lift(bars: dict, heard: dict) -> str | None:
    """The concept heard too that lifts a no-answer concept's hold (its `unless`), or None."""
    return next((u for u in bars["unless"] if u in heard), None)


def _lifted(via: str) -> bool:
    """The matcher's reason is a keyword, a rule or a signal, not the classifier's lean alone."""
    return via.removeprefix("uncertain ").startswith(("keyword", "rule", "signal"))


def _why(kind, name, confidence, via) -> str:
    return f"{kind} {name} ({confidence:.2f})" + (f" by {via}" if via else "")


def _with(decision, action):
    if decision is None:
        return Decision(None, 0.0, action)
    if decision.action in ("goto", "answer"):
        decision.action = action
    return decision
