"""X filtered-stream rules: a parser (rule text → tree) and a matcher (tree × post → bool).

The subset of X's rule syntax the emulator understands: keywords (a
tokenized match), "quoted phrases", ``#hashtag``, ``@mention``, ``from:``,
``lang:``, ``is:retweet`` / ``is:reply`` / ``is:quote``, ``-negation``,
``OR``, parentheses and implicit AND (AND binds tighter than OR, as X says:
``apple OR iphone ipad`` is ``apple OR (iphone ipad)``). Everything is
case-insensitive; accents must match.

A rule X would refuse is refused here with one line saying why (it becomes
the per-rule error of the rules API): unbalanced parentheses or quotes, a
dangling ``OR``, a negated group, an operator the emulator does not know,
and a rule made only of conjunction-required operators (``lang:``, ``is:``)
or negations — X refuses those because they would match most of the
firehose. Pure: no I/O, no clock; property-tested.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

import attrs

__all__ = ["RuleSyntaxError", "Term", "And", "Or", "Not", "Node", "PostFacts", "parse", "matches",
           "tokenize", "render", "OPERATORS"]


class RuleSyntaxError(ValueError):
    """A rule X would refuse; the message is the per-rule error detail."""


@attrs.frozen
class PostFacts:
    """What a rule can see of a post, pre-computed once per post."""

    tokens: tuple[str, ...]  # lower-cased word and symbol tokens of the text, in order
    hashtags: frozenset[str] = frozenset()  # lower-case, without '#'
    mentions: frozenset[str] = frozenset()  # lower-case usernames, without '@'
    author: str = ""  # lower-case username
    author_id: str = ""
    lang: str = "und"
    is_retweet: bool = False
    is_reply: bool = False
    is_quote: bool = False


@attrs.frozen
class Term:
    """One operator: ``kind`` is keyword, phrase, hashtag, mention, from, lang or is."""

    kind: str
    value: str  # keyword/phrase: the original text; others: lower-cased value
    tokens: tuple[str, ...] = ()  # keyword/phrase: its tokens


@attrs.frozen
class Not:
    child: Term


@attrs.frozen
class And:
    children: tuple[Node, ...]


@attrs.frozen
class Or:
    children: tuple[Node, ...]


Node = Term | Not | And | Or

#: operator prefix -> term kind (``from:`` and friends); standalone ones can make a rule alone
OPERATORS = {"from": "from", "lang": "lang", "is": "is"}
STANDALONE = frozenset({"keyword", "phrase", "hashtag", "mention", "from"})
IS_VALUES = ("retweet", "reply", "quote")
_KNOWN_ELSEWHERE = ("has", "to", "url", "retweets_of", "context", "entity", "conversation_id", "bio",
                    "bio_name", "bio_location", "place", "place_country", "point_radius", "bounding_box",
                    "sample", "source", "in_reply_to_tweet_id", "retweets_of_tweet_id", "quotes_of_tweet_id",
                    "followers_count", "tweets_count", "following_count", "listed_count", "url_title",
                    "url_description", "url_contains", "embedding", "embedding_threshold")
_LANG = re.compile(r"^(?:[a-z]{2,3}|und)$")
_WORD = re.compile(r"\w+")


def tokenize(text: str) -> tuple[str, ...]:
    """X's tokenized match: words split at punctuation, symbols (emoji) are tokens of their own."""
    out: list[str] = []
    text = text.lower()
    i, n = 0, len(text)
    while i < n:
        m = _WORD.match(text, i)
        if m is not None:
            out.append(m.group())
            i = m.end()
            continue
        ch = text[i]
        if unicodedata.category(ch)[0] == "S":
            out.append(ch)
        i += 1
    return tuple(out)


# -- lexing ------------------------------------------------------------------

@attrs.frozen
class _Tok:
    kind: str  # "(", ")", "OR", "-", "phrase", "word"
    text: str
    pos: int  # 1-based column, as X reports positions


def _lex(rule: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(rule)
    while i < n:
        ch = rule[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            toks.append(_Tok(ch, ch, i + 1))
            i += 1
        elif ch == "-" and i + 1 < n and not rule[i + 1].isspace():
            toks.append(_Tok("-", ch, i + 1))
            i += 1
        elif ch == '"':
            j, buf = i + 1, []
            while j < n and rule[j] != '"':
                if rule[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(rule[j])
                j += 1
            if j >= n:
                raise RuleSyntaxError(f"Unterminated quoted phrase (at position {i + 1})")
            toks.append(_Tok("phrase", "".join(buf), i + 1))
            i = j + 1
        else:
            j = i
            while j < n and not rule[j].isspace() and rule[j] not in '()"':
                j += 1
            word = rule[i:j]
            toks.append(_Tok("OR" if word == "OR" else "word", word, i + 1))
            i = j
    return toks


# -- parsing -------------------------------------------------------------------

class _Parser:
    def __init__(self, toks: list[_Tok]):
        self.toks = toks
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def or_expr(self) -> Node:
        branches = [self.and_expr()]
        while (tok := self.peek()) is not None and tok.kind == "OR":
            self.take()
            nxt = self.peek()
            if nxt is None or nxt.kind in ("OR", ")"):
                raise RuleSyntaxError(f"Dangling OR: nothing after it (at position {tok.pos})")
            branches.append(self.and_expr())
        return branches[0] if len(branches) == 1 else Or(tuple(branches))

    def and_expr(self) -> Node:
        items: list[Node] = []
        while (tok := self.peek()) is not None and tok.kind not in ("OR", ")"):
            items.append(self.unary())
        if not items:
            tok = self.peek()
            where = tok.pos if tok is not None else (self.toks[-1].pos if self.toks else 1)
            what = "an empty group" if tok is not None and tok.kind == ")" else "OR with nothing before it"
            raise RuleSyntaxError(f"Unexpected {what} (at position {where})")
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self) -> Node:
        tok = self.take()
        if tok.kind == "-":
            nxt = self.peek()
            if nxt is None:
                raise RuleSyntaxError(f"Dangling negation (at position {tok.pos})")
            if nxt.kind == "(":
                raise RuleSyntaxError(
                    f"Negating a group is not supported: negate each operator instead (at position {tok.pos})")
            if nxt.kind in ("OR", ")", "-"):
                raise RuleSyntaxError(f"Nothing to negate (at position {tok.pos})")
            return Not(self.term(self.take()))
        if tok.kind == "(":
            inner = self.or_expr()
            close = self.peek()
            if close is None or close.kind != ")":
                raise RuleSyntaxError(f"Unbalanced parentheses: '(' is never closed (at position {tok.pos})")
            self.take()
            return inner
        if tok.kind == ")":
            raise RuleSyntaxError(f"Unbalanced parentheses: unexpected ')' (at position {tok.pos})")
        return self.term(tok)

    @staticmethod
    def term(tok: _Tok) -> Term:
        if tok.kind == "phrase":
            tokens = tokenize(tok.text)
            if not tokens:
                raise RuleSyntaxError(f"Empty quoted phrase (at position {tok.pos})")
            return Term("phrase", tok.text, tokens)
        word = tok.text
        if word.startswith("#") or word.startswith("@"):
            name = word[1:].lower()
            if not name or not _WORD.fullmatch(name):
                raise RuleSyntaxError(f"Invalid {'hashtag' if word[0] == '#' else 'mention'} "
                                      f"{word!r} (at position {tok.pos})")
            return Term("hashtag" if word[0] == "#" else "mention", name)
        op, colon, value = word.partition(":")
        if colon and op:
            key = op.lower()
            if key in OPERATORS:
                value = value.lower().lstrip("@")
                if not value:
                    raise RuleSyntaxError(f"Operator {key}: needs a value (at position {tok.pos})")
                if key == "lang" and not _LANG.match(value):
                    raise RuleSyntaxError(f"Invalid language code {value!r} for lang: (at position {tok.pos})")
                if key == "is" and value not in IS_VALUES:
                    raise RuleSyntaxError(f"Reference to invalid operator 'is:{value}' (at position {tok.pos}); "
                                          f"the emulator knows is:{', is:'.join(IS_VALUES)}")
                if key == "from" and not _WORD.fullmatch(value):
                    raise RuleSyntaxError(f"Invalid user name {value!r} for from: (at position {tok.pos})")
                return Term(OPERATORS[key], value)
            if key in _KNOWN_ELSEWHERE or re.fullmatch(r"[a-z_]+", key):
                raise RuleSyntaxError(f"Reference to invalid operator '{key}:' (at position {tok.pos}); "
                                      "the emulator knows keywords, phrases, #, @, from:, lang:, is:")
        tokens = tokenize(word)
        if not tokens:
            raise RuleSyntaxError(f"Keyword {word!r} has nothing to match (at position {tok.pos})")
        return Term("keyword", word, tokens)


def _standalone(node: Node) -> bool:
    """True when the node can match alone (X refuses rules that cannot)."""
    if isinstance(node, Term):
        return node.kind in STANDALONE
    if isinstance(node, Not):
        return False
    if isinstance(node, And):
        return any(_standalone(c) for c in node.children)
    return all(_standalone(c) for c in node.children)


def parse(rule: str) -> Node:
    """The rule's tree, or ``RuleSyntaxError`` with one line saying what is wrong."""
    if not rule.strip():
        raise RuleSyntaxError("Rule is empty")
    parser = _Parser(_lex(rule))
    node = parser.or_expr()
    extra = parser.peek()
    if extra is not None:
        raise RuleSyntaxError(f"Unbalanced parentheses: unexpected ')' (at position {extra.pos})")
    if not _standalone(node):
        raise RuleSyntaxError("Rules must contain at least one positive standalone operator (a keyword, "
                              "phrase, #hashtag, @mention or from:) in every OR branch; lang:, is: and "
                              "negations only narrow a rule")
    return node


# -- matching ------------------------------------------------------------------

def _contains(haystack: tuple[str, ...], needle: tuple[str, ...]) -> bool:
    n = len(needle)
    if n == 1:
        return needle[0] in haystack
    first = needle[0]
    for i in range(len(haystack) - n + 1):
        if haystack[i] == first and haystack[i : i + n] == needle:
            return True
    return False


def _term(term: Term, post: PostFacts) -> bool:
    kind = term.kind
    if kind == "keyword" or kind == "phrase":
        return _contains(post.tokens, term.tokens)
    if kind == "hashtag":
        return term.value in post.hashtags
    if kind == "mention":
        return term.value in post.mentions
    if kind == "from":
        return term.value == post.author or term.value == post.author_id
    if kind == "lang":
        return term.value == post.lang
    if term.value == "retweet":
        return post.is_retweet
    if term.value == "reply":
        return post.is_reply
    return post.is_quote


def matches(node: Node, post: PostFacts) -> bool:
    """Does the post match the rule's tree?"""
    if isinstance(node, Term):
        return _term(node, post)
    if isinstance(node, Not):
        return not _term(node.child, post)
    if isinstance(node, And):
        return all(matches(c, post) for c in node.children)
    return any(matches(c, post) for c in node.children)


def render(node: Node) -> str:
    """Rule text for a tree (``parse(render(t))`` gives ``t`` back; used by property tests)."""
    if isinstance(node, Term):
        if node.kind == "phrase":
            return '"' + node.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        prefix = {"hashtag": "#", "mention": "@", "from": "from:", "lang": "lang:", "is": "is:"}.get(node.kind, "")
        return prefix + node.value
    if isinstance(node, Not):
        return "-" + render(node.child)
    if isinstance(node, And):
        return " ".join(f"({render(c)})" if isinstance(c, Or) else render(c) for c in node.children)
    return " OR ".join(render(c) for c in node.children)


def terms(node: Node) -> Iterable[Term]:
    """Every term of the tree (for tests and summaries)."""
    if isinstance(node, Term):
        yield node
    elif isinstance(node, Not):
        yield node.child
    else:
        for c in node.children:
            yield from terms(c)
