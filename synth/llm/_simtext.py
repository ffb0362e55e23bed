"""The simulator's text engine: read a generation request, write the reply's items.

It stands in for a model, so it has to look like one to the filters downstream
(distinct, on-topic paraphrases with a controlled share of planted faults) while
costing a few tens of microseconds per item: everything here is table lookups,
one-pass regexes and ``random.Random`` draws, with no per-request compilation.

Items are word-level paraphrases and recombinations of the few-shot examples found
in the prompt: clauses of one or two shots are recombined, common words and phrases
are swapped for synonyms, and light openers, closers and casing changes are added.
Text in other languages is recombined too; synonyms apply only where the tables
know the words (a little Spanish and Chinese, mostly English).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from random import Random
from typing import Any

# ---------------------------------------------------------------------------
# Tables

# Each line is a word and what may replace it. Meanings are loose on purpose: a model
# asked for "varied wording" drifts the same way.
_EN_GROUPS = """
card | bank card | debit card
cards | bank cards
account | bank account | acct
money | funds | cash
funds | money | balance
cash | money
balance | account balance | available balance
transfer | transaction | bank transfer
transfers | transactions
transaction | payment | transfer
transactions | payments
payment | transaction | purchase
payments | transactions | purchases
purchase | payment | transaction
refund | reimbursement | money back
fee | charge | extra charge
fees | charges
charge | fee
problem | issue | trouble
problems | issues
issue | problem
question | query
support | help | assistance
app | application | mobile app
phone | mobile | cell
password | passcode
pin | PIN code
delivery | shipping | shipment
order | request
package | parcel
week | 7 days
month | 30 days
today | this morning
yesterday | last night
bank | banking provider
info | information | details
information | info | details
details | info | information
status | progress
reason | cause
mistake | error
error | mistake | glitch
glitch | bug | error
location | place
address | home address
country | place
abroad | overseas
wallet | purse
bag | handbag
store | shop
shop | store
merchant | seller | vendor
website | site
need | require
want | would like | need
wanted | needed | would like
receive | get
received | got
arrived | come | shown up | turned up | been delivered
arrive | come | show up | turn up | be delivered
charged | billed
send | mail | post
sent | mailed | posted | dispatched
check | verify
checked | verified
fix | resolve | repair
cancel | block | deactivate
cancelled | blocked | stopped
lost | misplaced
stolen | taken
working | functioning
work | function
failed | did not go through | was declined
fails | keeps failing
tell | inform
explain | clarify
see | notice | spot
saw | noticed | spotted
find | locate
waiting | waiting around
added | put in | topped up
happened | occurred
happening | going on
shows | says | displays
show | display
try | attempt
tried | attempted
ordered | requested
track | trace
update | change
change | modify | update
changed | modified | updated
replace | swap
buy | purchase
bought | purchased
withdraw | take out
withdrew | took out
use | utilise
used | utilised
expect | anticipate
expected | anticipated
report | flag
reported | flagged
verify | confirm
confirm | verify
unlock | unblock
freeze | lock
activate | enable
still | even now
yet | so far
why | for what reason
please | pls | kindly
new | replacement
wrong | incorrect
correct | right
quickly | fast | soon
immediately | right away | urgently
soon | shortly
urgent | pressing
recently | lately
already | by now
again | once more
usually | normally | typically
really | truly
very | really | super
wrong | off
weird | strange | odd
strange | weird | odd
unexpected | surprising
extra | additional
additional | extra
current | latest
foreign | overseas | international
online | on the internet
broken | damaged
declined | rejected | refused
rejected | declined | refused
missing | gone
disappeared | vanished | gone missing
pending | on hold
possible | doable
able | allowed
okay | ok | fine
hi | hello | hey
hello | hi | hey
hey | hi | hello
thanks | thank you | cheers
atm | cash machine | ATM machine
atms | cash machines
withdrawal | cash withdrawal
virtual | online | digital
identity | ID
showing | displaying
statement | bank statement
currencies | foreign currencies
amount | sum
think | believe | feel
someone | somebody
verification | check
another | one more
trying | attempting
limit | cap
transferred | sent | moved
physical | plastic
accept | take
cost | price
deposited | paid in | put in
seems | appears | looks
seem | appear
noticed | saw | spotted
earlier | before | previously
twice | two times
thought | believed
says | shows | states
recognize | recognise | know
recognise | recognize | know
beneficiary | payee | recipient
seller | merchant | vendor
friend | mate | buddy
requested | asked for
incorrect | wrong
free | free of charge
done | finished | completed
applied | charged | added
multiple | several
found | discovered | spotted
purchased | bought
machine | terminal
fraudulent | fake | dodgy
fraud | scam
unauthorized | unauthorised | unknown
suspicious | dodgy | shady
steps | process
instructions | directions
contact | reach
tracking | shipping
expired | run out
blocked | frozen | locked
charge | fee
write | compose | draft
create | make | produce
make | create
give | provide | offer
provide | give | offer
describe | explain | outline
summarize | sum up
summarise | sum up
generate | produce | come up with
identify | find | determine
determine | figure out | work out
suggest | recommend | propose
recommend | suggest
translate | render
classify | categorize
rewrite | rephrase
convert | turn
short | brief
brief | short
simple | basic
good | great | nice
great | excellent | good
bad | poor
best | top
example | sample
examples | samples
story | tale
article | piece
text | passage
people | folks | individuals
person | individual
important | key | crucial
different | various
way | method | approach
ways | methods
tips | suggestions | pointers
ideas | suggestions
answer | reply | response
reply | answer | response
word | term
words | terms
healthy | fit
benefits | advantages
advantages | benefits
difference | distinction
similar | alike
list | set
following | below
given | provided
main | primary
common | typical
easy | simple
quick | fast
large | big
big | large
small | little
happy | glad
sad | unhappy
angry | annoyed | upset
worried | concerned | anxious
annoyed | frustrated | irritated
explain | describe
"""

# Multi-word phrases (and contractions) swapped as a whole, before words are.
_EN_PHRASES = """
has not | hasn't
hasn't | has not
have not | haven't
haven't | have not
do not | don't
don't | do not
does not | doesn't
doesn't | does not
did not | didn't
didn't | did not
is not | isn't
isn't | is not
are not | aren't
was not | wasn't
cannot | can't | am unable to
can't | cannot
will not | won't
won't | will not
I am | I'm
I'm | I am
it is | it's
it's | it is
what is | what's
what's | what is
I've | I have
I would like to | I'd like to | I want to | I wish to
I'd like to | I would like to | I want to
I want to | I'd like to | I would like to
I need to | I have to | I must
can you | could you | would you | can u
could you | can you | would you
how long | how much time
how do I | how can I | how should I
why do I | how come I | what's the reason I
how can I | how do I
what should I do | what do I do | what are my options
as soon as possible | asap | quickly
a lot of | lots of | plenty of
right now | at the moment | currently
at the moment | right now | currently
a week | seven days | one week
two weeks | a fortnight | 14 days
a few days | several days | some days
top up | top-up | topup
top-up | top up | topup
exchange rate | conversion rate | FX rate
exchange rates | conversion rates | FX rates
bank transfer | wire transfer
what happened | what went wrong | what's going on
what is happening | what is going on | what's happening
what is going on | what is happening
thank you | thanks | many thanks
in the post | in the mail
go through | get through | work
went through | was processed | worked
show up | appear | turn up
get here | arrive | show up
find out | learn | figure out
I don't know | I have no idea | I'm not sure
I do not know | I have no idea | I'm not sure
want to know | would like to know | need to know
what do I need to do | what should I do | what are the steps
there is | there's
there's | there is
has been | was
let me know | tell me
tell me | let me know
is there any way | is there a way | is it possible
is there a way | is there any way
for example | for instance
in order to | to
a number of | several | some
a couple of | a few | two
topping up | adding money | putting money in
top up my account | add money to my account | put money in my account
does it take | will it take
it says | it shows | the app says
make sure | ensure
can you help | could you assist | can you assist
need help | need assistance | need support
please help | please assist
look into | check on
"""

_ES_GROUPS = """
tarjeta | tarjeta bancaria | tarjeta de débito
dinero | plata | fondos
cuenta | cuenta bancaria
ayuda | apoyo | asistencia
necesito | quiero | requiero
quiero | necesito | quisiera
todavía | aún
llegado | llegó
problema | inconveniente | fallo
pago | cargo | transacción
transferencia | transacción | envío
comisión | cargo | tarifa
recibido | llegado
nueva | otra
perdí | extravié
robaron | quitaron
rápido | pronto | urgente
ahora | ya
por qué | cómo es que
hola | buenas | buenos días
gracias | muchas gracias | mil gracias
"""

# Chinese has no spaces: substring swaps, applied with str.replace.
_ZH_SWAPS = (
    ("银行卡", ("卡片", "卡")),
    ("还没", ("仍未", "还没有")),
    ("为什么", ("为何", "怎么")),
    ("怎么", ("如何", "怎样")),
    ("帮助", ("帮忙", "协助")),
    ("需要", ("想要", "要")),
    ("收到", ("拿到", "接到")),
    ("钱", ("资金", "款项")),
    ("转账", ("汇款", "转款")),
    ("手续费", ("费用", "服务费")),
    ("账户", ("帐户", "账号")),
    ("问题", ("情况", "麻烦")),
    ("已经", ("都", "早已")),
    ("请", ("麻烦", "请您")),
)

_EN_OPENERS = (
    "hi,",
    "hello,",
    "hey,",
    "hi there,",
    "quick question:",
    "hello team,",
    "good morning,",
    "sorry to bother you,",
    "excuse me,",
    "help!",
    "ok so,",
    "hey guys,",
    "question:",
    "um,",
)
_EN_CLOSERS = (
    "thanks",
    "thank you",
    "thanks!",
    "asap",
    "please help",
    "any ideas?",
    "cheers",
    "thanks in advance",
    "appreciate it",
    "please advise",
    "help please",
    "what can I do?",
    "pls",
)
_ES_OPENERS = ("hola,", "buenas,", "una pregunta:", "disculpa,", "buenos días,")
_ES_CLOSERS = ("gracias", "por favor", "urgente", "¡gracias!", "ayuda por favor")
_ZH_OPENERS = ("你好，", "您好，", "请问，", "麻烦问一下，", "客服你好，")
_ZH_CLOSERS = ("谢谢！", "急！", "请尽快处理。", "多谢。", "在线等。")

_ES_MARKERS = frozenset(
    "mi mis el los las una que por para cómo qué dónde cuándo tarjeta cuenta dinero"
    " todavía aún ha he hay quiero necesito puedo está es pero porque".split()
)
_EN_CONJUNCTIONS = frozenset(("and", "but", "so", "because", "or", "y", "pero", "porque"))
# Words that keep their capital when a clause moves behind a comma.
_KEEP_CAPITAL = frozenset(("I", "I'm", "I've", "I'd", "I'll"))

_PUNCT = ".,;:!?\"'()[]{}¿¡…“”‘’"
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
_SPLIT = re.compile(
    r"(?<=[,;:.!?])\s+|\s+(?=(?:and|but|so|because|y|pero|porque)\s)", re.IGNORECASE
)
_CJK_SPLIT = re.compile(r"(?<=[，。！？；、,!?;])")
_NORM = re.compile(r"[\W_]+")
_N_EXAMPLES = re.compile(r"(\d+)\s+(?:new\s+)?examples?\b", re.IGNORECASE)
_LABEL_QUOTED = re.compile(r"\blabel\b\s*[:=]?\s*[\"“']([^\"”'\n]{1,100})[\"”']", re.IGNORECASE)
_LABEL_BARE = re.compile(r"\blabel\b\s*[:=]\s*([^\s,;()\"'“”]{1,100})", re.IGNORECASE)
MAX_ITEMS = 500
_GLUE = "\x00"


def _groups(text: str) -> dict[str, tuple[str, ...]]:
    # Directed: only the first word of a line is a key. Making every member a key
    # would turn "post" (the noun, in "in the post") into "send".
    table: dict[str, list[str]] = {}
    for line in text.strip().splitlines():
        key, *alts = (m.strip() for m in line.split("|"))
        known = table.setdefault(key.lower(), [])
        known.extend(a for a in alts if a and a not in known)
    return {k: tuple(v) for k, v in table.items() if v}


def _phrases(text: str) -> tuple[re.Pattern[str], dict[str, tuple[str, ...]]]:
    table: dict[str, tuple[str, ...]] = {}
    for line in text.strip().splitlines():
        first, *rest = (m.strip() for m in line.split("|"))
        table[first.lower()] = tuple(rest)
    pattern = re.compile(r"(?<![\w'-])" + _trie_regex(table) + r"(?![\w'-])", re.IGNORECASE)
    return pattern, table


def _trie_regex(words: Iterable[str]) -> str:
    """One regex for many phrases, factored by common prefix: ``re`` tries plain
    alternatives one by one at every position, a trie only where a prefix matches
    (three times faster here)."""
    trie: dict[str, Any] = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        alts = [re.escape(ch) + build(sub) for ch, sub in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        # Greedy optional: the longest phrase wins ("I want to" over "I want").
        return "(?:" + body + ")?" if "" in node else body

    return build(trie)


EN_SYNONYMS = _groups(_EN_GROUPS)
ES_SYNONYMS = _groups(_ES_GROUPS)
_EN_PHRASE_RE, _EN_PHRASE_TABLE = _phrases(_EN_PHRASES)

# ---------------------------------------------------------------------------
# Reading the request


@dataclass
class Task:
    """What one request asks for, as read from its messages and response_format.

    ``fields`` maps each field of an item to a kind: ``label``, ``text`` (the main
    free-text field), ``string`` (other free text), ``copy`` (short categorical
    strings, copied from a shot), ``integer``, ``number``, ``boolean``, ``enum`` or
    ``any``; ``enums`` holds the allowed values of ``enum`` fields.
    """

    n: int
    label_field: str | None
    label: str | None
    fields: dict[str, str]
    required: list[str]
    text_field: str | None
    shots: list[dict[str, Any]]
    contrast: list[dict[str, Any]]
    prompt_chars: int
    enums: dict[str, list[Any]] = field(default_factory=dict)


def _message_texts(messages: list[Any]) -> tuple[list[str], str]:
    """Every message's text, and the last user message's text."""
    texts: list[str] = []
    last_user = ""
    for m in messages:
        if not isinstance(m, dict):
            raise ValueError("each message must be an object")
        content = m.get("content")
        if isinstance(content, str):
            text = content
        elif isinstance(content, list):
            text = "\n".join(
                p.get("text", "") for p in content if isinstance(p, dict) and p.get("text")
            )
        else:
            text = ""
        texts.append(text)
        if m.get("role") == "user":
            last_user = text
    return texts, last_user


def _json_lines(texts: list[str]) -> list[dict[str, Any]]:
    rows = []
    for text in texts:
        if "{" not in text:
            continue
        for line in text.splitlines():
            s = line.strip()
            if not s.endswith("}"):
                continue
            # Allow a short bullet or number before the object ("- {...}", "3. {...}").
            i = s.find("{")
            if i < 0 or i > 4:
                continue
            try:
                obj = json.loads(s[i:])
            except ValueError:
                continue
            # A reply quoted back in a multi-turn prompt is not an example.
            if isinstance(obj, dict) and obj and not isinstance(obj.get("examples"), list):
                rows.append(obj)
    return rows


def _item_schema(fmt: Any) -> tuple[dict[str, Any] | None, int | None]:
    """The schema of one item and the requested count, from a json_schema format."""
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None, None
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        return None, None
    array = schema if schema.get("type") == "array" else None
    props = schema.get("properties")
    if array is None and isinstance(props, dict):
        array = props.get("examples")
        if not (isinstance(array, dict) and array.get("type") == "array"):
            array = next(
                (p for p in props.values() if isinstance(p, dict) and p.get("type") == "array"),
                None,
            )
    if not isinstance(array, dict):
        return None, None
    n = array.get("maxItems") or array.get("minItems")
    items = array.get("items")
    if not isinstance(items, dict) or not isinstance(items.get("properties"), dict):
        items = None
    return items, int(n) if isinstance(n, int) and n > 0 else None


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "any"


def _label_from_prompt(text: str) -> str | None:
    # JSON lines mention "label" too; only the prose counts.
    prose = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("{"))
    best: tuple[int, str] | None = None
    for rx in (_LABEL_QUOTED, _LABEL_BARE):
        for m in rx.finditer(prose):
            if best is None or m.start() > best[0]:
                best = (m.start(), m.group(1).strip())
    if best is None:
        return None
    # "Label: card_arrival." ends a sentence; the full stop is not part of the label.
    return best[1].rstrip(".!?:") or None


def read_task(body: dict[str, Any]) -> Task:
    """Read a chat-completions body. Raises ValueError when it is not one."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty array")
    texts, last_user = _message_texts(messages)
    rows = _json_lines(texts)
    item_schema, n = _item_schema(body.get("response_format"))

    fields: dict[str, str] = {}
    enums: dict[str, list[Any]] = {}
    label_field: str | None = None
    label: str | None = None
    required: list[str] = []
    if item_schema is not None:
        props: dict[str, Any] = item_schema["properties"]
        req = item_schema.get("required")
        required = [r for r in req if r in props] if isinstance(req, list) else list(props)
        singles = [
            k
            for k, p in props.items()
            if isinstance(p, dict) and isinstance(p.get("enum"), list) and len(p["enum"]) == 1
        ]
        if singles:
            label_field = "label" if "label" in singles else singles[0]
            label = str(props[label_field]["enum"][0])
        for k, p in props.items():
            p = p if isinstance(p, dict) else {}
            kind = p.get("type")
            if isinstance(kind, list):  # ["string", "null"]
                kind = next((t for t in kind if t != "null"), "any")
            if k == label_field:
                fields[k] = "label"
            elif isinstance(p.get("enum"), list) and p["enum"]:
                fields[k] = "enum"
                enums[k] = p["enum"]
            elif kind in ("string", "integer", "number", "boolean"):
                fields[k] = str(kind)
            else:
                fields[k] = "any"
    if label_field is None:
        if item_schema is None:  # the example lines are the schema
            keys: dict[str, None] = {}
            for r in rows:
                keys.update(dict.fromkeys(r))
            label_field = "label" if "label" in keys else None
            for k in keys:
                first = next((r[k] for r in rows if k in r), None)
                fields[k] = "label" if k == label_field else _type_of(first)
            required = list(fields)
        elif "label" in fields:  # a schema that does not pin the label
            label_field = "label"
            fields[label_field] = "label"
        label = _label_from_prompt(last_user)
        if label is None and label_field:
            counts = Counter(
                r[label_field] for r in rows if isinstance(r.get(label_field), (str, int))
            )
            label = str(counts.most_common(1)[0][0]) if counts else None
    if n is None:
        found = _N_EXAMPLES.findall(last_user)
        n = int(found[-1]) if found else 1
    n = max(1, min(n, MAX_ITEMS))

    if label_field:
        shots = [r for r in rows if str(r.get(label_field)) == label]
        contrast = [r for r in rows if label_field in r and str(r.get(label_field)) != label]
    else:
        shots, contrast = rows, []

    if not fields:  # no schema and no example lines: still answer with some text
        fields = {"text": "string", **({"label": "label"} if label is not None else {})}
        required = list(fields)
        label_field = "label" if label is not None else None
    strings = [k for k, kind in fields.items() if kind == "string"]
    text_field = "text" if "text" in strings else (strings[0] if strings else None)
    for k in strings:
        if k == text_field:
            fields[k] = "text"
        elif shots and all(
            isinstance(s.get(k), str) and " " not in s[k].strip() for s in shots if k in s
        ):
            # Short categorical strings ("urgent", "en") are metadata, not prose.
            fields[k] = "copy"
    return Task(
        n=n,
        label_field=label_field,
        label=label,
        fields=fields,
        required=required,
        text_field=text_field,
        shots=shots,
        contrast=contrast,
        prompt_chars=sum(len(t) for t in texts),
        enums=enums,
    )


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


# ---------------------------------------------------------------------------
# Writing items

ITEM_KINDS = ("normal", "exact_dup", "near_dup", "off_label", "pii", "bad_item")


def _fallback_text(label: str | None, rng: Random) -> str:
    topic = (label or "my account").replace("_", " ").replace("-", " ")
    return rng.choice(
        (
            f"I have a question about {topic}",
            f"can you help me with {topic}?",
            f"{topic}: what should I do?",
            f"I need some help with {topic} please",
            f"something is wrong with {topic}",
        )
    )


class ItemWriter:
    """Writes the items of one reply. ``shares`` maps item kinds to their shares."""

    def __init__(self, task: Task, rng: Random, shares: dict[str, float]) -> None:
        self.task = task
        self.rng = rng
        self.shares = shares
        tf = task.text_field
        self.texts = [s[tf] for s in task.shots if tf and isinstance(s.get(tf), str)]
        self.contrast_texts = [
            s[tf] for s in task.contrast if tf and isinstance(s.get(tf), str) and s[tf].strip()
        ]
        self.seen = {normalize(t) for t in self.texts}

    def kind(self) -> str:
        """Draw the kind of the next item from the shares ("normal" for the rest)."""
        u = self.rng.random()
        for k in ITEM_KINDS[1:]:
            p = self.shares.get(k, 0.0)
            if u < p:
                return k
            u -= p
        return "normal"

    def items(self) -> tuple[list[dict[str, Any]], list[str]]:
        """The reply's ``task.n`` items and the kind each was written as."""
        out, kinds = [], []
        for _ in range(self.task.n):
            kind = self.kind()
            item, kind = self.item(kind)
            out.append(item)
            kinds.append(kind)
        return out, kinds

    def item(self, kind: str) -> tuple[dict[str, Any], str]:
        """One item of ``kind``; a copy or off-label fault with nothing to copy from
        is written as a normal item, and the kind returned says so."""
        task, rng = self.task, self.rng
        shot = rng.choice(task.shots) if task.shots else {}
        if kind == "exact_dup" and shot:
            return self._fill(dict(shot), shot), kind
        if kind == "near_dup" and self.texts and task.text_field in shot:
            item = self._fill(dict(shot), shot)
            item[task.text_field] = near_dup(str(shot[task.text_field]), rng)
            return item, kind
        if kind == "off_label" and self.contrast_texts:
            source = rng.choice(self.contrast_texts)
            text = self._fresh(source, [], rate=0.5)
            return self._fill({task.text_field: text}, shot), kind
        if kind in ("exact_dup", "near_dup", "off_label"):
            kind = "normal"  # nothing to copy from: the fault degrades to a normal item
        item = self._normal(shot)
        tf = task.text_field
        if kind == "pii" and tf and isinstance(item.get(tf), str):
            item[tf] = weave_pii(item[tf], rng)
        elif kind == "bad_item":
            fields = task.required or list(task.fields)
            if tf and (rng.random() < 0.5 or not fields):
                text = str(item.get(tf, ""))
                if _CJK.search(text):
                    item[tf] = text[: rng.randint(1, 2)]
                else:
                    item[tf] = " ".join(text.split()[: rng.randint(1, 2)])
            elif fields:
                item.pop(rng.choice(fields), None)
        return item, kind

    def _fresh(self, primary: str, others: list[str], rate: float) -> str:
        """A paraphrase that is no copy of a shot or of an earlier item."""
        rng = self.rng
        for attempt in range(4):
            text = paraphrase(
                primary, others, rng, rate=min(0.9, rate + 0.15 * attempt), force=attempt == 3
            )
            key = normalize(text)
            if key and key not in self.seen:
                break
        self.seen.add(key)
        return text

    def _normal(self, shot: dict[str, Any]) -> dict[str, Any]:
        task, rng = self.task, self.rng
        tf = task.text_field
        item: dict[str, Any] = {}
        if tf:
            primary = shot.get(tf) if isinstance(shot.get(tf), str) else None
            if primary and primary.strip():
                others = [t for t in self.texts if t is not primary]
                item[tf] = self._fresh(primary, others, rate=rng.uniform(0.5, 0.85))
            else:
                item[tf] = self._fresh(_fallback_text(task.label, rng), [], rate=0.5)
        return self._fill(item, shot)

    def _fill(self, item: dict[str, Any], shot: dict[str, Any]) -> dict[str, Any]:
        """Complete ``item`` in field order: the label, then every other field from
        ``shot`` (prose reworded) or a plausible value."""
        task, rng = self.task, self.rng
        out: dict[str, Any] = {}
        for name, kind in task.fields.items():
            if kind == "label":
                out[name] = task.label if task.label is not None else shot.get(name)
                continue
            if name in item:
                out[name] = item[name]
                continue
            value = shot.get(name)
            if kind == "string":
                text = value if isinstance(value, str) else ""
                out[name] = (
                    paraphrase(text, [], rng, rate=0.4, recombine=False, decorate=False)
                    if text
                    else ""
                )
            elif kind == "copy":
                out[name] = value if isinstance(value, str) else ""
            elif kind == "enum":
                allowed = task.enums.get(name) or [None]
                out[name] = value if value in allowed else rng.choice(allowed)
            elif kind == "integer":
                out[name] = value if _type_of(value) == "integer" else rng.randint(1, 5)
            elif kind == "number":
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                out[name] = value if ok else round(rng.uniform(0, 1), 2)
            elif kind == "boolean":
                out[name] = value if isinstance(value, bool) else rng.random() < 0.5
            else:
                out[name] = value
        return out
