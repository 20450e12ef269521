"""Digit strings from keypad input or from spoken numbers ("four two one", "사 이 일")."""
from __future__ import annotations

import re

from .intents import normalize

_WORDS = {
    "en": {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3",
           "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
           "nine": "9"},
    # Sino-Korean digits are how numbers are read out one by one; native ones also occur.
    "ko": {"영": "0", "공": "0", "일": "1", "이": "2", "삼": "3", "사": "4", "오": "5", "육": "6", "칠": "7",
           "팔": "8", "구": "9", "하나": "1", "둘": "2", "셋": "3", "넷": "4", "다섯": "5", "여섯": "6",
           "일곱": "7", "여덟": "8", "아홉": "9"},
}


def spoken_digits(text: str, lang: str) -> str:
    """Digits the caller said, in order; words that are not digits are skipped."""
    words = _WORDS.get(lang, {})
    out = []
    for token in normalize(text).split():
        if token.isdigit():
            out.append(token)
        elif token in words:
            out.append(words[token])
        elif lang == "ko" and all(ch in words for ch in token):
            # Vosk often glues Korean digits together ("사이일").
            out.extend(words[ch] for ch in token)
    return "".join(out)


def only_digits(text: str, lang: str) -> bool:
    """The caller said a number and nothing else ("one zero zero two"): at a step that asks for
    one, such words are the answer, not a request ("zero" is also how callers ask for a person)."""
    words = _WORDS.get(lang, {})
    tokens = normalize(text).split()
    return bool(tokens) and all(t.isdigit() or t in words or (lang == "ko" and all(ch in words for ch in t))
                                for t in tokens)


def speakable(value: str) -> str:
    """Read long numbers digit by digit, as people read order numbers aloud."""
    return " ".join(value) if re.fullmatch(r"\d{5,}", value or "") else value
