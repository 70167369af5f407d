"""The planner's deterministic half: strategy and slots from cue words of the question.

Planner stage (``rlm ask``). :func:`heuristic_plan` reads the question the way a person skims it:
``pair`` → ``pairs``; ``how many`` / ``count`` / ``most|least frequent`` → ``count``; ``list
every`` / ``all the`` / a recognisable shape (IP address, e-mail, URL, host name, date, id) →
``extract_all``; ``summar…`` / ``overview`` → ``summarize``; ``timeline`` / ``over time`` /
``in order`` → ``timeline``; anything else → ``lookup``. Slots: quoted phrases, names, ids and
numbers of the question are *entities*, its other content words *keywords*; ``word:`` definitions
(two or more) are the *labels*, ``labelled X`` the *target*; a profile column the question
names (``users`` → ``user``) is the *group column*, and the token after it (``user U3``) the
*group value*. It is the fallback whenever the LM's plan is unusable, and it is never wrong in a
way that changes a plan's code: every value it finds is passed as a value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rlm_dsl.questions.profile import InputProfile
from rlm_dsl.questions.strategies import Slots

_STOPWORDS_TEXT = """
a about above after all also am an and any answer are as ask asked at be been before being both
but by can could did do does each either every find for from give had has have he her here his
how i if in into is it its just least list many me mentioned more most much my name named not
number of on once one only or other our out over please question questions say says she should
so some such tell text than that the their them then there these they this those to too up us
very was we were what when where which while who whom whose why will with within would write
you your document documents input file files line lines log logs record records item items
kind type value values show shown given
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
_CUES = (
    ("pairs", re.compile(r"\bpairs?\b", re.I)),
    ("count", re.compile(r"\bhow many\b|\bcount\b|\bnumber of\b|\b(most|least) "
                         r"(frequent|common)\b|\bhow often\b", re.I)),
    ("timeline", re.compile(r"\btimeline\b|\bover time\b|\bchronolog|\bin (time )?order\b|"
                            r"\bsequence of events\b", re.I)),
    ("summarize", re.compile(r"\bsummar|\boverview\b|\bgist\b|\bmain (points|themes)\b", re.I)),
    ("extract_all", re.compile(r"\blist (every|all|each)\b|\ball (the )?\w+ (that|which|who)\b|"
                               r"\bwhat are all\b|\bevery distinct\b|\bextract (all|every)\b",
                               re.I)),
)
_SHAPES = (
    ("ip", re.compile(r"\bip(v4)? addresses?\b|\bips?\b|\baddresses\b", re.I)),
    ("email", re.compile(r"\be-?mails?\b", re.I)),
    ("url", re.compile(r"\burls?\b|\blinks?\b", re.I)),
    ("host", re.compile(r"\bhost ?names?\b|\bhosts\b|\bdomains?\b", re.I)),
    ("date", re.compile(r"\bdates?\b|\bdays?\b", re.I)),
    ("id", re.compile(r"\bids?\b|\bidentifiers?\b", re.I)),
    ("number", re.compile(r"\bnumbers\b|\bamounts\b|\bvalues\b", re.I)),
)
_QUOTED = re.compile(r'"([^"]{1,80})"|“([^”]{1,80})”|\'([^\']{2,80})\'')
_TOKEN = re.compile(r"[^\s,;()\[\]{}<>|\"“”?!]+")
_LABEL_DEF = re.compile(r"(?:^|[\s;(,-])([a-z][a-z0-9_]{0,30}):\s", re.M)
_TARGET = re.compile(r"\blabell?ed(?: as)? ['\"]?([A-Za-z][\w-]*)", re.I)


@dataclass(frozen=True)
class HeuristicPlan:
    strategy: str
    slots: Slots
    confident: bool  # a cue word decided the strategy (else lookup by default)


def heuristic_plan(question: str, profile: InputProfile) -> HeuristicPlan:
    """Strategy and slots for ``question`` over ``profile`` (see the module docstring)."""
    strategy = next((name for name, cue in _CUES if cue.search(question)), None)
    shape = next((name for name, cue in _SHAPES if cue.search(question)), None)
    if strategy is None and shape and re.search(r"\b(which|what|list|all|every)\b", question,
                                                re.I):
        strategy = "extract_all"
    entities, keywords = terms(question)
    labels = tuple(dict.fromkeys(m.group(1) for m in _LABEL_DEF.finditer(question)))
    labels = labels if len(labels) >= 2 else ()
    target = next((m.group(1) for m in _TARGET.finditer(question)), None)
    column, value = group(question, profile)
    measure = "count"
    if re.search(r"\bmost (frequent|common)\b", question, re.I):
        measure = "most"
    elif re.search(r"\bleast (frequent|common)\b", question, re.I):
        measure = "least"
    if strategy == "timeline" and not profile.timed and profile.kind != "text":
        strategy = "summarize"
    if strategy == "extract_all" and shape:  # "IP", "URLs": the kind asked for, not a term
        entities = tuple(e for e in entities if not dict(_SHAPES)[shape].search(e))
    slots = Slots(
        keywords=keywords, entities=entities, labels=labels, target=target, measure=measure,
        shape=shape if strategy == "extract_all" else None, group_column=column,
        group_value=value if strategy == "count" else None,
        judge=strategy == "count" and not labels and not entities,
    )
    return HeuristicPlan(strategy or "lookup", slots, strategy is not None)


def terms(question: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(entities, keywords) of ``question``: quoted phrases, names, ids and numbers; then the
    other content words (lower case)."""
    entities: list[str] = [next(g for g in m.groups() if g) for m in _QUOTED.finditer(question)]
    keywords: list[str] = []
    words = _TOKEN.findall(_QUOTED.sub(" ", question))
    for index, raw in enumerate(words):
        word = raw.strip(".:'`").removesuffix("'s")
        if len(word) < 2:
            continue
        if _is_entity(word, first=index == 0):
            entities.append(word)
        elif word.lower() not in STOPWORDS and len(word) >= 3 and word.isalpha():
            keywords.append(_stem(word.lower()))
    return tuple(dict.fromkeys(entities)), tuple(dict.fromkeys(keywords))


def several(question: str) -> bool:
    """Whether ``question`` asks for several things: a list word (all, every, each, list) or a
    plural content word ("Which packages …", not "Which version …")."""
    if re.search(r"\b(all|every|each|list|several)\b", question, re.I):
        return True
    words = (raw.strip(".:'`").lower() for raw in _TOKEN.findall(_QUOTED.sub(" ", question)))
    return any(w.isalpha() and w not in STOPWORDS and _stem(w) != w for w in words)


def _is_entity(word: str, first: bool) -> bool:
    if any(ch.isdigit() for ch in word) or re.search(r"\w[-._@:/]\w", word):
        return True
    if len(word) >= 2 and word.isupper() and word.isalpha():
        return True
    return not first and word[:1].isupper() and word.lower() not in STOPWORDS


def _stem(word: str) -> str:
    """A plural's singular (``questions`` → ``question``), so both forms match as substrings."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def group(question: str, profile: InputProfile) -> tuple[str | None, str | None]:
    """The profile column the question names (singular or plural) and the token after it."""
    skip = {"text", "id", "line_no", "source", "byte_offset", "message", "ts"}
    for name in profile.columns:
        if name in skip:
            continue
        found = re.search(rf"\b{re.escape(name)}s?\b(?:\s+([A-Za-z0-9_.:@-]+))?", question, re.I)
        if found:
            value = found.group(1)
            plain = value and value.lower() not in STOPWORDS and any(c.isdigit() for c in value)
            return name, value if plain else None
    return None, None
