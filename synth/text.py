"""Words, tokens and scripts, defined once for every filter.

The length check, exact and near dedup, contamination, diversity and PII all need to
know where a word starts and ends, and Chinese, Japanese and Korean do not separate
words with spaces. When each filter kept its own list of those scripts, a character
could be a word to the length check and part of a longer word to dedup; here there is
one character class, one notion of a word character, and the tokenisers built on them.

The tokenisers still differ where their users need them to: ROUGE-L must reproduce
``rouge_score`` token for token on English, dedup keeps underscores inside words. What
they share is the answer to "is this character a word of its own, part of a word, or a
separator".

Nothing here imports the rest of synth, so any module can use it.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from functools import cache

# Scripts written without spaces between words: each character is a word (a token) of
# its own. Hangul is spaced by phrase, but a phrase glues particles to the noun
# ("환불을", "환불은"), so syllables match far better than phrases.
CJK = (
    "\u1100-\u11ff"  # Hangul Jamo
    "\u2e80-\u2fdf"  # CJK radicals supplement, Kangxi radicals
    "\u3005-\u3007"  # iteration mark, closing mark, ideographic zero
    "\u3021-\u3029"  # Hangzhou numerals
    "\u3038-\u303b"  # Hangzhou numerals ten to thirty, vertical iteration mark
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3100-\u312f"  # Bopomofo
    "\u3130-\u318f"  # Hangul compatibility Jamo
    "\u31a0-\u31ff"  # Bopomofo extended, Katakana phonetic extensions
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\ua960-\ua97f"  # Hangul Jamo extended A
    "\uac00-\ud7ff"  # Hangul syllables, Jamo extended B
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff66-\uff9f"  # half-width Katakana
    "\U00020000-\U0003134f"  # CJK extensions B-G
)
"""The CJK character class, as the body of a regex ``[...]``."""

CJK_CHAR = re.compile(f"[{CJK}]")
"""One character of a script written without spaces (Han, kana, Hangul, Bopomofo)."""

# A word character (letter, digit, underscore: Python's ``\w``) of a spaced script.
_LETTER = f"[^\\W{CJK}]"

WORD = re.compile(f"[{CJK}]|{_LETTER}+")
"""A word as the length check counts it: one CJK character, or a run of letters and
digits of any other script (combining marks separate, as in ``\\w``)."""

_ASCII_WORD = re.compile(r"[a-z0-9_]+")
_ASCII_ALNUM = re.compile(r"[a-z0-9]+")
_SPACE = re.compile(r"\s+")


def count_words(text: str) -> int:
    """Words in any script: runs of letters and digits, and single CJK characters."""
    return sum(1 for _ in WORD.finditer(text))


def normalize_text(text: str) -> str:
    """Casefold, NFKC and collapse whitespace: the form exact dedup compares."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


@cache
def _marks() -> str:
    """Every combining mark (category M*) as the body of a regex class, built once.

    Combining marks are not ``\\w`` in Python's re, yet they are part of words in
    Devanagari, Thai, Arabic and decomposed Latin accents. Marks are assigned only in
    planes 0-3 and 14 (variation selectors), so only those are scanned.
    """
    ranges: list[tuple[int, int]] = []
    for cp in (*range(0x40000), *range(0xE0000, sys.maxunicode + 1)):
        if unicodedata.category(chr(cp))[0] == "M":
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    return "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


@cache
def _word_token() -> re.Pattern[str]:
    return re.compile(f"[{CJK}]|{_LETTER}(?:{_LETTER}|[{_marks()}])*")


@cache
def _rouge_token() -> re.Pattern[str]:
    return re.compile(f"(?:[^\\W_]|[{_marks()}])+")


def tokenize(text: str) -> list[str]:
    """Casefolded NFKC word tokens; each CJK character is a token of its own.

    Runs of word characters (``\\w``, underscore included, with combining marks kept
    inside the word so Devanagari or decomposed accents do not split); punctuation and
    whitespace only separate tokens. The tokens of near dedup and contamination.

    >>> tokenize("¿Dónde está mi tarjeta? 我想申请退款")
    ['dónde', 'está', 'mi', 'tarjeta', '我', '想', '申', '请', '退', '款']
    """
    if text.isascii():
        # NFKC and casefolding are identities on ASCII, apart from lower-casing.
        return _ASCII_WORD.findall(text.lower())
    return _word_token().findall(unicodedata.normalize("NFKC", text).casefold())


def tokenize_rouge_score(text: str) -> list[str]:
    """``rouge_score``'s default tokenizer without stemming, token for token.

    It lower-cases with ``str.lower`` (so "K", the Kelvin sign, becomes "k"), turns
    every character outside ``[a-z0-9]`` into a separator and keeps the runs between.
    """
    return _ASCII_ALNUM.findall(text.lower())


def tokenize_unicode(text: str) -> list[str]:
    """Words of any script, lower-cased; each CJK character is a token of its own.

    NFKC first, so composed and decomposed accents and full-width forms compare equal;
    then casefold. Underscore and punctuation separate words, as in ``rouge_score``.
    On ASCII text the result equals :func:`tokenize_rouge_score`.
    """
    if text.isascii():
        return _ASCII_ALNUM.findall(text.lower())
    text = unicodedata.normalize("NFKC", text).casefold()
    text = CJK_CHAR.sub(r" \g<0> ", text)
    return _rouge_token().findall(text)
