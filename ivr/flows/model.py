"""Typed view of a validated flow file; the engine only ever sees these."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

INPUT_STEPS = ("menu", "ask")


@dataclass(frozen=True)
class Handoff:
    queue: str
    reason: str


@dataclass(frozen=True)
class Intent:
    name: str
    examples: dict          # lang -> [phrases]
    keywords: dict          # lang -> [phrases]
    goto: str | None = None
    handoff: Handoff | None = None
    # Concept rules: each {"all": [concept, ...], "none": [concept, ...]} names concepts that,
    # heard together in one sentence, mean this intent (docs/flows.md, "Concepts and rules").
    rules: tuple = ()
    # Concepts that alone make this (urgent) intent possible: when nothing else is understood,
    # the caller goes to a person on this intent's queue instead of being asked again.
    signals: tuple = ()

    @property
    def urgent(self) -> bool:
        return self.handoff is not None and self.handoff.queue == "urgent"


@dataclass(frozen=True)
class Option:
    intent: str
    key: str | None = None
    goto: str | None = None


@dataclass(frozen=True)
class Step:
    name: str
    type: str
    say: dict = field(default_factory=dict)
    clarify: dict = field(default_factory=dict)
    invalid: dict = field(default_factory=dict)
    # The rest of the menu: said instead of `say` after a miss (silence, not understood) or key *.
    more: dict = field(default_factory=dict)
    next: str | None = None
    listen: str = "open"
    options: tuple = ()
    slot: dict | None = None
    queue: str | None = None
    reason: str | None = None

    def option_for_key(self, key: str) -> Option | None:
        return next((o for o in self.options if o.key == key), None)


# ${IVR_SOURCE_NAME} in a source's header value: that environment variable (Config.source_secrets).
SECRET_REF = re.compile(r"\$\{([^}]*)\}")
SECRET_NAME = re.compile(r"IVR_SOURCE_[A-Z0-9_]+")
# Header names that carry credentials: their value must come from the environment, not the flow file.
CREDENTIAL_HEADER = re.compile(r"authorization|cookie|key|token|secret|password|passwd|auth|credential|signature",
                               re.I)
# What may stand beside the variables in a credential header: an auth scheme ("Bearer", "Basic").
AUTH_SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9_-]*)?\s*")


@dataclass(frozen=True)
class DataSource:
    """A lookup in the business's own system (`sources:` in the flow; ivr.data_sources does the I/O)."""
    name: str
    url: str                 # template: {value} is the slot value
    fields: dict             # record field -> dotted path in the JSON answer
    failed: dict             # lang -> what the caller hears when the lookup fails
    timeout: float = 2.0
    # Request headers; ${IVR_SOURCE_...} in a value is that environment variable (credentials stay
    # out of the flow file: ivr.data_sources fills them in from Config.source_secrets).
    headers: dict = field(default_factory=dict, hash=False)

    def secret_names(self) -> list:
        """The environment variables this source's headers need, in order."""
        return sorted({n for v in self.headers.values() for n in SECRET_REF.findall(v)})


class LookupFailed(Exception):
    """A data source gave no usable answer (timeout, error status, bad JSON): the caller goes to a person."""


@dataclass
class Flow:
    id: str
    path: Path
    languages: list
    start: str
    intents: dict            # name -> Intent
    steps: dict              # name -> Step
    locale: dict = field(default_factory=dict)
    numbers: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    messages: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)     # reason, topic or priority name -> {lang: words}
    frustration: dict = field(default_factory=dict)
    # lang -> [phrases] callers say that are no option and no request (hello, wait, pardon?): in
    # every directed grammar so they absorb such words; heard alone they are not understood.
    fillers: dict = field(default_factory=dict)
    concepts: dict = field(default_factory=dict)   # name -> {lang: [phrases]}
    data: dict = field(default_factory=dict)   # name -> loaded records
    sources: dict = field(default_factory=dict)  # name -> DataSource: records fetched per lookup over HTTP
    # lang -> [(sentence, intent or None for out of scope)]: what the intent classifier learns
    # from besides the examples (`training:` files). Never part of a recognizer grammar.
    training: dict = field(default_factory=dict)
    hours: object = None     # ivr.hours.OpeningHours, or None: always open
    # The flows folder's content hash this flow was loaded from (ivr.flow_versions); a call's
    # record names it, so a reload does not change a conversation in progress.
    version: str = ""

    @property
    def confidence_threshold(self) -> float:
        return float(self.settings.get("confidence_threshold", 0.6))

    @property
    def urgent_threshold(self) -> float:
        """Confidence at which an urgent intent with a signal goes to a person when nothing else
        reached `confidence_threshold`: a missed fraud or fire costs more than a needless transfer."""
        return float(self.settings.get("urgent_threshold", 0.45))

    @property
    def clarified_threshold(self) -> float:
        """Confidence a routine answer needs once the caller was asked again at this step: a second
        uncertain guess is likelier a caller the bot cannot serve than one it can, so it goes to a
        person (one clarification at most). Default: `confidence_threshold` (no stricter bar)."""
        return float(self.settings.get("clarified_threshold", self.confidence_threshold))

    # The concept settings are read on every understood turn: built once per loaded flow (a flow is
    # never changed in place; a changed flow is a new Flow, dataclasses.replace included).
    @cached_property
    def elsewhere_concepts(self) -> dict:
        """Concepts that mean "another business's matter" (travel, public services...), each with the
        out-of-scope probability the classifier must give the sentence beside it: then a routine
        answer is not given; the caller is asked again, then goes to a person. A bank named in
        passing ("refund to my bank card") is no reason; named as the topic, the classifier leans
        out of scope too. 0: whenever the concept is heard."""
        return {c: float(bar) for c, bar in (self.settings.get("elsewhere_concepts") or {}).items()}

    @cached_property
    def elsewhere_unless(self) -> dict:
        """Concepts that say the matter is this shop's ("your store", "bought it from you"), each with
        the out-of-scope probability an `elsewhere_concepts` concept heard beside it needs at least:
        "is your store by the station open late" is a question for the bot, "is the post office by
        the station open late" is not."""
        return {c: float(bar) for c, bar in (self.settings.get("elsewhere_unless") or {}).items()}

    @cached_property
    def no_answer_concepts(self) -> dict:
        """Concepts the flow has no answer for: a caller who is not calling as a customer (a job
        seeker, a reporter, a supplier's sales call, a charity, a wrong number), or a matter of the
        shop's it does not serve (stock, prices, price matching, trade-ins, installation). Each
        maps to {"answers": the confidence a routine answer needs despite the words, 1: none at
        all; "handoffs": the confidence a handoff resting on the classifier's lean alone needs
        (a sales pitch leans to "complaint" because it names the staff), 0: any}. Held back, the
        caller is asked once, then goes to a person, not to the urgent queue. A keyword, rule or
        signal still hands over, and so does an intent with signals (money, physical safety).
        "unless": concepts that lift the hold when heard too ("the dash cam in my car": a product of
        the shop's beside a thing it does not sell)."""
        return {c: {"answers": float(bars["answers"]), "handoffs": float(bars["handoffs"]),
                    "unless": tuple(bars.get("unless") or ())}
                for c, bars in (self.settings.get("no_answer_concepts") or {}).items()}

    @cached_property
    def answer_nearest(self) -> dict | None:
        """How like one of an intent's training sentences (cosine of the classifier's features) a
        caller's words must be for a routine answer ("below"): a sentence unlike every one of them
        is new to the bot, however the classifier leans, and gets a clarification, then a person;
        "unless": concepts that lift the hold when heard (the shop's own products: "the vacuum
        has lost its suction" is the shop's matter in words nobody wrote down). None: off."""
        bars = self.settings.get("answer_nearest")
        return {"below": float(bars["below"]), "unless": tuple(bars.get("unless") or ())} if bars else None

    @property
    def repeat_caller_queue(self) -> str:
        return self.settings.get("repeat_caller_queue", "urgent")

    def message(self, name: str, lang: str, n: int | None = None, mode: str = "keypad", **fields) -> str:
        """A standard sentence of this flow in `lang` (the loader made sure every flow language has it).

        `n` picks the count form of a counted message (zero, one, many) and fills `{n}`; `mode`
        picks the speech or keypad wording where the flow gives both; `fields` fill the other
        placeholders the message may use (MESSAGES says which)."""
        value = self.messages[name][lang]
        if isinstance(value, dict) and n is not None:
            value = value[count_form(n, MESSAGES[name].forms)]
        return fill(wording(value, mode), dict(fields, n=n))

    def label(self, name: str, lang: str) -> str:
        """What the agent hears for a reason, topic or priority (`labels:` in the flow)."""
        return (self.labels.get(name) or {}).get(lang) or name.replace("_", " ")

    def is_open(self, ts: float) -> bool:
        """A person can take a call at `ts` (the flow's opening hours; none declared: always)."""
        return self.hours is None or self.hours.is_open(ts)

    def guidance(self, reason: str | None, lang: str, mode: str = "keypad") -> str | None:
        """What an urgent caller hears out of hours about `reason` (safety, fraud), if the flow says."""
        name = self.hours.guidance.get(reason or "") if self.hours is not None else None
        return self.message(name, lang, mode=mode) if name else None

    def say_locale(self, lang: str) -> str:
        return self.locale.get(lang) or DEFAULT_LOCALES.get(lang, lang)


DEFAULT_LOCALES = {"en": "en-US", "ko": "ko-KR", "de": "de-DE", "fr": "fr-FR", "es": "es-ES", "ja": "ja-JP"}

# How a call talks with the bot: by voice (its language has a speech model loaded) or by keys.
# A prompt may be worded for each ({speech: ..., keypad: ...}); a plain string serves both.
MODES = ("speech", "keypad")


@dataclass(frozen=True)
class MessageSpec:
    """One standard sentence every flow words in each of its languages (docs/flows.md, "Messages")."""
    when: str
    fields: tuple = ()        # placeholders it may use, besides {n}
    forms: tuple = ()         # a counted message: one wording per count form, picked by n
    recorded: bool = False    # said before a <Record>: may ask the caller to speak on any call
    agent: bool = False       # heard by an agent, not a caller


COUNT_FORMS = ("zero", "one", "many")

# Intents that are never what a call was about (its topic), so need no label.
NOT_TOPICS = ("agent_request", "yes", "goodbye")

# Every sentence a caller or an agent hears outside the flow's steps. No caller-facing words live
# in Python: a flow lacking any of these in any of its languages does not load.
MESSAGES = {
    "clarify": MessageSpec("the caller was not understood (first time), when the step has no clarify of its own"),
    "handoff": MessageSpec("before connecting to the normal queue or the human line"),
    "handoff_urgent": MessageSpec("before connecting to the urgent queue"),
    "agents_busy": MessageSpec("nobody picked up the human line; voicemail follows", recorded=True),
    "goodbye": MessageSpec("the end of a call after a voicemail, a rating or a comment"),
    "error": MessageSpec("something failed on our side; a person follows"),
    "rating": MessageSpec("after the bot answered: the 1-5 rating, by key"),
    "rating_after_agent": MessageSpec("after an agent call: the 1-5 rating, by key"),
    "rating_thanks": MessageSpec("after a rating: the spoken comment, recorded", recorded=True),
    "queue_position": MessageSpec("in the queue, odd rounds: callers ahead ({n}) and the wait ({minutes})",
                                  fields=("minutes",), forms=COUNT_FORMS),
    "queue_position_again": MessageSpec("in the queue, even rounds: the same in other words",
                                        fields=("minutes",), forms=COUNT_FORMS),
    "wait_minutes": MessageSpec("the estimated wait, put into queue_position as {minutes}", forms=("one", "many")),
    "queue_no_estimate": MessageSpec("in the queue, odd rounds, when no wait can be told (too few answered "
                                     "lately, or the caller has waited longer than they): callers ahead ({n})",
                                     forms=COUNT_FORMS),
    "queue_no_estimate_again": MessageSpec("the same, even rounds, in other words", forms=COUNT_FORMS),
    "callback_offer": MessageSpec("in the queue after IVR_CALLBACK_AFTER seconds: 1 for a call back, 2 for voicemail"),
    "callback_confirm": MessageSpec("the caller chose a call back; the call ends"),
    "voicemail_prompt": MessageSpec("the caller chose voicemail; the recording follows", recorded=True),
    "agent_connected": MessageSpec("to the caller, as an agent picks up from the queue"),
    "agent_idle": MessageSpec("agent line: nobody is waiting (repeated every few seconds)", agent=True),
    "agent_idle_goodbye": MessageSpec("agent line: nobody came for a minute; the call ends", agent=True),
    "agent_next": MessageSpec("agent line: the last caller hung up; the next one follows", agent=True),
    "briefing_urgent": MessageSpec("briefing: the caller comes from the urgent queue", agent=True),
    "briefing_normal": MessageSpec("briefing: the caller comes from the normal queue", agent=True),
    "briefing": MessageSpec("briefing: this line and why the caller is here ({reason}, from labels)",
                            fields=("reason",), agent=True),
    "briefing_topic": MessageSpec("briefing: what the call was about ({topic}, from labels)", fields=("topic",),
                                  agent=True),
    "briefing_said": MessageSpec("briefing: the caller's last words ({said})", fields=("said",), agent=True),
    "briefing_why": MessageSpec("briefing: the caller's words the bot's handoff rested on ({words}, quoted)",
                                fields=("words",), agent=True),
    "briefing_transfers": MessageSpec("briefing: earlier transfers ({n})", forms=("one", "many"), agent=True),
    "briefing_priority": MessageSpec("briefing: why the caller is ahead ({priority}, from labels)",
                                     fields=("priority",), agent=True),
    # Opening hours (the flow's `hours:`; IVR_HOURS=closed closes every flow).
    "closed": MessageSpec("out of hours, first thing in the call: nobody is in, the bot still helps"),
    "closed_handoff": MessageSpec("out of hours, instead of handoff: nobody can take the call now"),
    "closed_offer": MessageSpec("out of hours, by key after any call: 1 for a call back, 2 for a message"),
    "closed_callback_confirm": MessageSpec("out of hours, after 1 (or silence twice): the call back is booked"),
    "closed_voicemail": MessageSpec("out of hours, after 2: the recording follows", recorded=True),
    "guidance_safety": MessageSpec("out of hours, urgent (hours.guidance): what to do about a hazard now"),
    "guidance_fraud": MessageSpec("out of hours, urgent (hours.guidance): what to do about fraud now"),
    # Call backs.
    "callback_no_number": MessageSpec("the caller's number is withheld: no call back, a message instead",
                                      recorded=True),
    "callback_intro": MessageSpec("the caller rung back picks up: who is calling; a person follows"),
    "agent_callback": MessageSpec("briefing: a call back is being placed (before the usual briefing)", agent=True),
    "agent_callback_calling": MessageSpec("briefing: after it, the caller is being rung now", agent=True),
    "agent_callback_failed": MessageSpec("agent line: the caller rung back did not pick up", agent=True),
    # Who may use the agent line.
    "agent_refused": MessageSpec("agent line: not a registered agent (or a wrong PIN); the call ends", agent=True),
    "agent_pin": MessageSpec("agent line: key in your PIN, then #", agent=True),
    "agent_pin_wrong": MessageSpec("agent line: the PIN was wrong (agent_pin follows)", agent=True),
}

# The handoff reason when a data source fails; a flow with `sources:` labels it in every language.
LOOKUP_FAILED = "lookup_failed"

# Reasons and priorities the service itself gives (besides the flow's own handoff reasons):
# each needs a label in every flow language, since the agent hears it.
BUILTIN_LABELS = ("not_understood", "frustrated", "flow_ended", "stream_failed", "repeat_caller",
                  "transferred_before")


def count_form(n: int, forms: tuple) -> str:
    """zero, one or many: the form of a counted message for n (a form the message lacks falls to many)."""
    form = "zero" if n == 0 else "one" if n == 1 else "many"
    return form if form in forms else "many"


def wording(value, mode: str) -> str:
    """The wording of a prompt for a call's mode: {speech, keypad} or one text for both."""
    if isinstance(value, dict):
        return value.get(mode) or value["keypad"]
    return value


class _Fields(dict):
    def __missing__(self, key):
        return "{" + key + "}"


def fill(text: str, fields: dict) -> str:
    """Placeholders filled; the loader already checked that a message only uses its own."""
    return text.format_map(_Fields({k: v for k, v in fields.items() if v is not None}))
