"""Words that are no option, said at a directed Korean step: the real Korean Vosk model on real
espeak-ng audio, with the step's grammar as a live call has it (docs/speech.md, "Words that are no
option"). Without the flow's fillers in the grammar these were forced into option words with
confidence 1.00: 여보세요 into 내역 (urgent fraud queue), 저기요 into 연기 (urgent safety queue)."""
import pytest

from ivr.config import ROOT
from ivr.eval.runner import recognize
from ivr.flows.engine import Conversation, Engine, Input
from ivr.flows.loader import load_flow
from ivr.simulate.speaker import synthesize
from tests.support.dither import seed_dither

pytestmark = pytest.mark.speech

FLOW = load_flow(ROOT / "flows" / "hotline_ko.yaml")
ENGINE = Engine(FLOW)


@pytest.mark.parametrize("step,said", [("welcome", "여보세요"), ("welcome", "저기요"), ("anything_else", "저기요")])
def test_a_hello_at_a_directed_step_is_asked_again_not_taken_for_an_option(ko_model, step, said):
    audio = synthesize(said, "ko")
    for seed in (1, 2, 3):
        seed_dither(seed)
        heard = recognize(ko_model, "ko", FLOW, ENGINE.expect(step, "ko"), audio)
        conv = Conversation(FLOW.id, "ko")
        ENGINE.start(conv)
        conv.step = step
        reply = ENGINE.handle(conv, Input("speech", heard.text, heard.confidence))
        assert reply.route is None and conv.step == step, (seed, heard, reply.decision.detail)
        assert reply.decision.detail.startswith("only fillers"), (seed, heard, reply.decision.detail)
