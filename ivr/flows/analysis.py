"""Language-aware word forms for intent matching: what to compare, per language.

Callers say the same thing in many forms: "charged", "charges", "charging"; "환불을",
"환불해", "환불은". Comparing surface words makes every new form an unknown word,
which the matcher counts *against* a match. So each language reduces words to a
comparable form before they are weighed:

* English: Snowball stems (snowballstemmer, the stemmer Sphinx and NLTK ship; pure
  Python, ~60 KB, ~30 us a word, cached). "refunded" and "refunds" become "refund".
* Korean: particles and common endings stripped from each spaced word ("환불을" ->
  "환불", "도착했는데요" -> "도착"), and character bigrams over the sentence without
  spaces carry the rest: recognizer spacing varies, and inflection changes the end
  of a word, not its start. A morphological analyser (kiwipiepy) does this properly
  but costs ~500 MB (shared by forked workers: 167 MB PSS each with two) and 1.4 ms or
  more per sentence, for two more right answers in 130 on the Korean validation set
  (BENCHMARKS.md, "Intent matching"), so the light stripper stays.

Languages without an entry get lower case and punctuation removal only.
"""
from __future__ import annotations

from functools import lru_cache

import snowballstemmer

# Function words say nothing about what a caller wants; at full weight "i need a
# plumber" looks like "i need a repair". They keep a little weight so word pairs
# such as "where is" still count.
STOPWORDS = {
    "en": frozenset("""
        a an the i im id ive ill me my mine myself you youre your yours we our us it its this that
        these those there theres is are was were be been being am do does did doing have has had
        having can could would should will shall may might must to of in on at for from with by about
        as and or but so if then than just also too very really please hi hello hey um uh er ah oh
        well okay ok like want wanna need get got some any one thing things yeah basically actually
        guys lot
    """.split()),
    "ko": frozenset("""
        저 제 저기 저기요 저기요 음 아 어 네 그 그게 그게요 그러니까 좀 혹시 진짜 정말 그냥 지금 이거 그거 근데 그런데
        안녕하세요 제가 저는 내가 나 우리 여기 거기 혹시요 막 뭐
    """.split()),
}

_EN = snowballstemmer.stemmer("english")

# Korean: the ends of spaced words that carry grammar, not meaning, longest first.
_KO_ENDINGS = sorted("""
    은 는 이 가 을 를 에 에서 에게 한테 께 으로 로 와 과 도 만 의 까지 부터 랑 이랑 하고 이나 나 요 이요
    이에요 예요 에요 입니다 이었어요 였어요 인데요 인데 는데요 는데 은데요 은데 데요 거든요 거든
    어요 아요 해요 했어요 었어요 았어요 였어요 습니다 ㅂ니다 합니다 했습니다 됐어요 됐습니다 돼요 되요 됩니다
    하고 싶어요 싶어요 싶은데요 싶은데 주세요 줘요 줘 해줘 해주세요 할게요 할께요 려고요 려는데 려는데요
    나요 가요 까요 는지 은지 을까요 ㄹ까요 죠 지요 네요 군요 어 아 지 고 게 며 면 서 니까
""".split(), key=len, reverse=True)


@lru_cache(maxsize=65536)
def _stem_en(word: str) -> str:
    return _EN.stemWord(word)


@lru_cache(maxsize=65536)
def _stem_ko(word: str) -> str:
    """Strip grammar from the end of one spaced Korean word, keeping at least two syllables."""
    for _ in range(2):
        for end in _KO_ENDINGS:
            if word.endswith(end) and len(word) - len(end) >= 2:
                word = word[:-len(end)]
                break
        else:
            break
    return word


def stem(word: str, lang: str) -> str:
    if lang == "en":
        return _stem_en(word)
    if lang == "ko":
        return _stem_ko(word)
    return word


def is_stopword(word: str, lang: str) -> bool:
    return word in STOPWORDS.get(lang, ())


def char_ngram_sizes(lang: str) -> tuple:
    """Letter groups that absorb recognizer noise and inflection: Korean syllables are
    dense (a bigram is often a whole word), Latin letters need three or four."""
    return (2, 3) if lang == "ko" else (3, 4)


def char_text(tokens: list, lang: str) -> str:
    """The sentence for letter groups: content words run together (no spaces: recognizers
    split and glue words, Korean spacing is optional)."""
    content = [t for t in tokens if not is_stopword(t, lang)] or tokens
    return "".join(content)
