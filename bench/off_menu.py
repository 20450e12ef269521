"""What a caller who says something that is no option gets at each directed step: a hello, a
hesitation, a remark, a fed-up phrase, in espeak-ng's Korean voice (the eval's audio cache, so the
same bytes every run), decoded with the step's grammar as a live call does (docs/speech.md,
"Words that are no option").

    python -m bench.off_menu [--flow flows/hotline_ko.yaml] [--cache var/eval-cache] [--runs 1]

Each utterance goes to a fresh recognizer and a fresh conversation at the step, one at a time
(one process, no threads: the same figures every run, docs/quality.md). Outcomes: clarify (asked
again), person (normal queue), urgent (urgent queue), hangup (goodbye), answer (a routine answer).
A filler or a remark should be asked again, a fed-up phrase should reach a person; urgent, hangup
and answer are the wrong ones.
"""
import argparse
import collections
import json
import sys
from types import SimpleNamespace

from ivr.eval.dataset import AudioSource
from ivr.eval.runner import recognize
from ivr.flows.engine import Conversation, Engine, Input
from ivr.flows.loader import load_flow
from ivr.speech import models

# (kind, words): reviewers' examples first, then more of the same kinds.
SAID = [
    ("filler", "여보세요"), ("filler", "잠깐만요"), ("remark", "오늘 날씨가 참 좋네요"), ("fed up", "답답해"),
    ("fed up", "시간 낭비"), ("fed up", "아 진짜 짜증나"),
    ("filler", "저기요"), ("filler", "뭐라고요"), ("filler", "음"), ("filler", "어"), ("filler", "안녕하세요"),
    ("filler", "잠시만요"), ("filler", "그러니까"), ("remark", "잘 모르겠어요"),
    ("remark", "제가 지금 운전 중이라서요"),
    ("fed up", "짜증나"), ("fed up", "도움이 안 돼"), ("fed up", "몇 번을 말해"),
]
STEPS = ("welcome", "anything_else", "ask_order_number")
WRONG = ("urgent", "hangup", "answer")


def outcome(engine, flow, reply, conv) -> str:
    if reply.route is not None:
        return "urgent" if reply.route.queue == "urgent" else "person"
    if reply.hangup or (conv.step in flow.steps and flow.steps[conv.step].type == "goodbye"):
        return "hangup"
    d = reply.decision
    if d is not None and d.action in ("clarify", "slot") and d.intent is None:
        return "clarify"
    return "answer"


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--flow", default="flows/hotline_ko.yaml")
    ap.add_argument("--cache", default="var/eval-cache")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    flow = load_flow(args.flow)
    engine = Engine(flow)
    model = models.load(models.model_path("ko", "/nonexistent"))
    source = AudioSource(args.cache, "ko")
    totals = collections.Counter()
    rows = []
    for step in STEPS:
        for kind, words in SAID:
            audio = source.get(SimpleNamespace(audio=None, text=words, line=0))
            for _ in range(args.runs):
                conv = Conversation(flow.id, "ko")
                if step == flow.start:
                    engine.start(conv)
                else:
                    conv.step = step
                heard = recognize(model, "ko", flow, engine.expect(step, "ko"), audio)
                reply = engine.handle(conv, Input("speech", heard.text, heard.confidence) if heard.text
                                      else Input("silence"))
                got = outcome(engine, flow, reply, conv) if heard.text else "nothing heard"
                detail = reply.decision.detail if reply.decision else ""
                rows.append({"step": step, "kind": kind, "said": words, "heard": heard.text, "outcome": got,
                             "detail": detail})
                totals[got] += 1
                totals[(kind, got)] += 1
                if not args.json:
                    mark = "  WRONG" if got in WRONG else ""
                    print(f"{step:17} {kind:7} {words:14} -> {heard.text or '-':14} {got}{mark}  [{detail}]")
    n = len(rows)
    summary = {k: totals[k] for k in ("clarify", "person", "urgent", "hangup", "answer", "nothing heard")}
    fed_up = [r for r in rows if r["kind"] == "fed up"]
    # A fed-up caller heard as a complaint goes to the urgent queue: a person too (README, "Known limits").
    summary["fed up to a person"] = "{}/{}".format(sum(r["outcome"] == "person" or (
        r["outcome"] == "urgent" and "complaint" in r["detail"]) for r in fed_up), len(fed_up))
    summary["not fed up, urgent queue"] = "{}/{}".format(
        sum(r["outcome"] == "urgent" for r in rows if r["kind"] != "fed up"), n - len(fed_up))
    summary["wrong (urgent + hangup + answer)"] = f"{sum(totals[k] for k in WRONG)}/{n}"
    if args.json:
        json.dump({"rows": rows, "summary": summary}, sys.stdout, ensure_ascii=False, indent=1)
    else:
        print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    main()
