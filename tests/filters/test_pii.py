"""The PII filter: each detector's positives and hard negatives, actions, redaction."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from synth.filters.base import FilterContext
from synth.filters.chain import FilterChain
from synth.filters.diversity import DiversityFilter, DiversityParams
from synth.filters.pii import (
    PII_KINDS,
    PiiFilter,
    PiiParams,
    find_pii,
    iban_valid,
    luhn_valid,
    redact,
)
from synth.records import Candidate, CellKey, Verdict

CTX = FilterContext(root=Path("."), text_field="text", label_field="label")
CELL = CellKey(slice="default", label="support")


def cand(text: str, i: int = 0, **extra: object) -> Candidate:
    return Candidate(
        id=f"ex_{i}",
        run_id="run_1",
        cell=CELL,
        text=text,
        data={"text": text, "label": "support", **extra},
        llm_call_id="call_1",
        index=i,
        template="t",
        template_sha="0" * 64,
        model="m",
    )


def decide(text: str, **settings: Any):
    [d] = PiiFilter(PiiParams(**settings), CTX).decide([cand(text)])
    return d


# (text, verdict, reason) with the default action, reject.
CASES = [
    # email
    ("write to john.doe+billing@example.co.uk today", "reject", "pii: email"),
    ("contacto: maría.lópez@correo.es", "reject", "pii: email"),
    ("请联系我：zhang.wei@example.com谢谢", "reject", "pii: email"),
    ("mention @support on twitter or mail support at example dot com", "keep", ""),
    ("the user@localhost account", "keep", ""),  # no dot-TLD: not an address
    # phone
    ("call me on +44 20 7946 0958 after six", "reject", "pii: phone"),
    ("my number is +1 (555) 123-4567", "reject", "pii: phone"),
    ("call (555) 123-4567 or 555.123.4567", "reject", "pii: phone"),
    ("toll free 1-800-555-0199", "reject", "pii: phone"),
    ("Ruf mich an: 030 1234567", "reject", "pii: phone"),
    ("appelez le 06 12 34 56 78 ou 06.12.34.56.78", "reject", "pii: phone"),
    ("mi móvil es +34 612 345 678", "reject", "pii: phone"),
    ("我的电话是13812345678，请回电", "reject", "pii: phone"),
    ("from abroad dial 0044 20 7946 0958", "reject", "pii: phone"),
    ("order 123456 was shipped", "keep", ""),
    ("order #1234567890 and tracking 00123456789", "keep", ""),
    ("I paid $1,250.00 on 2024-01-15", "keep", ""),
    ("the invoice of 15.01.2024 at 10:30, and 01/02/2024", "keep", ""),
    ("meeting on 01-02-2024 12:00 in room 4", "keep", ""),
    ("back in 2019 it cost €1.250.000, or 1 250 000 dollars", "keep", ""),
    ("steps 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16", "keep", ""),
    ("budget of 500-1000 dollars for 3-5 people", "keep", ""),
    # credit card
    ("card 4111 1111 1111 1111 exp 12/27", "reject", "pii: credit_card"),
    ("card 4111-1111-1111-1111", "reject", "pii: credit_card"),
    ("card 4111111111111111", "reject", "pii: credit_card"),
    ("amex 3782 822463 10005", "reject", "pii: credit_card"),
    ("cards 4111 1111 1111 1111 5500 0000 0000 0004", "reject", "pii: credit_card"),
    ("card 4111 1111 1111 1112", "keep", ""),  # fails Luhn
    ("ref 4111111111111112", "keep", ""),  # 16 digits, fails Luhn
    # IBAN
    ("IBAN DE89 3704 0044 0532 0130 00", "reject", "pii: iban"),
    ("pay to GB82WEST12345698765432 by Friday", "reject", "pii: iban"),
    # Its digits "3416 4232 4315 48" pass Luhn: the IBAN must win over a card.
    ("account GB71 NWBK 3416 4232 4315 48", "reject", "pii: iban"),
    ("IBAN DE88 3704 0044 0532 0130 00", "keep", ""),  # check digits wrong
    ("IBAN DE89 3704 0044 0532 0130 0", "keep", ""),  # one digit short for DE
    ("IBAN XY89 3704 0044 0532 0130 00", "keep", ""),  # XY is no IBAN country
    # SSN
    ("SSN 123-45-6789", "reject", "pii: ssn"),
    ("SSN 000-12-3456", "keep", ""),
    ("SSN 666-12-3456 or 900-12-3456", "keep", ""),
    ("SSN 123-00-4567 or 123-45-0000", "keep", ""),
    # IP addresses
    ("the server is at 192.168.1.1.", "reject", "pii: ip_address"),
    ("host 2001:db8:85a3::8a2e:370:7334 is down", "reject", "pii: ip_address"),
    ("999.1.1.1 and 256.1.1.1 are not addresses", "keep", ""),
    ("version 1.2.3.4.5, at 12:30:45, slice a[1::2], std::vector", "keep", ""),
    # several kinds, in the fixed order of PII_KINDS
    ("mail a@b.io or card 4111 1111 1111 1111", "reject", "pii: credit_card, email"),
    # Unicode, no PII
    ("¿Cómo solicito un reembolso de mi compra?", "keep", ""),
    ("我想申请退款，因为商品有问题。订单号：123456", "keep", ""),
    ("", "keep", ""),
]


@pytest.mark.parametrize(("text", "verdict", "reason"), CASES)
def test_detects(text: str, verdict: str, reason: str) -> None:
    d = decide(text)
    assert (d.verdict.value, d.reason) == (verdict, reason)
    assert d.edited_data is None


@pytest.mark.parametrize(
    ("text", "redacted", "reason"),
    [
        ("mail john@example.com now", "mail [EMAIL] now", "pii_redacted: email"),
        (
            "card 4111 1111 1111 1111, call +1 (555) 123-4567",
            "card [CREDIT_CARD], call [PHONE]",
            "pii_redacted: credit_card, phone",
        ),
        ("请联系我：zhang.wei@example.com谢谢", "请联系我：[EMAIL]谢谢", "pii_redacted: email"),
        (
            "IBAN: ES91 2100 0418 4502 0005 1332. SSN 123-45-6789; ip 10.0.0.1",
            "IBAN: [IBAN]. SSN [SSN]; ip [IP_ADDRESS]",
            "pii_redacted: iban, ssn, ip_address",
        ),
    ],
)
def test_redacts(text: str, redacted: str, reason: str) -> None:
    d = decide(text, action="redact")
    assert d.verdict is Verdict.KEEP
    assert d.reason == reason
    assert d.edited_data == {"text": redacted, "label": "support"}
    assert decide(redacted, action="redact").reason == ""  # nothing left to find


def test_redacts_every_string_field_but_the_label() -> None:
    c = cand(
        "reach me at ana@example.org",
        reply="Sure, call 020 7946 0958",
        notes=["a@b.io", {"deep": "4111 1111 1111 1111"}],
        count=3,
    )
    [d] = PiiFilter(PiiParams(action="redact"), CTX).decide([c])
    assert d.edited_data == {
        "text": "reach me at [EMAIL]",
        "label": "support",
        "reply": "Sure, call [PHONE]",
        "notes": ["[EMAIL]", {"deep": "[CREDIT_CARD]"}],
        "count": 3,
    }
    assert d.reason == "pii_redacted: credit_card, email, phone"
    assert d.score == 4.0
    assert c.data["text"] == "reach me at ana@example.org"  # the original is untouched


def test_pii_in_another_field_rejects() -> None:
    [d] = PiiFilter(PiiParams(), CTX).decide([cand("no pii here", reply="SSN 123-45-6789")])
    assert (d.verdict, d.reason) == (Verdict.REJECT, "pii: ssn")


def test_the_original_never_appears_in_reason_or_score() -> None:
    secrets = ["ana@example.org", "4111 1111 1111 1111", "123-45-6789", "+44 20 7946 0958"]
    text = "data: " + "; ".join(secrets)
    for action in ("reject", "redact", "review"):
        d = decide(text, action=action)
        for s in secrets:
            assert s not in d.reason
            assert s not in str(d.score)
            assert s not in str(d.edited_data)
        assert d.score == 4.0


def test_per_kind_actions_and_kinds() -> None:
    text = "mail ana@example.org, SSN 123-45-6789"
    d = decide(text, action="redact", actions={"ssn": "reject"})
    assert (d.verdict, d.reason, d.edited_data) == (Verdict.REJECT, "pii: ssn, email", None)
    d = decide(text, actions={"email": "redact", "ssn": "redact"})
    assert d.verdict is Verdict.KEEP and d.edited_data["text"] == "mail [EMAIL], SSN [SSN]"
    d = decide(text, action="redact", actions={"ssn": "review"})
    assert (d.verdict, d.reason) == (Verdict.REVIEW, "pii: ssn, email")
    assert d.edited_data["text"] == "mail [EMAIL], SSN 123-45-6789"  # the reviewer sees it
    d = decide(text, kinds=["email"])
    assert d.reason == "pii: email"
    assert decide("SSN 123-45-6789", kinds=["email", "phone"]).verdict is Verdict.KEEP


def test_params() -> None:
    p = PiiParams()
    assert (p.kind, p.action, p.kinds, p.actions) == ("pii", "reject", PII_KINDS, {})
    p = PiiParams.model_validate({"kind": "pii", "action": "redact", "kinds": ["email"]})
    assert p.kinds == ("email",)
    bad: dict[str, Any]
    for bad in ({"kinds": []}, {"kinds": ["passport"]}, {"action": "drop"}, {"actions": {"x": 1}}):
        with pytest.raises(ValidationError):
            PiiParams.model_validate(bad)


def test_validators() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("378282246310005")
    assert not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and iban_valid("NO9386011117947")
    assert not iban_valid("GB82 TEST 1234 5698 7654 32")
    assert not iban_valid("XX82 WEST 1234 5698 7654 32")
    assert not iban_valid("GB82 WEST 1234 5698 7654 3")


def random_card(rng: random.Random) -> str:
    body = rng.choice(["4", "51", "55", "34", "6011"])
    body += "".join(str(rng.randrange(10)) for _ in range(15 - len(body)))
    check = next(str(d) for d in range(10) if luhn_valid(body + str(d)))
    number = body + check
    return " ".join(number[i : i + 4] for i in range(0, 16, 4)) if rng.random() < 0.5 else number


def random_iban(rng: random.Random) -> str:
    country, length = rng.choice([("DE", 22), ("FR", 27), ("ES", 24), ("NL", 18), ("NO", 15)])
    bban = "".join(str(rng.randrange(10)) for _ in range(length - 4))
    if country == "NL":
        bban = "ABNA" + bban[4:]
    numeric = int("".join(str(int(ch, 36)) for ch in bban + country + "00"))
    iban = f"{country}{98 - numeric % 97:02d}{bban}"
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.5 else iban


def test_generated_cards_and_ibans_are_found_whole_and_as_their_kind() -> None:
    rng = random.Random(11)
    for _ in range(500):
        for kind, value in (("credit_card", random_card(rng)), ("iban", random_iban(rng))):
            text = f"please use {value}, thanks"
            spans = find_pii(text)
            assert [(s.kind, text[s.start : s.end]) for s in spans] == [(kind, value)]


def test_overlaps_go_to_the_stricter_kind() -> None:
    spans = find_pii("4111 1111 1111 1111")
    assert [(s.kind, s.start, s.end) for s in spans] == [("credit_card", 0, 19)]
    text = "a 555-123-4567 b"
    assert redact(text, find_pii(text)) == "a [PHONE] b"


@pytest.mark.parametrize(
    "text",
    [
        "a" * 50_000,
        "1" * 50_000,
        "1 " * 25_000,
        "1-" * 25_000,
        "a@" * 25_000,
        "a." * 25_000,
        "x" * 40_000 + "@" + "a." * 5_000,
        "a:" * 25_000,
        "1." * 25_000,
        "+1 " * 16_000,
        "DE89 " * 10_000,
        "0" * 50_000,
        "".join(random.Random(0).choice("0123456789 .-+()@:aZ") for _ in range(50_000)),
    ],
    ids=lambda t: repr(t[:6]),
)
def test_long_adversarial_text_is_linear(text: str) -> None:
    start = time.perf_counter()
    find_pii(text)
    assert time.perf_counter() - start < 0.5


def test_long_text_with_pii_at_the_end() -> None:
    text = "lorem ipsum dolor sit amet, " * 1800 + "mail ana@example.org"
    assert len(text) > 50_000
    start = time.perf_counter()
    d = decide(text, action="redact")
    assert time.perf_counter() - start < 0.5
    assert d.edited_data["text"].endswith("mail [EMAIL]")


def test_chain_passes_the_redacted_text_on() -> None:
    chain = FilterChain(
        [
            PiiFilter(PiiParams(action="redact"), CTX),
            DiversityFilter(DiversityParams(), CTX),
        ],
        CTX.text_field,
    )
    chain.prepare([])
    [o] = chain.decide([cand("write to ana@example.org about the refund")])
    assert o.verdict is Verdict.KEEP and [d.filter for d in o.edits] == ["pii"]
    assert o.original is not None and "ana@example.org" in o.original.text
    assert o.candidate.text == "write to [EMAIL] about the refund"
    assert o.candidate.data["text"] == o.candidate.text
