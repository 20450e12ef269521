"""The flows' training sentences stay apart from every set that measures them.

A sentence of an evaluation set copied into training data (or into examples) makes its score
measure memory. The validation sets and the held-out dev halves choose designs and thresholds,
the tuned sets guard against regressions: none of their multi-word sentences may be in what the
classifier learns from. (The held-out test halves are only ever scored, not compared here.)
"""
import pytest

from bench.matchers import SETS as MATCHER_SETS
from ivr.config import ROOT
from ivr.eval import load_set
from ivr.flows.intents import normalize
from ivr.flows.loader import load_flow

# The sets bench/matchers.py scores (validation sets, dev halves, tuned sets), by flow: one list, so a
# new set is checked here as soon as it is scored there.
SETS = {}
for _path, _flow_id in MATCHER_SETS.values():
    SETS.setdefault(_flow_id, []).append(_path)


@pytest.mark.parametrize("flow_id", sorted(SETS))
def test_no_evaluation_sentence_is_in_the_training_data(flow_id):
    flow = load_flow(ROOT / "flows" / f"{flow_id}.yaml")
    learned = {normalize(t) for rows in flow.training.values() for t, _ in rows}
    assert len(learned) > 500
    for path in SETS[flow_id]:
        said = {normalize(i.text) for i in load_set(ROOT / path).items}
        # Single words ("agent", "yes", "환불") are the words themselves, on both sides by necessity.
        copied = sorted(t for t in said & learned if " " in t)
        assert not copied, f"{path}: sentences in the training data: {copied}"


@pytest.mark.parametrize("flow_id", sorted(SETS))
def test_training_covers_every_intent_and_out_of_scope(flow_id):
    flow = load_flow(ROOT / "flows" / f"{flow_id}.yaml")
    [rows] = flow.training.values()
    labels = {name for _, name in rows}
    assert labels == set(flow.intents) | {None}
