"""Keep card numbers and other long digit strings out of stored transcripts."""
import re

# 13-19 digits, optionally grouped by spaces or dashes: payment card numbers.
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")


def redact(text: str) -> str:
    return _CARD.sub(lambda m: "[card number removed]", text or "")


def mask_phone(number: str) -> str:
    """+15551234567 -> +1555***4567; enough for an operator to recognise, not to dial."""
    n = number or ""
    return n if len(n) < 8 else n[:4] + "*" * (len(n) - 8) + n[-4:]
