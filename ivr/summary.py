"""What an agent hears before the bridge, so the caller need not repeat themselves.

Every word of it is the flow's (messages `briefing*`, `labels`), in the language of the
caller being bridged: the agent is about to talk with that caller, in that language.
"""
from __future__ import annotations

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
    transfers = int(rec.get("transfers") or 0)
    if transfers > 1:
        parts.append(flow.message("briefing_transfers", lang, n=transfers - 1))
    if rec.get("boost"):
        parts.append(flow.message("briefing_priority", lang, priority=flow.label(rec["boost"], lang)))
    return " ".join(parts)
