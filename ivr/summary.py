"""What an agent hears before the bridge, so the caller need not repeat themselves.

Every word of it is the flow's (messages `briefing*`, `labels`), in the language of the
caller being bridged: the agent is about to talk with that caller, in that language.
"""
from __future__ import annotations

import re

from .quality import call_topic


def agent_summary(flow, lang: str, report, queue: str | None = None) -> str:
    """The briefing on one caller; `queue` (urgent | normal) adds which queue they come from."""
    rec = report["record"]
    callers = [t for t in report["turns"] if t.get("who") == "caller"]
    said = [t["text"] for t in callers if t.get("input") == "speech" and t.get("text")]
    # The topic is what the caller came about, not the request for a person or a yes/no.
    topic = call_topic(report["turns"])
    parts = []
    if queue in ("urgent", "normal"):
        parts.append(flow.message(f"briefing_{queue}", lang))
    parts.append(flow.message("briefing", lang, reason=flow.label(rec.get("reason") or "not_understood", lang)))
    if topic:
        parts.append(flow.message("briefing_topic", lang, topic=flow.label(topic, lang)))
    if said:
        parts.append(flow.message("briefing_said", lang, said=said[-1]))
    words = _decisive_words(callers)
    if words:
        parts.append(flow.message("briefing_why", lang, words=", ".join(words)))
    transfers = int(rec.get("transfers") or 0)
    if transfers > 1:
        parts.append(flow.message("briefing_transfers", lang, n=transfers - 1))
    if rec.get("boost"):
        parts.append(flow.message("briefing_priority", lang, priority=flow.label(rec["boost"], lang)))
    return " ".join(parts)


def _decisive_words(callers) -> list:
    """The caller's words the bot's handoff rested on (its rule, keyword or signal, or the words
    that weighed most for the classifier), from the turn's detail: "'statement', 'never made'".
    The caller's own words, so they read the same in every language; the full reason (rule names,
    probabilities, the nearest training sentence) is on the call page."""
    for turn in reversed(callers):
        detail = turn.get("detail") or ""
        if turn.get("decision") == "handoff" and " by " in detail:
            why = detail.split(" by ", 1)[1].split("; ", 1)[0].split(", nearest ", 1)[0]
            words = []
            for w in re.findall(r"'([^']+)'", why):
                if w not in words:
                    words.append(w)
            return [f"'{w}'" for w in words[:3]]
    return []
