"""Keep card numbers and other long digit strings out of stored transcripts."""
import re

# 13-19 digits, optionally grouped by spaces or dashes: payment card numbers.
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")


def redact(text: str) -> str:
    return _CARD.sub(lambda m: "[card number removed]", text or "")


def mask_phone(number: str) -> str:
    """+15551234567 -> +1555***4567; enough for an operator to recognise, not to dial.

    A caller ID is a number or a word ("anonymous"); a line break or other control character in
    one (a forged request's) becomes "?", so it cannot start a log line of its own."""
    n = "".join(c if c.isprintable() else "?" for c in number or "")
    return n if len(n) < 8 else n[:4] + "*" * (len(n) - 8) + n[-4:]


# Eight or more digits, optionally grouped by single spaces, dashes or dots: phone, account and
# card-like numbers. Shorter ones (order numbers, amounts, times) stay readable for operators.
_LONG_DIGITS = re.compile(r"(?<!\d)\d(?:[ .-]?\d){7,}(?!\d)")


def mask_digits(text: str) -> str:
    """For display: card numbers removed, other long digit strings cut to their last 4 digits.

    Transcripts are stored already redacted; this is the second line of defence for anything
    shown on screen or exported, including text written before redaction existed.
    """
    def last4(m):
        digits = re.sub(r"\D", "", m.group(0))
        return "•" * 4 + digits[-4:]
    return _LONG_DIGITS.sub(last4, redact(text))
