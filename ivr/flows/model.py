"""Typed view of a validated flow file; the engine only ever sees these."""
from __future__ import annotations

from dataclasses import dataclass, field
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
    next: str | None = None
    listen: str = "open"
    options: tuple = ()
    slot: dict | None = None
    queue: str | None = None
    reason: str | None = None

    def option_for_key(self, key: str) -> Option | None:
        return next((o for o in self.options if o.key == key), None)


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
    frustration: dict = field(default_factory=dict)
    concepts: dict = field(default_factory=dict)   # name -> {lang: [phrases]}
    data: dict = field(default_factory=dict)   # name -> loaded records
    hours: object = None     # ivr.hours.OpeningHours, or None: always open

    @property
    def confidence_threshold(self) -> float:
        return float(self.settings.get("confidence_threshold", 0.6))

    @property
    def urgent_threshold(self) -> float:
        """Confidence at which an urgent intent with a signal goes to a person when nothing else
        reached `confidence_threshold`: a missed fraud or fire costs more than a needless transfer."""
        return float(self.settings.get("urgent_threshold", 0.45))

    @property
    def repeat_caller_queue(self) -> str:
        return self.settings.get("repeat_caller_queue", "urgent")

    def message(self, name: str, lang: str) -> str:
        if name in REQUIRED_MESSAGES or name not in DEFAULT_MESSAGES:
            return self.messages[name][lang]      # the loader made sure it is there
        return self.messages.get(name, {}).get(lang) or DEFAULT_MESSAGES[name].get(lang) or DEFAULT_MESSAGES[name]["en"]

    def is_open(self, ts: float) -> bool:
        """A person can take a call at `ts` (the flow's opening hours; none declared: always)."""
        return self.hours is None or self.hours.is_open(ts)

    def guidance(self, reason: str | None, lang: str) -> str | None:
        """What an urgent caller hears out of hours about `reason` (safety, fraud), if the flow says."""
        name = self.hours.guidance.get(reason or "") if self.hours is not None else None
        return self.message(name, lang) if name else None

    def say_locale(self, lang: str) -> str:
        return self.locale.get(lang) or DEFAULT_LOCALES.get(lang, lang)


# Messages every flow words itself in each of its languages (`ivr check-flows` reports a missing one):
# opening hours, callbacks and the agent line. docs/flows.md, "Messages". Guidance for urgent callers
# out of hours is named by the flow's `hours.guidance` and checked there.
REQUIRED_MESSAGES = (
    "closed", "closed_handoff", "closed_offer", "closed_callback_confirm", "closed_voicemail",
    "callback_no_number", "callback_intro",
    "agent_refused", "agent_pin", "agent_pin_wrong", "agent_callback", "agent_callback_calling",
    "agent_callback_failed",
)

DEFAULT_LOCALES = {"en": "en-US", "ko": "ko-KR", "de": "de-DE", "fr": "fr-FR", "es": "es-ES", "ja": "ja-JP"}

# Used when a flow does not word these itself; a flow in another language should.
DEFAULT_MESSAGES = {
    "clarify": {"en": "Sorry, I did not get that.", "ko": "죄송합니다, 잘 알아듣지 못했습니다."},
    "handoff": {"en": "I am connecting you to a person now.", "ko": "지금 상담원에게 연결해 드리겠습니다."},
    "handoff_urgent": {"en": "I am putting you through to a person right away.",
                       "ko": "바로 상담원에게 연결해 드리겠습니다."},
    "agents_busy": {"en": "All our agents are busy. Please leave a message after the tone and we will call you back.",
                    "ko": "모든 상담원이 통화 중입니다. 삐 소리 후 메시지를 남겨 주시면 다시 연락드리겠습니다."},
    "goodbye": {"en": "Thank you for calling. Goodbye.", "ko": "전화 주셔서 감사합니다. 안녕히 계세요."},
    "error": {"en": "Sorry, something went wrong on our side. Let me get you a person.",
              "ko": "죄송합니다, 문제가 발생했습니다. 상담원에게 연결해 드리겠습니다."},
    "rating": {"en": "Before you go: how well did I help? Press 1 for poor up to 5 for excellent.",
               "ko": "통화를 마치기 전에, 도움이 얼마나 되었는지 1번부터 5번까지 눌러 주세요."},
    "rating_after_agent": {"en": "Please stay on the line to rate the help you got, "
                                 "from 1 for poor to 5 for excellent.",
                           "ko": "상담 만족도를 1번부터 5번까지 눌러 평가해 주세요."},
    "rating_thanks": {"en": "Thank you. If you like, tell us after the tone in a few words what we could do better, "
                            "then hang up.",
                      "ko": "감사합니다. 원하시면 삐 소리 후에 개선할 점을 짧게 말씀해 주세요."},
}
