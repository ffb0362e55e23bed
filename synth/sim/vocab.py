"""The word tables the text engine draws from: synonyms, phrases, openers, closers.

They are data, tuned by reading what the paraphrases look like, so they sit apart from
the code that uses them. They are parsed and compiled once, at import: a request never
pays for it. The judge reads the same synonym table, so that a word the engine swapped
in counts as the word it replaced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

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
