"""CI gate on the held-out TEST halves: understanding must not slip, and no urgent or person
request may miss the human path.

eval/heldout/*_test.yaml are only ever scored, never read while tuning (docs/quality.md):
this test prints figures, never their sentences. eval/heldout/baseline.json records each
half's figures; a figure more than 2 points below its record fails, so does a false-urgent
rate more than 2 points above it. Money-safety, safety and person requests must all reach a
person (100% on both halves since the intent classifier); any other urgent miss (a complaint)
fails once its half records none, and may never grow. Text mode (the transcript is what the
engine hears): fast, no Vosk.
"""
import json

import pytest

from ivr.config import ROOT
from ivr.eval import evaluate, load_set
from ivr.flows.loader import load_flow

BASELINE = json.loads((ROOT / "eval" / "heldout" / "baseline.json").read_text())
MARGIN = 0.02
HIGHER_IS_BETTER = ("routing_accuracy", "intent_accuracy", "human_path_recall", "oos_handled_rate")


def figures(name):
    spec = BASELINE["sets"][name]
    result = evaluate(load_set(ROOT / spec["set"]), load_flow(ROOT / "flows" / f"{spec['flow']}.yaml"),
                      lang=spec["lang"])
    return spec, result.metrics


@pytest.fixture(scope="module", params=sorted(BASELINE["sets"]))
def scored(request):
    return request.param, *figures(request.param)


def test_figures_do_not_fall_below_the_record(scored):
    name, spec, m = scored
    fallen = {k: (m[k], spec["figures"][k]) for k in HIGHER_IS_BETTER if m[k] < spec["figures"][k] - MARGIN}
    assert not fallen, f"{name}: now vs recorded {fallen}"
    assert m["false_urgent_rate"] <= spec["figures"]["false_urgent_rate"] + MARGIN, (name, m["false_urgent_rate"])


MUST_REACH = ("fraud_security", "safety_hazard", "agent_request")


def test_money_safety_and_person_requests_always_reach_a_person(scored):
    # Money safety, physical safety and a request for a person: not one may miss, in any language.
    name, spec, m = scored
    missed = {k: f"{v['reached']}/{v['items']}" for k, v in m["human_path_by_intent"].items()
              if k in MUST_REACH and v["reached"] < v["items"]}
    assert not missed, f"{name}: reached a person on the first turn: {missed}"


def test_every_urgent_and_person_request_reaches_a_person(scored):
    name, spec, m = scored
    if spec["figures"]["human_path_missed"]:
        pytest.xfail(f"{name}: {spec['figures']['human_path_missed']} recorded misses (baseline.json); "
                     "remove the record when the matcher reaches them all")
    by_intent = {k: f"{v['reached']}/{v['items']}" for k, v in m["human_path_by_intent"].items()}
    assert m["human_path_missed"] == 0, f"{name}: human path by intent {by_intent}"


def test_recorded_misses_do_not_grow(scored):
    name, spec, m = scored
    assert m["human_path_missed"] <= spec["figures"]["human_path_missed"], \
        {k: f"{v['reached']}/{v['items']}" for k, v in m["human_path_by_intent"].items()}
