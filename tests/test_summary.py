"""The agent's briefing says why the bot handed the caller over, in a few words."""
from ivr.config import ROOT
from ivr.flows.engine import Conversation, Engine, Input
from ivr.flows.loader import load_flow
from ivr.summary import agent_summary

ENGINE = Engine(load_flow(ROOT / "flows" / "hotline.yaml"))


def report_after(text):
    conv = Conversation("hotline", "en")
    ENGINE.start(conv)
    reply = ENGINE.handle(conv, Input("speech", text))
    d = reply.decision
    turn = {"who": "caller", "input": "speech", "text": text, "intent": d.intent, "decision": d.action,
            "detail": d.detail}
    return {"record": {"flow": "hotline", "reason": reply.route.reason}, "turns": [turn]}


def test_a_rule_is_named_in_the_briefing():
    said = agent_summary(report_after("there is a payment on my statement that i never made"))
    assert "Understood by rule money + not mine ('statement', 'never made')." in said, said


def test_the_classifier_names_its_probability_and_words_not_its_nearest_sentence():
    said = agent_summary(report_after("my new laptop bag smells like burning plastic and it's warm"))
    assert "Understood by " in said and "nearest" not in said, said
