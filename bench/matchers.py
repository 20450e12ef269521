"""Intent-matching designs side by side, on the sets that may be read: validation and dev halves.

Each design is a MatcherOptions (ivr.flows.intents) and, optionally, other thresholds; every
item of each set is decided as a first turn by the flow engine, text mode (the transcript is
what the engine hears), exactly as `ivr eval --asr text` does. Printed per design and set:
intent + route right, human path (urgent and person requests reaching a person on the first
turn), false urgent (share of the other items sent to the urgent queue), out of scope handled
(a person after at most one clarification), and the seconds it took to build the engines
(training included).

The held-out TEST halves are not in this table: they are only ever scored, rarely, with
`--test` (aggregate figures of the chosen design only, never a sentence).

    .venv/bin/python -m bench.matchers [--design NAME ...] [--json]
    .venv/bin/python -m bench.matchers --design chosen --test     # the rare test-half score
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from ivr.eval import evaluate, load_set
from ivr.flows.classifier import Features
from ivr.flows.engine import Conversation, Engine, Input
from ivr.flows.intents import MatcherOptions
from ivr.flows.loader import load_flow

ROOT = Path(__file__).resolve().parent.parent

SETS = {   # name -> (set, flow); val: fresh validation sets; dev: held-out dev halves; tuned: regression sets
    "en val": ("eval/hotline_en_val.yaml", "hotline"),
    "en val2": ("eval/hotline_en_val2.yaml", "hotline"),
    "en val3": ("eval/hotline_en_val3.yaml", "hotline"),
    "en val4": ("eval/hotline_en_val4.yaml", "hotline"),
    "en val5": ("eval/hotline_en_val5.yaml", "hotline"),
    "en val6": ("eval/hotline_en_val6.yaml", "hotline"),
    "en val7": ("eval/hotline_en_val7.yaml", "hotline"),
    "en val8": ("eval/hotline_en_val8.yaml", "hotline"),
    "en val9": ("eval/hotline_en_val9.yaml", "hotline"),
    "en val10": ("eval/hotline_en_val10.yaml", "hotline"),
    "en val11": ("eval/hotline_en_val11.yaml", "hotline"),
    "en val12": ("eval/hotline_en_val12.yaml", "hotline"),
    "en val13": ("eval/hotline_en_val13.yaml", "hotline"),
    "en val14": ("eval/hotline_en_val14.yaml", "hotline"),
    "en val15": ("eval/hotline_en_val15.yaml", "hotline"),
    "en val16": ("eval/hotline_en_val16.yaml", "hotline"),
    "en val17": ("eval/hotline_en_val17.yaml", "hotline"),
    "en dev": ("eval/heldout/hotline_en_dev.yaml", "hotline"),
    "en tuned": ("tests/data/hotline_en_labelled.yaml", "hotline"),
    "ko val": ("eval/hotline_ko_val.yaml", "hotline_ko"),
    "ko val2": ("eval/hotline_ko_val2.yaml", "hotline_ko"),
    "ko val3": ("eval/hotline_ko_val3.yaml", "hotline_ko"),
    "ko val4": ("eval/hotline_ko_val4.yaml", "hotline_ko"),
    "ko val5": ("eval/hotline_ko_val5.yaml", "hotline_ko"),
    "ko val6": ("eval/hotline_ko_val6.yaml", "hotline_ko"),
    "ko val7": ("eval/hotline_ko_val7.yaml", "hotline_ko"),
    "ko val8": ("eval/hotline_ko_val8.yaml", "hotline_ko"),
    "ko val9": ("eval/hotline_ko_val9.yaml", "hotline_ko"),
    "ko val10": ("eval/hotline_ko_val10.yaml", "hotline_ko"),
    "ko val11": ("eval/hotline_ko_val11.yaml", "hotline_ko"),
    "ko val12": ("eval/hotline_ko_val12.yaml", "hotline_ko"),
    "ko val14": ("eval/hotline_ko_val14.yaml", "hotline_ko"),
    "ko val15": ("eval/hotline_ko_val15.yaml", "hotline_ko"),
    "ko val16": ("eval/hotline_ko_val16.yaml", "hotline_ko"),
    "ko val17": ("eval/hotline_ko_val17.yaml", "hotline_ko"),
    "ko dev": ("eval/heldout/hotline_ko_dev.yaml", "hotline_ko"),
    "ko tuned": ("eval/hotline_ko.yaml", "hotline_ko"),
}
TEST_SETS = {
    "en test": ("eval/heldout/hotline_en_test.yaml", "hotline"),
    "ko test": ("eval/heldout/hotline_ko_test.yaml", "hotline_ko"),
}

CHOSEN = MatcherOptions()
DESIGNS = {   # name -> (options, settings overrides)
    # At its own thresholds (the flows' before the classifier).
    "previous: nearest example + keywords + rules": (MatcherOptions(classifier=False, floors="all"),
                                                     {"confidence_threshold": 0.62, "urgent_threshold": 0.45}),
    "classifier only (no keywords or rules)": (dataclasses.replace(CHOSEN, floors="none"), {}),
    "classifier, rules and keywords of every intent": (dataclasses.replace(CHOSEN, floors="all"), {}),
    "classifier, Korean concepts weigh as English ones": (
        dataclasses.replace(CHOSEN, features=dataclasses.replace(CHOSEN.features, ko_concepts=0.7)), {}),
    "classifier + nearest example, rules, keywords": (dataclasses.replace(CHOSEN, similarity=True), {}),
    "classifier without concept features": (dataclasses.replace(CHOSEN, concept_features=False), {}),
    "classifier, words only (no letter groups)": (
        dataclasses.replace(CHOSEN, features=dataclasses.replace(CHOSEN.features, chars=0)), {}),
    "classifier, letter groups only": (
        dataclasses.replace(CHOSEN, features=Features(words=0, pairs=0, concepts=0)), {}),
    "classifier + keywords as sentences": (dataclasses.replace(CHOSEN, keyword_sentences=True), {}),
    "classifier, typed slips read as typed (no spelling)": (dataclasses.replace(CHOSEN, spelling=False), {}),
    "chosen": (CHOSEN, {}),
}


def score(options, overrides, sets) -> dict:
    flows, engines, build = {}, {}, {}
    out = {}
    for name, (path, flow_id) in sets.items():
        if flow_id not in engines:
            flow = load_flow(ROOT / "flows" / f"{flow_id}.yaml")
            if overrides:
                flow = dataclasses.replace(flow, settings={**flow.settings, **overrides})
            t = time.perf_counter()
            engines[flow_id], flows[flow_id] = Engine(flow, options), flow
            build[flow_id] = time.perf_counter() - t
        s = load_set(ROOT / path)
        m = evaluate(s, flows[flow_id], lang=s.lang, engine=engines[flow_id]).metrics
        out[name] = {k: m[k] for k in ("items", "routing_accuracy", "intent_accuracy", "human_items",
                                       "human_path_recall", "human_path_missed", "false_urgent_rate",
                                       "oos_items", "oos_handled_rate")}
        out[name]["human_path_by_intent"] = m["human_path_by_intent"]
        out[name]["asked_again_right"] = asked_again(s, flows[flow_id], engines[flow_id])
    out["build_s"] = {k: round(v, 2) for k, v in build.items()}
    return out


def asked_again(eval_set, flow, engine) -> float:
    """Share of the routine questions the bot still answers right when the caller says them after
    one clarification (the stricter bars after a clarification must not cost rephrased questions)."""
    right = total = 0
    for item in eval_set.items:
        spec = flow.intents.get(item.expected_intent)
        if spec is None or spec.handoff is not None or (item.step or flow.start) != flow.start:
            continue
        conv = Conversation(flow.id, eval_set.lang or flow.languages[0])
        engine.start(conv)
        conv.misses = 1
        reply = engine.handle(conv, Input("speech", item.text))
        total += 1
        right += reply.route is None and reply.decision is not None and reply.decision.intent == item.expected_intent \
            and reply.decision.action != "clarify"
    return right / total if total else 1.0


def _pct(x, digits: int) -> str:
    return "-" if x is None else f"{x * 100:.{digits}f}%"   # a set may have no item of a kind


def fmt(r) -> str:
    oos = "-" if r["oos_handled_rate"] is None else f"{r['oos_items'] * r['oos_handled_rate']:.0f}/{r['oos_items']}"
    return (f"{_pct(r['routing_accuracy'], 1):>6s}  hp {r['human_items'] - r['human_path_missed']}/{r['human_items']}"
            f"  fu {_pct(r['false_urgent_rate'], 1)}  oos {oos}"
            f"  asked again {_pct(r['asked_again_right'], 1)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--design", action="append", help="design names (default: all)")
    ap.add_argument("--test", action="store_true", help="score the TEST halves (aggregates only; rarely)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    names = args.design or list(DESIGNS)
    sets = TEST_SETS if args.test else SETS
    results = {}
    for name in names:
        options, overrides = DESIGNS[name]
        results[name] = score(options, overrides, sets)
        if not args.json:
            r = results[name]
            print(f"== {name}  (engine build {r['build_s']})")
            for set_name in sets:
                print(f"   {set_name:9s} {fmt(r[set_name])}")
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
