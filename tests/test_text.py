"""Words, tokens and scripts: the one definition every filter uses."""

from __future__ import annotations

import time

import pytest

from synth.filters.pii import find_pii
from synth.text import (
    CJK,
    CJK_CHAR,
    count_words,
    normalize_text,
    tokenize,
    tokenize_rouge_score,
    tokenize_unicode,
)

# text, count_words, tokenize (dedup, contamination), tokenize_unicode (ROUGE-L),
# tokenize_rouge_score
CASES = [
    ("", 0, [], [], []),
    ("  \t\n ", 0, [], [], []),
    ("?!, ...", 0, [], [], []),
    ("Where is my card?", 4, ["where", "is", "my", "card"], ["where", "is", "my", "card"], None),
    ("Café déjà vu", 3, ["café", "déjà", "vu"], ["café", "déjà", "vu"], ["caf", "d", "j", "vu"]),
    # Decomposed accent: the mark stays inside the word for the tokenisers (NFKC composes
    # it), and ends the word for the length check, as ``\w`` does.
    ("Cafe\u0301 noir", 2, ["café", "noir"], ["café", "noir"], ["cafe", "noir"]),
    ("ÉCOLE Straße", 2, ["école", "strasse"], ["école", "strasse"], ["cole", "stra", "e"]),
    ("ＡＢＣ１２３ ﬁne", 2, ["abc123", "fine"], ["abc123", "fine"], ["ne"]),
    ("Kelvin \u212a", 2, ["kelvin", "k"], ["kelvin", "k"], ["kelvin", "k"]),
    ("order 12345 costs 9.99", 5, ["order", "12345", "costs", "9", "99"], None, None),
    ("don't stop", 3, ["don", "t", "stop"], ["don", "t", "stop"], None),
    ("it\u2019s", 2, ["it", "s"], ["it", "s"], ["it", "s"]),
    ("state-of-the-art", 4, ["state", "of", "the", "art"], None, None),
    # Dedup keeps an underscore inside a word (identifiers); ROUGE splits as rouge_score.
    ("snake_case", 1, ["snake_case"], ["snake", "case"], ["snake", "case"]),
    ("我想申请退款", 6, list("我想申请退款"), list("我想申请退款"), []),
    ("人々", 2, ["人", "々"], ["人", "々"], []),
    ("𠀀𠀁", 2, ["𠀀", "𠀁"], ["𠀀", "𠀁"], []),
    ("カードが届きません", 9, list("カードが届きません"), list("カードが届きません"), []),
    # Half-width katakana: NFKC makes them full-width (and joins the sound mark).
    ("ｶｰﾄﾞ", 4, ["カ", "ー", "ド"], ["カ", "ー", "ド"], []),
    ("환불을 원해요", 6, list("환불을원해요"), list("환불을원해요"), []),
    # Compatibility jamo: NFKC maps them to conjoining jamo, one token each.
    ("ㅋㅋㅋ", 3, ["ᄏ"] * 3, ["ᄏ"] * 3, []),
    (
        "我的card没到",
        5,
        ["我", "的", "card", "没", "到"],
        ["我", "的", "card", "没", "到"],
        ["card"],
    ),
    (
        "Mi tarjeta 卡 no llegó",
        5,
        ["mi", "tarjeta", "卡", "no", "llegó"],
        None,
        ["mi", "tarjeta", "no", "lleg"],
    ),
    # Devanagari: vowel signs and virama are marks; the tokenisers keep the word whole,
    # the length check (``\w``) splits at them.
    ("नमस्ते दुनिया", 5, ["नमस्ते", "दुनिया"], ["नमस्ते", "दुनिया"], []),
    # A CJK radical is a symbol: a word to the length check and dedup, no ROUGE token.
    ("\u2e80", 1, ["\u2e80"], [], []),
    ("a\u3006b", 3, ["a", "\u3006", "b"], ["a", "\u3006", "b"], ["a", "b"]),
]


@pytest.mark.parametrize(("text", "words", "tokens", "rouge", "rouge_score"), CASES)
def test_words_and_tokens(
    text: str,
    words: int,
    tokens: list[str],
    rouge: list[str] | None,
    rouge_score: list[str] | None,
) -> None:
    assert count_words(text) == words
    assert tokenize(text) == tokens
    # None: the same tokens as dedup's (no underscore, so they agree).
    assert tokenize_unicode(text) == (tokens if rouge is None else rouge)
    assert tokenize_rouge_score(text) == (tokens if rouge_score is None else rouge_score)


# One letter of every range of the class: each is a word of its own everywhere.
CJK_LETTERS = [
    "\u1100",  # Hangul Jamo
    "\u3005",  # iteration mark
    "\u3007",  # ideographic zero
    "\u3021",  # Hangzhou numeral one
    "\u3042",  # Hiragana
    "\u30a2",  # Katakana
    "\u3105",  # Bopomofo
    "\u3131",  # Hangul compatibility Jamo
    "\u31a0",  # Bopomofo extended
    "\u31f0",  # Katakana phonetic extensions
    "\u3400",  # CJK extension A
    "\u4e00",  # CJK unified ideographs
    "\ua960",  # Hangul Jamo extended A
    "\uac00",  # Hangul syllables
    "\ud7b0",  # Hangul Jamo extended B
    "\uf900",  # CJK compatibility ideographs
    "\uff76",  # half-width Katakana
    "\U00020000",  # CJK extension B
    "\U00031340",  # CJK extension G
]


@pytest.mark.parametrize("char", CJK_LETTERS)
def test_every_cjk_letter_is_a_word_of_its_own(char: str) -> None:
    assert CJK_CHAR.fullmatch(char)
    assert count_words(char * 3) == 3
    assert count_words(f"ab{char}cd") == 3
    assert len(tokenize(char * 3)) == 3
    assert len(tokenize_unicode(char * 3)) == 3
    assert tokenize_rouge_score(char * 3) == []


@pytest.mark.parametrize("char", ["a", "é", "ß", "ж", "α", "ا", "क", "ก", "1", "_"])
def test_letters_of_spaced_scripts_are_not_cjk(char: str) -> None:
    assert not CJK_CHAR.match(char)
    assert count_words(char * 3) == 1


def test_the_class_body_builds_the_pattern() -> None:
    assert CJK_CHAR.pattern == f"[{CJK}]"


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("", ""),
        ("  Where IS\tmy\n\ncard?  ", "where is my card?"),
        ("Straße", "strasse"),
        ("Cafe\u0301", "café"),
        ("ＡＢＣ\u3000１２３", "abc 123"),
        ("我想 申请\u00a0退款", "我想 申请 退款"),
    ],
)
def test_normalize_text(text: str, normal: str) -> None:
    assert normalize_text(text) == normal


def test_an_email_after_cjk_text_does_not_swallow_it() -> None:
    """PII walks back over letters before an email's local part, never over CJK."""
    for before in ("联系", "ｶﾀｶﾅ", "か", "한"):
        text = f"{before}zhang@example.com"
        [span] = find_pii(text)
        assert text[span.start : span.end] == "zhang@example.com"
    [span] = find_pii("maría@example.com")
    assert span.start == 0


def test_very_long_texts_take_linear_time() -> None:
    words = "word " * 200_000
    cjk = "我想申请退款" * 50_000
    marks = "e\u0301" * 200_000
    start = time.perf_counter()
    assert count_words(words) == 200_000
    assert len(tokenize(words)) == 200_000
    assert len(tokenize_unicode(words)) == 200_000
    assert count_words(cjk) == len(tokenize(cjk)) == len(tokenize_unicode(cjk)) == 300_000
    assert tokenize(marks) == tokenize_unicode(marks) == ["é" * 200_000]
    assert count_words("a" * 1_000_000) == 1
    assert time.perf_counter() - start < 10
