"""The evaluation report: Markdown for people and CI logs, a PNG chart, and the raw figures as JSON."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .runner import EvalResult

LABELS = [  # (metric, label, higher is better)
    ("intent_accuracy", "Intent accuracy", True),
    ("routing_accuracy", "Intent + queue correct", True),
    ("wer", "Word error rate (WER)", False),
    ("cer", "Character error rate (CER)", False),
    ("urgent_to_human_rate", "Urgent items sent to the urgent queue", True),
    ("clarification_rate", "Clarification rate (bot asked again)", None),
    ("containment", "Containment (served by the bot, no person)", None),
]


def _pct(v):
    return "n/a" if v is None else f"{v * 100:.1f}%"


def _cell(text):
    return str(text if text not in (None, "") else "–").replace("|", "\\|").replace("\n", " ")


def markdown(result: EvalResult, chart_name: str | None = "chart.png") -> str:
    m = result.metrics
    verdict = ("no threshold" if result.min_accuracy is None else
               f"{'PASS' if result.passed else 'FAIL'}: intent accuracy {_pct(m['intent_accuracy'])} "
               f"{'>=' if result.passed else '<'} {_pct(result.min_accuracy)}")
    asr = ("real recognizer (Vosk), the step's live grammar" if result.asr == "vosk"
           else "text only (transcripts go straight to the engine; no recognition)")
    out = [f"# Evaluation: flow `{result.flow}` ({result.lang})", "",
           f"- Set: `{result.set_path}` ({m['items']} items"
           + (f", {m['audio_seconds']} s of audio)" if result.asr == "vosk" else ")"),
           f"- Recognition: {asr}",
           f"- Run: {time.strftime('%Y-%m-%d %H:%M')} in {result.seconds:.1f} s",
           f"- Verdict: **{verdict}**", ""]
    if chart_name:
        out += [f"![figures]({chart_name})", ""]
    out += ["## Figures", "", "| metric | value |", "| --- | ---: |"]
    for key, label, _ in LABELS:
        value = m.get(key)
        extra = f" ({m['urgent_items']} urgent items)" if key == "urgent_to_human_rate" else ""
        out.append(f"| {label} | {_pct(value)}{extra} |")
    out += [f"| Human path: urgent to the urgent queue, person requests to a person (first turn) | "
            f"{_pct(m['human_path_recall'])} ({m['human_path_missed']} of {m['human_items']} missed) |",
            f"| False urgent: share of non-urgent items sent to the urgent queue | {_pct(m['false_urgent_rate'])} |",
            f"| Out of scope: a person after at most one clarification, no answer | "
            f"{_pct(m['oos_handled_rate'])} ({m['oos_items']} items) |",
            f"| Routine items sent to the urgent queue by mistake | {m['false_urgent']} |",
            f"| Containment the labels expect | {_pct(m['expected_containment'])} |", ""]
    out += ["## By step", "", "| step | items | intent accuracy |", "| --- | ---: | ---: |"]
    out += [f"| {s} | {r['items']} | {_pct(r['accuracy'])} |" for s, r in m["per_step"].items()]
    out += ["", "## By intent", "", "| expected intent | items | correct | recall | precision | intent + route |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    out += [f"| {n} | {r['items']} | {r['correct']} | {_pct(r['recall'])} | {_pct(r['precision'])} | "
            f"{r['route_ok']}/{r['items']} |" for n, r in m["per_intent"].items()]
    out += ["", "## Confusion pairs", ""]
    if m["confusions"]:
        out += ["| expected | got | count |", "| --- | --- | ---: |"]
        out += [f"| {c['expected']} | {c['got']} | {c['count']} |" for c in m["confusions"]]
    else:
        out.append("None: every item was routed to its expected intent.")
    wrong = [r for r in result.items if not (r.intent_ok and r.route_ok)]
    out += ["", f"## Items not handled as labelled ({len(wrong)})", ""]
    if wrong:
        out += ["| step | caller said | heard | by | expected | got | engine's reason |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in wrong:
            by = r.asr + (f" {r.confidence:.2f}" if r.confidence is not None else "")
            out.append(f"| {r.step} | {_cell(r.text)} | {_cell(r.heard)} | {by} | "
                       f"{_cell(r.expected_intent)} / {_cell(r.expected_queue)} | {_cell(r.intent)} / {_cell(r.queue)} "
                       f"| {_cell(r.detail)} |")
    out += ["", "Definitions: docs/quality.md. Intent accuracy counts an out-of-scope item (no expected intent) "
            "as correct when the bot asked again. Containment: the turn ended without a person and without "
            "a clarification.", ""]
    return "\n".join(out)


def chart(result: EvalResult, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = result.metrics
    intents = list(m["per_intent"].items())
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, max(4.0, 0.38 * len(intents) + 1.5)),
                                      gridspec_kw={"width_ratios": [1.1, 1]})
    names = [n for n, _ in intents][::-1]
    acc = [(r["accuracy"] or 0) * 100 for _, r in intents][::-1]
    bars = left.barh(names, acc, color=["#2e7d32" if a >= 90 else "#f9a825" if a >= 60 else "#c62828" for a in acc])
    for bar, (_, r) in zip(bars, intents[::-1]):
        left.text(min(bar.get_width() + 1, 101), bar.get_y() + bar.get_height() / 2,
                  f"{r['correct']}/{r['items']}", va="center", fontsize=8)
    left.set_xlim(0, 115)
    left.set_xlabel("intent accuracy (%)")
    left.set_title("Accuracy by expected intent")
    if result.min_accuracy is not None:
        left.axvline(result.min_accuracy * 100, color="grey", ls="--", lw=1)

    rows = [(label.split(" (")[0], m.get(key), good) for key, label, good in LABELS if m.get(key) is not None]
    labels = [r[0] for r in rows][::-1]
    values = [r[1] * 100 for r in rows][::-1]
    colors = ["#1565c0" if g is True else "#c62828" if g is False else "#6a1b9a" for _, _, g in rows][::-1]
    bars = right.barh(labels, values, color=colors)
    for bar, v in zip(bars, values):
        right.text(bar.get_width() + 1, bar.get_y() + bar.get_height() / 2, f"{v:.1f}%", va="center", fontsize=8)
    right.set_xlim(0, max(115, max(values, default=0) + 15))
    right.set_xlabel("%")
    right.set_title("Summary")
    verdict = "" if result.min_accuracy is None else ("  PASS" if result.passed else "  FAIL")
    fig.suptitle(f"ivr eval: {result.flow} ({result.lang}), {m['items']} items, asr={result.asr}{verdict}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(result: EvalResult, out_dir) -> dict:
    """report.md, chart.png and results.json in out_dir; their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "report.md", "chart": out / "chart.png", "json": out / "results.json"}
    chart(result, paths["chart"])
    paths["markdown"].write_text(markdown(result, paths["chart"].name), encoding="utf-8")
    paths["json"].write_text(json.dumps(result.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
    return paths
