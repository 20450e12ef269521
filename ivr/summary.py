"""What an agent hears before the bridge, so the caller need not repeat themselves."""
from __future__ import annotations

from .quality import call_topic


def agent_summary(report) -> str:
    rec = report["record"]
    callers = [t for t in report["turns"] if t.get("who") == "caller"]
    said = [t["text"] for t in callers if t.get("input") == "speech" and t.get("text")]
    # The topic is what the caller came about, not the request for a person or a yes/no.
    topic = call_topic(report["turns"])
    parts = [f"Caller from the {rec.get('flow', 'hotline')} line, reason "
             f"{(rec.get('reason') or 'unknown').replace('_', ' ')}."]
    if topic:
        parts.append(f"Topic: {topic.replace('_', ' ')}.")
    if said:
        parts.append(f"They said: {said[-1]}.")
    why = _why(callers)
    if why:
        parts.append(f"Understood by {why}.")
    transfers = int(rec.get("transfers") or 0)
    if transfers > 1:
        parts.append(f"Transferred {transfers - 1} time{'s' if transfers > 2 else ''} before.")
    if rec.get("boost"):
        parts.append(f"Priority: {rec['boost'].replace('_', ' ')}.")
    return " ".join(parts)


def _why(callers) -> str:
    """The bot's reason for the handoff, short enough to hear: the rule, keyword or signal, or the
    classifier's probability and the caller's words that weighed most (not the nearest training
    sentence: the agent just heard what the caller said)."""
    for turn in reversed(callers):
        detail = turn.get("detail") or ""
        if turn.get("decision") == "handoff" and " by " in detail:
            why = detail.split(" by ", 1)[1].split("; ", 1)[0].split(", nearest ", 1)[0]
            return why.replace("_", " ")
    return ""
