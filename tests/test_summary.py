"""The agent's briefing says why the bot handed the caller over, in a few words."""
from ivr.config import ROOT
from ivr.flows.engine import Conversation, Engine, Input
from ivr.flows.loader import load_flow
from ivr.summary import agent_summary

FLOW = load_flow(ROOT / "flows" / "hotline.yaml")
ENGINE = Engine(FLOW)


def report_after(text):
    conv = Conversation("hotline", "en")
    ENGINE.start(conv)
    reply = ENGINE.handle(conv, Input("speech", text))
    d = reply.decision
    turn = {"who": "caller", "input": "speech", "text": text, "intent": d.intent, "decision": d.action,
            "detail": d.detail}
    return {"record": {"flow": "hotline", "reason": reply.route.reason}, "turns": [turn]}


def test_the_words_a_rule_fired_on_are_in_the_briefing():
    said = agent_summary(FLOW, "en", report_after("there is a payment on my statement that i never made"))
    assert "Key words: 'statement', 'never made'." in said, said


def test_the_classifiers_words_are_in_the_briefing_not_its_nearest_sentence():
    report = report_after("i have been on hold for ages and your staff were rude to me")
    assert ", nearest '" in report["turns"][0]["detail"]
    said = agent_summary(FLOW, "en", report)
    assert "Key words: '" in said, said
    nearest = report["turns"][0]["detail"].split(", nearest ", 1)[1]
    assert nearest not in said
