"""The flows' training sentences stay apart from every set that measures them.

A sentence of an evaluation set copied into training data (or into examples) makes its score
measure memory. The validation sets and the held-out dev halves choose designs and thresholds,
the tuned sets guard against regressions: none of their multi-word sentences may be in what the
classifier learns from. (The held-out test halves are only ever scored, not compared here.)
"""
import pytest

from ivr.config import ROOT
from ivr.eval import load_set
from ivr.flows.intents import normalize
from ivr.flows.loader import load_flow

SETS = {"hotline": ["eval/hotline_en_val.yaml", "eval/hotline_en_val2.yaml", "eval/hotline_en_val3.yaml",
                    "eval/hotline_en_val4.yaml", "eval/hotline_en_val5.yaml", "eval/hotline_en_val6.yaml",
                    "eval/hotline_en_val7.yaml", "eval/hotline_en_val8.yaml",
                    "eval/hotline_en_val9.yaml", "eval/hotline_en_val10.yaml", "eval/hotline_en_val11.yaml",
                    "eval/heldout/hotline_en_dev.yaml",
                    "tests/data/hotline_en_labelled.yaml"],
        "hotline_ko": ["eval/hotline_ko_val.yaml", "eval/hotline_ko_val2.yaml", "eval/hotline_ko_val3.yaml",
                       "eval/hotline_ko_val4.yaml", "eval/hotline_ko_val5.yaml",
                       "eval/hotline_ko_val6.yaml", "eval/hotline_ko_val7.yaml", "eval/hotline_ko_val8.yaml",
                       "eval/hotline_ko_val9.yaml", "eval/hotline_ko_val10.yaml", "eval/hotline_ko_val11.yaml",
                       "eval/heldout/hotline_ko_dev.yaml",
                       "eval/hotline_ko.yaml"]}


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
