"""PII: find emails, phone numbers, card numbers, IBANs, US SSNs and IP addresses, and
reject the candidate or redact them.

Detection is regex first, validation second: a 16-digit number is a card only if it
passes the Luhn check, an IBAN only if its country's length and the mod-97 check
digits agree, an SSN only outside the never-issued ranges. The validators are what
keep order numbers, amounts and dates from being reported.

Every pattern runs in linear time on any input (50,000 characters of digits, dots or
"@" take milliseconds): repeated groups are separated by a character they cannot
contain, so a failed attempt backtracks at most once over what it read, and patterns
that scan runs (the local part of an email, a digit run) may only start where a run
starts, so a failed attempt is not retried from inside the same run.

Patterns are ASCII (``re.ASCII``): digits are 0-9, and a boundary is an ASCII letter,
digit or underscore, so a number written right after Chinese text ("电话13812345678")
is still found. Full-width digits are not (NFKC would shift the redaction offsets).
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from synth.filters.base import Filter, FilterContext, FilterParams
from synth.records import Candidate, Decision
from synth.text import CJK_CHAR

PiiKind = Literal["email", "phone", "credit_card", "iban", "ssn", "ip_address"]
PiiAction = Literal["reject", "redact", "review"]

# Also the precedence when two detectors claim overlapping text: the stricter validator
# wins. An IBAN's digits often hold a Luhn-valid run (one in ten), and a card number is
# not a phone number.
PII_KINDS: tuple[PiiKind, ...] = ("iban", "credit_card", "ssn", "email", "ip_address", "phone")

PLACEHOLDERS: dict[PiiKind, str] = {
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "credit_card": "[CREDIT_CARD]",
    "iban": "[IBAN]",
    "ssn": "[SSN]",
    "ip_address": "[IP_ADDRESS]",
}


@dataclass(frozen=True)
class PiiSpan:
    """One detected item: ``text[start:end]`` is the PII."""

    kind: PiiKind
    start: int
    end: int


# --- validators -------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check every payment card number carries."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# Total IBAN length per country (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30,
}  # fmt: skip


def iban_valid(iban: str) -> bool:
    """Country known, length right for it, and the ISO 7064 mod-97 check equals 1."""
    iban = iban.replace(" ", "").upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit():
        return False
    if not iban.isascii() or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


# --- detectors --------------------------------------------------------------------

# The local part is ASCII: allowing any letter would swallow the Chinese text a name is
# often written against ("联系我zhang@..."); other letters right before it are added
# back in ``_emails``. Domain labels may be any letters (IDN), the TLD is ASCII.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+"
    r"@(?:[^\W_](?:[\w\-]*[^\W_])?\.)+[A-Za-z]{2,63}(?![A-Za-z0-9\-])"
)

# Contiguous 13-19 digits, or groups: 4 digits, then 4-6 (Amex 4-6-5, Diners 4-6-4),
# then up to three more, one separator throughout. Loose grouping ("1 2 3 4 ...") is
# never a card: with 10% of random digit strings passing Luhn, it would flag lists.
_CARD = re.compile(
    r"(?<![\w\-])(?:\d{13,19}|\d{4}(?P<sep>[ \-])\d{4,6}(?:(?P=sep)\d{1,5}){1,3})(?![\w]|-\d)",
    re.ASCII,
)

_IBAN_START = re.compile(r"(?<![A-Za-z0-9])(?P<cc>[A-Z]{2})\d{2}", re.ASCII)

_SSN = re.compile(
    r"(?<![\w\-])(?!000|666|9)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w]|-\d)",
    re.ASCII,
)

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\w]|\.\d)", re.ASCII)
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f:]{3,39}(?![\w:])", re.ASCII)

# Phones. International: "+" (or "00" with separators) and 8-15 digits in all (E.164).
_PHONE_INTL = re.compile(
    r"(?<![\w+])(?:\+|00)[1-9]\d{0,2}[ .\-]?(?:\(\d{1,4}\)[ .\-]?)?(?:\d[ .\-]?){5,13}\d(?!\w)",
    re.ASCII,
)
# North American: (555) 123-4567, 555-123-4567, 555.123.4567, 1-555-123-4567.
_PHONE_NANP = re.compile(
    r"(?<![\w+\-.])(?:1[ .\-]?)?(?:\(\d{3}\)[ .\-]?|\d{3}[ .\-])\d{3}[ .\-]\d{4}(?![\w]|[.\-]\d)",
    re.ASCII,
)
# National numbers with a trunk 0 (most of Europe): 020 7946 0958, 06 12 34 56 78,
# (030) 1234567. Groups need separators: a bare run of digits is an id, not a phone.
_PHONE_TRUNK = re.compile(
    r"(?<![\w+\-.])(?:\(0[1-9]\d{0,3}\)|0[1-9]\d{0,3})(?:[ .\-]\d{2,8}){1,4}(?![\w]|[.\-]\d)",
    re.ASCII,
)
# Chinese mobiles, usually written as 11 bare digits: 13812345678, 138-1234-5678.
_PHONE_CN = re.compile(r"(?<![\w+\-])1[3-9]\d(?:[ \-]?\d{4}){2}(?![\w]|-\d)", re.ASCII)

_DATE_LIKE = re.compile(
    r"(?:\d{4}[./\-](?:0?[1-9]|1[0-2])[./\-](?:0?[1-9]|[12]\d|3[01])"
    r"|(?:0?[1-9]|[12]\d|3[01])[./\-](?:0?[1-9]|[12]\d|3[01])[./\-](?:\d{4}|\d{2}))",
    re.ASCII,
)
_CURRENCY_BEFORE = re.compile(r"(?:[$€£¥₹]|USD|EUR|GBP)\s?$")
# A digit group right before ("DE88 3704 0044 0532 ..."): the number is the tail of a
# longer code (an IBAN with a bad check, an account number), not a phone.
_GROUP_BEFORE = re.compile(r"[0-9][ .\-]$")
_SSN_SHAPE = re.compile(r"\d{3}-\d{2}-\d{4}", re.ASCII)
_GROUP_END = re.compile(r"(?<=\d)[ .\-/()]+(?=\(?\d)")


def _digits(s: str) -> str:
    return "".join(ch for ch in s if "0" <= ch <= "9")


def _longest_valid(
    pattern: re.Pattern[str], text: str, valid: Callable[[int, int], bool]
) -> Iterator[tuple[int, int]]:
    """Matches of ``pattern``, each cut back group by group to its longest valid prefix.

    A greedy match can run into a number written after the real one ("card 4111 1111
    1111 1111 2024"). The next search starts where the accepted prefix ends, so that
    number is still looked at on its own.
    """
    pos = 0
    while m := pattern.search(text, pos):
        start = m.start()
        cuts = [g.start() for g in _GROUP_END.finditer(text, start, m.end())]
        pos = m.end()
        for end in (m.end(), *reversed(cuts)):
            if valid(start, end):
                yield start, end
                pos = end
                break


def _emails(text: str) -> Iterator[tuple[int, int]]:
    for m in _EMAIL.finditer(text):
        start, end = m.span()
        at = text.index("@", start, end)
        while start < at and text[start] == ".":  # "...name@" is punctuation, then a name
            start += 1
        if start == at:
            continue
        # "maría@": the regex started after the "í"; take the whole name.
        while start > 0 and text[start - 1].isalnum() and not CJK_CHAR.match(text, start - 1):
            start -= 1
        yield start, end


def _cards(text: str) -> Iterator[tuple[int, int]]:
    def valid(start: int, end: int) -> bool:
        digits = _digits(text[start:end])
        return 13 <= len(digits) <= 19 and luhn_valid(digits)

    return _longest_valid(_CARD, text, valid)


def _ibans(text: str) -> Iterator[tuple[int, int]]:
    for m in _IBAN_START.finditer(text):
        length = IBAN_LENGTHS.get(m.group("cc"))
        if length is None:
            continue
        # Walk the rest: the printed form puts single spaces between groups.
        i, need, n = m.end(), length - 4, len(text)
        while need and i < n:
            ch = text[i]
            if ch.isascii() and (ch.isdigit() or ch.isupper()):
                need -= 1
                i += 1
            elif ch == " " and i + 1 < n and text[i + 1].isascii() and text[i + 1].isalnum():
                i += 1
            else:
                break
        if need or (i < n and text[i].isascii() and text[i].isalnum()):
            continue
        if iban_valid(text[m.start() : i]):
            yield m.start(), i


def _ssns(text: str) -> Iterator[tuple[int, int]]:
    for m in _SSN.finditer(text):
        yield m.span()


def _ips(text: str) -> Iterator[tuple[int, int]]:
    for m in _IPV4.finditer(text):
        yield m.span()
    for m in _IPV6.finditer(text):
        s = m.group()
        # Short forms ("::1", "fe80::1") look like code ("a[1::2]", "std::"); at least
        # three groups make an address unambiguous.
        if sum(1 for g in s.split(":") if g) < 3:
            continue
        try:
            ipaddress.IPv6Address(s)
        except ValueError:
            continue
        yield m.span()


def _looks_like_phone(text: str, start: int, end: int, international: bool) -> bool:
    span = text[start:end]
    if _GROUP_BEFORE.search(text, max(0, start - 2), start) or _SSN_SHAPE.fullmatch(span):
        return False
    n = len(_digits(span))
    if international:
        # "00" numbers need a separator: "0012345678" is an id with leading zeros.
        if span.startswith("00") and not any(ch in " .-()" for ch in span):
            return False
        return 8 <= n <= 15
    # A date, maybe with a time after it ("01-02-2024 12:00"); "06.12.34.56.78" is not.
    if _DATE_LIKE.fullmatch(span.split(" ", 1)[0]):
        return False
    if _CURRENCY_BEFORE.search(text, max(0, start - 4), start):
        return False
    return 7 <= n <= 12


def _phones(text: str) -> Iterator[tuple[int, int]]:
    def international(start: int, end: int) -> bool:
        return _looks_like_phone(text, start, end, international=True)

    def national(start: int, end: int) -> bool:
        return 9 <= len(_digits(text[start:end])) <= 12 and _looks_like_phone(
            text, start, end, international=False
        )

    yield from _longest_valid(_PHONE_INTL, text, international)
    for pattern in (_PHONE_NANP, _PHONE_CN):
        for m in pattern.finditer(text):
            if _looks_like_phone(text, m.start(), m.end(), international=False):
                yield m.span()
    yield from _longest_valid(_PHONE_TRUNK, text, national)


_DETECTORS: dict[PiiKind, Callable[[str], Iterator[tuple[int, int]]]] = {
    "credit_card": _cards,
    "iban": _ibans,
    "ssn": _ssns,
    "email": _emails,
    "ip_address": _ips,
    "phone": _phones,
}


_MAYBE_PII = re.compile(r"[\d@:]")


def find_pii(text: str, kinds: Iterable[PiiKind] = PII_KINDS) -> list[PiiSpan]:
    """Non-overlapping PII spans of the given kinds in ``text``, in text order.

    Where detectors overlap, the kind earlier in :data:`PII_KINDS` wins, then the
    longer span.
    """
    if not _MAYBE_PII.search(text):
        return []  # every kind needs a digit, an "@" or (IPv6) a ":"
    wanted = set(kinds)
    found: list[PiiSpan] = []
    starts: list[int] = []  # sorted starts of the spans taken so far, which never overlap
    ends: list[int] = []
    for kind in PII_KINDS:
        if kind not in wanted:
            continue
        spans = sorted(set(_DETECTORS[kind](text)), key=lambda s: (s[0] - s[1], s[0]))
        for start, end in spans:
            i = bisect.bisect_left(starts, start)
            if (i > 0 and ends[i - 1] > start) or (i < len(starts) and starts[i] < end):
                continue
            starts.insert(i, start)
            ends.insert(i, end)
            found.append(PiiSpan(kind, start, end))
    return sorted(found, key=lambda s: s.start)


def redact(text: str, spans: Sequence[PiiSpan]) -> str:
    """``text`` with each span replaced by its kind's placeholder, e.g. ``[EMAIL]``."""
    parts, last = [], 0
    for span in sorted(spans, key=lambda s: s.start):
        parts += [text[last : span.start], PLACEHOLDERS[span.kind]]
        last = span.end
    parts.append(text[last:])
    return "".join(parts)


# --- the filter -------------------------------------------------------------------


class PiiParams(FilterParams):
    """Settings of the PII filter.

    action: what to do with a candidate that contains PII. "reject" (default) drops
        it: synthetic data should not need real-looking personal data, and a dropped
        row only costs a regeneration. "redact" keeps it with each item replaced by a
        placeholder ([EMAIL], [PHONE], ...), for data where the shape of a message with
        contact details matters (support tickets); the row is then no longer what the
        model wrote. "review" sends it to a human.
    kinds: the detectors that run (default all). Drop one that misfires on your
        domain: "ip_address" flags four-part version numbers (1.2.3.4), "phone" any
        "+" followed by 8-15 digits.
    actions: per-kind override of ``action``, e.g. ``{ email = "redact" }``. When
        a candidate has several kinds, the strictest action applies (reject, then
        review, then redact).
    """

    kind: Literal["pii"] = "pii"
    action: PiiAction = "reject"
    kinds: tuple[PiiKind, ...] = Field(default=PII_KINDS, min_length=1, strict=False)
    actions: dict[PiiKind, PiiAction] = Field(default_factory=dict)


class PiiFilter(Filter):
    """Scans the text field and every other string in the candidate's data (not the
    label). Reasons name the kinds found, never the values: ``pii: credit_card, email``.
    The score is the number of items found."""

    name = "pii"
    version = "1"

    def __init__(self, params: PiiParams, ctx: FilterContext) -> None:
        self.params = params
        self.ctx = ctx

    def decide(self, batch: Sequence[Candidate]) -> list[Decision]:
        return [self._decide(c) for c in batch]

    def _decide(self, c: Candidate) -> Decision:
        spans_by_kind: dict[PiiKind, int] = {}
        scanned: dict[str, list[PiiSpan]] = {}

        def scan(text: str) -> list[PiiSpan]:
            if text not in scanned:
                scanned[text] = find_pii(text, self.params.kinds)
                for s in scanned[text]:
                    spans_by_kind[s.kind] = spans_by_kind.get(s.kind, 0) + 1
            return scanned[text]

        data = {k: v for k, v in c.data.items() if k != self.ctx.label_field}
        _walk(data, scan)
        if self.ctx.text_field not in c.data:
            scan(c.text)
        if not spans_by_kind:
            return self.keep(c, score=0.0)

        kinds = [k for k in PII_KINDS if k in spans_by_kind]
        actions = {k: self.params.actions.get(k, self.params.action) for k in kinds}
        score = float(sum(spans_by_kind.values()))
        listed = ", ".join(kinds)
        if "reject" in actions.values():
            return self.reject(c, f"pii: {listed}", score=score)

        to_redact = {k for k, a in actions.items() if a == "redact"}

        def rewrite(text: str) -> str:
            return redact(text, [s for s in scan(text) if s.kind in to_redact])

        edited = {
            k: (v if k == self.ctx.label_field else _walk(v, rewrite)) for k, v in c.data.items()
        }
        if "review" in actions.values():
            decision = self.review(c, f"pii: {listed}", score=score)
        else:
            decision = self.keep(c, score=score, reason=f"pii_redacted: {listed}")
        if to_redact:
            decision = decision.model_copy(update={"edited_data": edited})
        return decision


def _walk(value: Any, fn: Callable[[str], Any]) -> Any:
    """Apply ``fn`` to every string in a JSON-like value; returns the rebuilt value."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: _walk(v, fn) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_walk(v, fn) for v in value)
    return value
