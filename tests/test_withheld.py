"""Withheld and placeholder caller IDs are nobody's history: never a repeat caller, never merged."""
import pytest

from ivr import keys
from ivr.calls import withheld
from tests.test_handoff import enqueue_verb, start_and_press

# Twilio's `From` for a withheld number: words, or the words spelled on a keypad.
WITHHELD = ["", "  ", "anonymous", "Anonymous", "RESTRICTED", "unknown", "private", "blocked", "unavailable",
            "+266696687", "266696687", "+1266696687", "+7378742833", "+2562533", "+86282452253", "8656696",
            "+0000000000"]


@pytest.mark.parametrize("number", WITHHELD)
def test_placeholder_numbers_are_withheld(number):
    assert withheld(number)


@pytest.mark.parametrize("number", ["+15005550123", "+821012345678", "client:alice", "+44 20 7946 0958"])
def test_real_numbers_are_not(number):
    assert not withheld(number)


def _call(n, number):
    return {"CallSid": f"CA{n:032d}", "From": number, "To": "+15005550100"}


@pytest.mark.parametrize("first,second", [("+266696687", "+266696687"), ("Anonymous", "+7378742833"),
                                          ("", "restricted")])
def test_two_withheld_calls_in_a_row_go_where_their_request_deserves(serve, redis, first, second):
    client = serve()
    for n, number in ((1, first), (2, second)):
        root = start_and_press(client, _call(n, number), "0")      # a person, please: the normal queue
        assert enqueue_verb(root).text == "ivr-normal", number
        rec = redis.hgetall(keys.call(f"CA{n:032d}"))
        assert rec["boost"] == "" and rec["queue"] == "normal"
    assert not list(redis.scan_iter(keys.caller("", b"-")[:-32] + "*"))     # no caller history at all


def test_a_real_number_calling_again_is_a_repeat_caller(serve, redis):
    """The same two calls from a number that names someone: the second goes ahead (the rule still holds)."""
    client = serve()
    start_and_press(client, _call(3, "+15005550199"), "0")
    root = start_and_press(client, _call(4, "+15005550199"), "0")
    assert enqueue_verb(root).text == "ivr-urgent"
    assert redis.hget(keys.call(f"CA{4:032d}"), "boost") == "transferred_before"
