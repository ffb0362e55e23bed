"""The simulator's text engine: paraphrases of the shots, and planted text faults.

It stands in for a model, so it has to look like one to the filters downstream
(distinct, on-topic paraphrases with a controlled share of planted faults) while
costing a few tens of microseconds per item: everything here is table lookups,
one-pass regexes and ``random.Random`` draws, with no per-request compilation.

Items are word-level paraphrases and recombinations of the few-shot examples found
in the prompt: clauses of one or two shots are recombined, common words and phrases
are swapped for synonyms, and light openers, closers and casing changes are added.
Text in other languages is recombined too; synonyms apply only where the tables
(``vocab.py``) know the words (a little Spanish and Chinese, mostly English).
"""

from __future__ import annotations

import re
from functools import lru_cache
from random import Random

from synth.sim.vocab import (
    _EN_CLOSERS,
    _EN_CONJUNCTIONS,
    _EN_OPENERS,
    _EN_PHRASE_RE,
    _EN_PHRASE_TABLE,
    _ES_CLOSERS,
    _ES_MARKERS,
    _ES_OPENERS,
    _KEEP_CAPITAL,
    _ZH_CLOSERS,
    _ZH_OPENERS,
    _ZH_SWAPS,
    EN_SYNONYMS,
    ES_SYNONYMS,
)

_PUNCT = ".,;:!?\"'()[]{}¿¡…“”‘’"
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
_SPLIT = re.compile(
    r"(?<=[,;:.!?])\s+|\s+(?=(?:and|but|so|because|y|pero|porque)\s)", re.IGNORECASE
)
_CJK_SPLIT = re.compile(r"(?<=[，。！？；、,!?;])")
_NORM = re.compile(r"[\W_]+")
_GLUE = "\x00"


# ---------------------------------------------------------------------------
# Paraphrasing


# Shots recur across requests (the same seeds are shown again and again), so the
# per-text analyses are cached.
@lru_cache(maxsize=8192)
def _lang(text: str) -> str:
    if _CJK.search(text):
        return "zh"
    words = text.lower().split()
    hits = sum(1 for w in words if w.strip(_PUNCT) in _ES_MARKERS)
    if hits >= 2 or "¿" in text or "ñ" in text:
        return "es"
    return "en"


@lru_cache(maxsize=8192)
def normalize(text: str) -> str:
    """Lowercase with punctuation and spacing collapsed: the key for "same text"."""
    return _NORM.sub(" ", text.lower()).strip()


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def _decap(s: str) -> str:
    if not s or not s[0].isupper():
        return s
    first = s.split(" ", 1)[0].rstrip(_PUNCT)
    if first in _KEEP_CAPITAL or (len(first) > 1 and first.isupper()):
        return s
    return s[0].lower() + s[1:]


@lru_cache(maxsize=8192)
def split_clauses(text: str, lang: str) -> tuple[str, ...]:
    """Clauses at commas, sentence ends and conjunctions (each keeps its punctuation)."""
    parts = (_CJK_SPLIT if lang == "zh" else _SPLIT).split(text.strip())
    return tuple(p.strip() for p in parts if p and p.strip())


def _leads(clause: str) -> bool:
    """Whether a clause starts with a conjunction (and cannot start an item)."""
    return clause.split(" ", 1)[0].lower() in _EN_CONJUNCTIONS


def _join(clauses: list[str], rng: Random, lang: str) -> str:
    if lang == "zh":
        out = ""
        for c in clauses:
            if out and out[-1] not in "，。！？；、,!?;":
                out += "，"
            out += c
        return out
    and_ = " y " if lang == "es" else " and "
    out = clauses[0].rstrip(",;:")
    for c in clauses[1:]:
        c = c.rstrip(",;:")
        first = c.split(" ", 1)[0].lower()
        if out[-1:] in ".!?":
            out += " " + _cap(c)
        elif first in _EN_CONJUNCTIONS:
            out += (" " if rng.random() < 0.6 else ", ") + _decap(c)
        else:
            r = rng.random()
            if r < 0.4:
                out += ", " + _decap(c)
            elif r < 0.7:
                out += and_ + _decap(c)
            elif r < 0.85:
                out += ". " + _cap(c)
            else:
                out += " - " + _decap(c)
    return out


def _phrase_sub(text: str, rng: Random, rate: float) -> str:
    """Swap known phrases. Every phrase matched, swapped or not, comes back glued
    with ``_GLUE`` so the word pass sees it as one unknown token: "find" in a kept
    "find out" must not become "locate out"."""

    def swap(m: re.Match[str]) -> str:
        src = m.group(0)
        if rng.random() < rate:
            alt = rng.choice(_EN_PHRASE_TABLE[src.lower()])
            src = _cap(alt) if src[0].isupper() else alt
        return src.replace(" ", _GLUE)

    return _EN_PHRASE_RE.sub(swap, text)


def _word_sub(text: str, rng: Random, rate: float, table: dict[str, tuple[str, ...]]) -> str:
    out: list[str] = []
    for tok in text.split():
        core = tok.strip(_PUNCT)
        alts = table.get(core.lower()) if core else None
        if alts and rng.random() < rate:
            alt = rng.choice(alts)
            if len(core) > 1 and core.isupper():
                alt = alt.upper()
            elif core[0].isupper():
                alt = _cap(alt)
            lead = tok.find(core)
            tok = tok[:lead] + alt + tok[lead + len(core) :]
            if out and out[-1].lower() in ("a", "an"):
                # Keep the article right for the new word.
                article = "an" if alt[0].lower() in "aeiou" else "a"
                out[-1] = _cap(article) if out[-1][0].isupper() else article
        out.append(tok)
    return " ".join(out)


def _zh_sub(text: str, rng: Random, rate: float) -> str:
    for src, alts in _ZH_SWAPS:
        if src in text and rng.random() < rate:
            text = text.replace(src, rng.choice(alts), 1)
    return text


def reword(text: str, rng: Random, rate: float, lang: str | None = None) -> str:
    """Swap phrases and words for synonyms, each with probability ``rate``."""
    lang = lang or _lang(text)
    if lang == "zh":
        return _zh_sub(text, rng, rate)
    if lang == "es":
        return _word_sub(text, rng, rate, ES_SYNONYMS)
    return _word_sub(_phrase_sub(text, rng, rate), rng, rate, EN_SYNONYMS).replace(_GLUE, " ")


def _decorate(text: str, rng: Random, lang: str, force: bool = False) -> str:
    """Openers, closers, casing and end punctuation, as people type them."""
    if not text:
        return text
    if lang == "zh":
        opener = rng.choice(_ZH_OPENERS)
        if (force or rng.random() < 0.35) and not text.startswith(opener[:2]):
            text = opener + text
        if force or rng.random() < 0.3:
            text = text.rstrip("。，")
            text += ("" if text[-1:] in "！？!?" else "，") + rng.choice(_ZH_CLOSERS)
        return text
    openers, closers = (_ES_OPENERS, _ES_CLOSERS) if lang == "es" else (_EN_OPENERS, _EN_CLOSERS)
    first = text.split(" ", 1)[0].strip(_PUNCT).lower()
    if first in ("hi", "hello", "hey", "hola", "buenas") and " " in text and rng.random() < 0.5:
        text = _cap(text.split(" ", 1)[1].lstrip(",.!- "))
    r = rng.random()
    if force or r < 0.3:
        opener = rng.choice(openers)
        text = opener + " " + (_decap(text) if opener[-1] in ",:" else text)
        text = _cap(text) if rng.random() < 0.6 else text
    r = rng.random()
    if force or r < 0.25:
        closer = rng.choice(closers)
        end = text[-1:]
        if end in ".!?":
            text += " " + (_cap(closer) if end == "." and rng.random() < 0.5 else closer)
        else:
            text += (", " if rng.random() < 0.5 else " ") + closer
    r = rng.random()
    if r < 0.12:
        text = text[0].lower() + text[1:]
    elif r < 0.16:
        text = text.lower()
    elif r < 0.18 and len(text) < 80:
        text = text.upper()
    elif r < 0.45:
        text = _cap(text)
    r = rng.random()
    if r < 0.15 and text[-1:] in ".!?":
        text = text[:-1]
    elif r < 0.22 and text[-1:] == "?":
        text += "?"
    elif r < 0.27 and text[-1:] not in ".!?":
        text += rng.choice(("!", ".", "?", "!!"))
    return text


def paraphrase(
    primary: str,
    others: list[str],
    rng: Random,
    *,
    rate: float,
    recombine: bool = True,
    decorate: bool = True,
    force: bool = False,
) -> str:
    """A paraphrase of ``primary``, possibly grafting a clause of one of ``others``.

    ``rate`` is the share of known words and phrases swapped for synonyms;
    ``force`` always adds an opener and a closer (the fallback that guarantees the
    result differs from every source).
    """
    lang = _lang(primary)
    text = primary
    if recombine:
        clauses = list(split_clauses(primary, lang))
        r = rng.random()
        if others and r < 0.45:
            other = split_clauses(rng.choice(others), lang)
            if other:
                # A clause led by "and"/"because" is a fragment on its own.
                graft = rng.choice([c for c in other if not _leads(c)] or other[:1])
                if len(clauses) >= 2 and rng.random() < 0.5:
                    clauses[rng.randrange(len(clauses))] = graft
                else:
                    keep = rng.randint(1, len(clauses))
                    clauses = clauses[:keep] + [graft]
                if clauses[-1][-1:] not in ".!?。！？" and primary.rstrip()[-1:] == "?":
                    clauses[-1] += "?"
                text = _join(clauses[:4], rng, lang)
        elif len(clauses) >= 2 and r < 0.7:
            i = rng.randrange(len(clauses) - 1)
            a, b = clauses[i], clauses[i + 1]
            if rng.random() < 0.5 and not (_leads(a) or _leads(b)):
                clauses[i], clauses[i + 1] = b, a
                if lang != "zh" and clauses[0][:1].islower():
                    clauses[0] = _cap(clauses[0])
            else:
                # Never the first clause: "because I didn't create it." alone is no item.
                del clauses[rng.randrange(1, len(clauses))]
            text = _join(clauses, rng, lang)
    text = reword(text, rng, rate, lang)
    if decorate:
        text = _decorate(text, rng, lang, force)
    return text


# ---------------------------------------------------------------------------
# Item-level faults


def near_dup(text: str, rng: Random) -> str:
    """``text`` with one or two small word edits (a synonym, a typo, a dropped or
    doubled word): what a near-duplicate filter must catch."""
    lang = _lang(text)
    for _ in range(4):
        if lang == "zh":
            chars = list(text)
            if len(chars) < 3:
                return text + "。"
            i = rng.randrange(len(chars))
            if rng.random() < 0.5:
                del chars[i]
            else:
                chars.insert(i, chars[i])
            out = "".join(chars)
        else:
            words = text.split()
            for _edit in range(rng.randint(1, 2)):
                if not words:
                    break
                i = rng.randrange(len(words))
                op = rng.random()
                core = words[i].strip(_PUNCT)
                alts = EN_SYNONYMS.get(core.lower()) or ES_SYNONYMS.get(core.lower())
                if alts and op < 0.4:
                    words[i] = words[i].replace(core, rng.choice(alts), 1)
                elif op < 0.65 and len(core) >= 4:
                    j = rng.randrange(len(core) - 1)
                    typo = core[:j] + core[j + 1] + core[j] + core[j + 2 :]
                    words[i] = words[i].replace(core, typo, 1)
                elif op < 0.85 and len(words) >= 4:
                    del words[i]
                else:
                    words.insert(i, words[i])
            out = " ".join(words)
        if out != text:
            return out
    return text + "!"


def _luhn_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:  # doubled positions, counting from the check digit's left
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def _iban(rng: Random) -> str:
    country, bban = rng.choice(
        (
            ("GB", rng.choice(("NWBK", "BARC", "MIDL", "LOYD")) + f"{rng.randrange(10**14):014d}"),
            ("DE", f"{rng.randrange(10**18):018d}"),
            ("FR", f"{rng.randrange(10**23):023d}"),
            ("ES", f"{rng.randrange(10**20):020d}"),
        )
    )
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    iban = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    if rng.random() < 0.5:
        iban = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban


_NAMES = ("john", "maria", "alex", "sam", "li.wei", "priya", "tom", "ana", "jkowalski", "emma")
_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "proton.me", "example.com", "icloud.com")


def pii_value(kind: str, rng: Random) -> str:
    """A realistic value of one PII kind: email, phone, card (Luhn-valid), iban
    (valid check digits), ssn or ipv4."""
    if kind == "email":
        return f"{rng.choice(_NAMES)}{rng.randint(1, 99)}@{rng.choice(_DOMAINS)}"
    if kind == "phone":
        if rng.random() < 0.5:
            return f"+1 ({rng.randint(201, 989)}) 555-{rng.randint(100, 9999):04d}"
        return f"+44 7{rng.randint(100, 999)} {rng.randint(100000, 999999)}"
    if kind == "card":
        head = rng.choice(("4", "51", "52", "53", "54", "55"))
        body = head + "".join(str(rng.randrange(10)) for _ in range(15 - len(head)))
        number = body + _luhn_digit(body)
        if rng.random() < 0.6:
            return " ".join(number[i : i + 4] for i in range(0, 16, 4))
        return number
    if kind == "iban":
        return _iban(rng)
    if kind == "ssn":
        area = rng.choice((rng.randint(1, 665), rng.randint(667, 899)))  # never 000 or 666
        return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    octets = (rng.randint(11, 223), rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254))
    return ".".join(map(str, octets))


PII_KINDS = ("email", "phone", "card", "iban", "ssn", "ipv4")
_PII_SNIPPETS = {
    "email": ("my email is {}", "reach me at {}", "email: {}", "contact me on {}"),
    "phone": ("call me on {}", "my number is {}", "phone {}", "text me at {}"),
    "card": ("my card number is {}", "card no. {}", "the card is {}", "card {}"),
    "iban": ("my IBAN is {}", "IBAN {}", "account {}", "from account {}"),
    "ssn": ("my SSN is {}", "social security number {}", "SSN {}"),
    "ipv4": ("I logged in from {}", "my IP is {}", "from IP address {}"),
}


def weave_pii(text: str, rng: Random) -> str:
    """``text`` with one PII value woven in at its start, middle or end."""
    kind = rng.choice(PII_KINDS)
    snippet = rng.choice(_PII_SNIPPETS[kind]).format(pii_value(kind, rng))
    where = rng.random()
    if where < 0.3:
        return _cap(snippet) + ". " + text
    clauses = split_clauses(text, _lang(text))
    if where < 0.55 and len(clauses) > 1:
        # Between two clauses, never inside a phrase.
        i = rng.randint(1, len(clauses) - 1)
        head, tail = " ".join(clauses[:i]), " ".join(clauses[i:])
        return f"{head} ({snippet}) {tail}"
    end = text[-1:] if text[-1:] in ".!?" else ""
    return (text[:-1] if end else text) + ", " + snippet + end
