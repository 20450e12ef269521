"""Typed slips of the flow's own words are read as those words (ivr/flows/spelling.py)."""
from collections import Counter

import pytest

from ivr.flows.spelling import Speller, language_words
from tests.test_engine_rules import ENGINE, KO_ENGINE, first_turn


@pytest.mark.parametrize("text, reason, queue", [
    ("can i talk to an agnet", "agent_request", "normal"),
    ("there is smkoe coming out of the charger", "safety_hazard", "urgent"),
    ("my pasword got changed and it wasnt me", "fraud_security", "urgent"),
    ("i want to make a complanit", "complaint", "urgent"),
])
def test_a_typed_slip_of_an_urgent_or_person_word_still_reaches_a_person(text, reason, queue):
    reply = first_turn(ENGINE, "hotline", "en", text)
    assert reply.route is not None and (reply.route.reason, reply.route.queue) == (reason, queue), reply.decision.detail
    # The explanation says how the caller's word was read.
    assert "; read '" in reply.decision.detail and "' as '" in reply.decision.detail


def test_real_words_and_short_words_are_never_changed():
    speller = ENGINE.matchers["en"].speller
    # "spoke" is no slip of "smoke", nor "seater" of "heater": they are words of the language.
    for sentence in ("the way he spoke to me", "a three seater sofa", "is the oled any good", "its a sonos"):
        assert speller.read(sentence) == (sentence, ()), sentence


def test_the_likelier_slip_wins():
    speller = Speller(Counter({"delivery": 30, "delivered": 5, "cards": 1, "carts": 1}), known=frozenset())
    assert speller.word("deliverd") == "delivered"      # a letter left out, not one wrong ("delivery")
    assert speller.word("carsd") == "cards"            # two letters swapped
    assert speller.word("carls") == "carls"            # cards or carts, one wrong letter each: as typed
    assert speller.word("xards") == "xards"            # the first letter is kept
    assert speller.read("two carsd") == ("two cards", (("carsd", "cards"),))


def test_korean_has_no_speller():
    assert language_words("ko") is None and KO_ENGINE.matchers["ko"].speller is None
