"""X rule syntax: the parser and matcher (unit and property tests), and matching on the live filter stream."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from flamingo.emulator.corpus import ID_LOW_DIGITS
from flamingo.emulator.x.corpus import corpus_for
from flamingo.emulator.x.rules import (
    And,
    Node,
    Not,
    Or,
    PostFacts,
    RuleSyntaxError,
    Term,
    matches,
    parse,
    render,
    tokenize,
)
from tests.support.xemu import FILTER, lines, posts, rules_post, start_x_emulator, stream

SAMPLE = "/2/tweets/sample/stream"


def post(text: str = "", **kw: Any) -> PostFacts:
    return PostFacts(tokens=tokenize(text), **kw)


def m(rule: str, facts: PostFacts) -> bool:
    return matches(parse(rule), facts)


class ParserTests(SynchronousTestCase):
    def test_keywords_are_tokenized_and_case_insensitive(self) -> None:
        p = post("I love my Coffee, really!")
        self.assertTrue(m("coffee", p))
        self.assertTrue(m("COFFEE love", p))
        self.assertFalse(m("coff", p))
        self.assertFalse(m("coffee tea", p))
        self.assertTrue(m("coffee OR tea", p))

    def test_phrases_need_the_words_in_order(self) -> None:
        p = post("the quick brown fox")
        self.assertTrue(m('"quick brown"', p))
        self.assertTrue(m('"Quick, Brown"', p))
        self.assertFalse(m('"brown quick"', p))
        self.assertTrue(m('"say \\"hi\\"" OR fox', p))

    def test_accents_and_emoji(self) -> None:
        p = post("café 🔥 東京")
        self.assertTrue(m("café", p))
        self.assertFalse(m("cafe", p))
        self.assertTrue(m("🔥", p))
        self.assertTrue(m("東京", p))

    def test_entity_and_user_operators(self) -> None:
        p = post("hello", hashtags=frozenset({"python"}), mentions=frozenset({"nasa"}), author="xdevelopers",
                 author_id="42", lang="ja", is_retweet=True)
        self.assertTrue(m("#Python", p))
        self.assertFalse(m("#pythonista", p))
        self.assertTrue(m("@NASA", p))
        self.assertTrue(m("from:XDevelopers", p))
        self.assertTrue(m("from:42", p))
        self.assertTrue(m("hello lang:ja", p))
        self.assertFalse(m("hello lang:en", p))
        self.assertTrue(m("hello is:retweet", p))
        self.assertFalse(m("hello -is:retweet", p))
        self.assertFalse(m("hello is:reply", p))

    def test_and_binds_tighter_than_or(self) -> None:
        self.assertEqual(parse("apple OR iphone ipad"),
                         Or((Term("keyword", "apple", ("apple",)),
                             And((Term("keyword", "iphone", ("iphone",)), Term("keyword", "ipad", ("ipad",)))))))
        self.assertTrue(m("apple OR iphone ipad", post("apple")))
        self.assertFalse(m("(apple OR iphone) ipad", post("apple")))
        self.assertFalse(m("ipad iphone OR android", post("ipad")))

    def test_lowercase_or_is_a_keyword(self) -> None:
        self.assertFalse(m("cats or dogs", post("cats dogs")))
        self.assertTrue(m("cats or dogs", post("cats or dogs")))

    def test_negation(self) -> None:
        self.assertTrue(m("cat -grumpy", post("a cat")))
        self.assertFalse(m("cat -grumpy", post("grumpy cat")))
        self.assertFalse(m('cat -"grumpy cat"', post("grumpy cat")))
        self.assertTrue(m("cat -#meme", post("cat", hashtags=frozenset({"other"}))))

    def test_refused_rules_say_why(self) -> None:
        cases = {
            "": "empty",
            "   ": "empty",
            "(cat": "never closed",
            "cat)": "unexpected ')'",
            "()": "empty group",
            '"cat': "Unterminated",
            "cat OR": "Dangling OR",
            "OR cat": "OR with nothing before",
            "cat OR OR dog": "Dangling OR",
            "-(cat OR dog) bird": "Negating a group",
            "-cat": "standalone",
            "lang:en": "standalone",
            "is:retweet OR cat": "standalone",
            "is:verified cat": "is:verified",
            "has:images cat": "has:",
            "lang:english cat": "language code",
            "from: cat": "needs a value",
            "# cat": "Invalid hashtag",
            '"" cat': "Empty quoted phrase",
        }
        for rule, fragment in cases.items():
            with self.assertRaises(RuleSyntaxError, msg=rule) as raised:
                parse(rule)
            self.assertIn(fragment, str(raised.exception), rule)
            self.assertNotIn("\n", str(raised.exception))

    def test_standalone_needed_in_every_or_branch_only(self) -> None:
        parse("cat lang:en")
        parse("(cat OR dog) -is:retweet lang:en")
        parse("(lang:en OR lang:es) from:nasa")


# -- properties ------------------------------------------------------------------

WORDS = ["love", "coffee", "python", "rain", "café", "東京", "🔥", "day"]
TAGS = ["python", "news", "love"]
USERS = ["nasa", "xdevelopers", "bob"]
LANGS = ["en", "es", "ja"]

standalone = st.one_of(
    st.sampled_from(WORDS).map(lambda w: Term("keyword", w, tokenize(w))),
    st.lists(st.sampled_from(WORDS), min_size=2, max_size=3).map(
        lambda ws: Term("phrase", " ".join(ws), tokenize(" ".join(ws)))),
    st.sampled_from(TAGS).map(lambda t: Term("hashtag", t)),
    st.sampled_from(USERS).map(lambda u: Term("mention", u)),
    st.sampled_from(USERS).map(lambda u: Term("from", u)),
)
narrowing = st.one_of(st.sampled_from(LANGS).map(lambda x: Term("lang", x)),
                      st.sampled_from(["retweet", "reply", "quote"]).map(lambda x: Term("is", x)))
leaf = st.one_of(standalone, narrowing, st.one_of(standalone, narrowing).map(Not))
#: rules X accepts by construction: every OR branch has a positive standalone term
#: (an AND needs one such child, in any position; its others may only narrow)
trees = st.recursive(standalone, lambda kids: st.one_of(
    st.tuples(kids, st.lists(st.one_of(kids, leaf), min_size=1, max_size=2))
    .flatmap(lambda t: st.permutations([t[0], *t[1]])).map(lambda c: And(tuple(c))),
    st.lists(kids, min_size=2, max_size=3).map(lambda c: Or(tuple(c)))), max_leaves=8)
facts = st.builds(
    PostFacts,
    tokens=st.lists(st.sampled_from(WORDS + ["other", "words"]), max_size=12).map(tuple),
    hashtags=st.frozensets(st.sampled_from(TAGS)),
    mentions=st.frozensets(st.sampled_from(USERS)),
    author=st.sampled_from(USERS),
    lang=st.sampled_from(LANGS),
    is_retweet=st.booleans(), is_reply=st.booleans(), is_quote=st.booleans(),
)


def reference(node: Node, p: PostFacts) -> bool:
    """A second, naive evaluator: phrases by string search over space-joined tokens."""
    if isinstance(node, And):
        return all(reference(c, p) for c in node.children)
    if isinstance(node, Or):
        return any(reference(c, p) for c in node.children)
    if isinstance(node, Not):
        return not reference(node.child, p)
    text = " " + " ".join(p.tokens) + " "
    return {
        "keyword": lambda: " " + " ".join(node.tokens) + " " in text,
        "phrase": lambda: " " + " ".join(node.tokens) + " " in text,
        "hashtag": lambda: node.value in p.hashtags,
        "mention": lambda: node.value in p.mentions,
        "from": lambda: node.value == p.author,
        "lang": lambda: node.value == p.lang,
        "is": lambda: {"retweet": p.is_retweet, "reply": p.is_reply, "quote": p.is_quote}[node.value],
    }[node.kind]()


def parsed(tree: Node) -> Node:
    return parse(render(tree))


class PropertyTests(SynchronousTestCase):
    @given(trees, st.lists(facts, min_size=1, max_size=5))
    def test_rendered_rules_parse_back_and_match_like_the_reference(self, tree: Node, posts_: list[PostFacts]) -> None:
        node = parsed(tree)
        for p in posts_:
            self.assertEqual(matches(node, p), reference(tree, p))

    @given(trees, trees, facts)
    def test_or_and_and_compose(self, a: Node, b: Node, p: PostFacts) -> None:
        na, nb = parsed(a), parsed(b)
        either = parse(f"({render(a)}) OR ({render(b)})")
        both = parse(f"({render(a)}) ({render(b)})")
        self.assertEqual(matches(either, p), matches(na, p) or matches(nb, p))
        self.assertEqual(matches(both, p), matches(na, p) and matches(nb, p))

    @given(trees, st.one_of(standalone, narrowing), facts)
    def test_negation_excludes(self, a: Node, t: Term, p: PostFacts) -> None:
        na = parsed(a)
        self.assertEqual(matches(parse(f"({render(a)}) -{render(t)}"), p), matches(na, p) and not matches(t, p))

    @given(st.lists(st.sampled_from(list('ab #@:-()"\\') + ["OR", "lang:", "from:", "is:", "retweet", " OR "]),
                    max_size=20).map("".join))
    def test_any_text_parses_or_is_refused_with_a_reason(self, text: str) -> None:
        try:
            parse(text)
        except RuleSyntaxError as e:
            self.assertTrue(str(e))

    @given(st.text(max_size=60))
    def test_any_unicode_parses_or_is_refused(self, text: str) -> None:
        try:
            parse(text)
        except RuleSyntaxError:
            pass


# -- on the live filter stream --------------------------------------------------------

def template(line: dict[str, Any]) -> int:
    return int(line["data"]["id"]) % 10**ID_LOW_DIGITS


class StreamMatchingTests(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_filter_sends_exactly_the_matching_posts_once_with_every_rule(self) -> Any:
        clock = Clock()
        emu = start_x_emulator(self, clock=clock, rate=100, keepalive=0, record=True)
        rules = {"love": "love", "love OR coffee": "drinks", "#python": "py", "from:XDevelopers": "devs",
                 "lang:ja -is:retweet 東京": "tokyo", "@nasa OR from:nasa": "nasa"}
        r = yield rules_post(emu, {"add": [{"value": v, "tag": t} for v, t in rules.items()]})
        ids = {d["tag"]: d["id"] for d in r.json()["data"]}
        filtered = yield stream(self, emu, FILTER)
        sample = yield stream(self, emu, SAMPLE)
        for second in range(1, 21):
            clock.advance(1)
            yield sample.wait_for(lambda: len(lines(sample)) >= 100 * second)
        clock.advance(0.001)
        corpus = corpus_for(1)
        expected = []
        for line in posts(sample):
            facts = corpus.posts[template(line)].facts
            hits = [t for v, t in rules.items() if matches(parse(v), facts)]
            if hits:
                expected.append((line["data"]["id"], sorted(ids[t] for t in hits)))
        yield filtered.wait_for(lambda: len(posts(filtered)) >= len(expected))
        got = [(p["data"]["id"], sorted(x["id"] for x in p["matching_rules"])) for p in posts(filtered)]
        self.assertEqual(got, expected)
        self.assertEqual(len({i for i, _ in got}), len(got))  # each post once
        self.assertTrue(any(len(hit) >= 2 for _, hit in got))  # some matched several rules
        for tag in rules.values():  # the corpus gives every typical rule something to match
            self.assertTrue(any(ids[tag] in hit for _, hit in got), tag)
        by_id = {p["data"]["id"]: p for p in posts(filtered)}
        one = next(p for p in by_id.values() if len(p["matching_rules"]) >= 2)
        self.assertLessEqual({x["tag"] for x in one["matching_rules"]}, set(rules.values()))

    @defer.inlineCallbacks
    def test_rules_change_the_live_stream_after_the_delay_without_reconnect(self) -> Any:
        clock = Clock()
        emu = start_x_emulator(self, clock=clock, rate=50, keepalive=0, rules_delay=5, allow_no_rules=True)
        client = yield stream(self, emu, FILTER)
        r = yield rules_post(emu, {"add": [{"value": "the OR a OR love", "tag": "common"}]})
        rule_id = r.json()["data"][0]["id"]
        for _ in range(4):
            clock.advance(1)
        self.assertEqual(emu.journal[0].messages_sent, 0)  # committed, not yet applied
        clock.advance(1.5)  # applied at 5 s; the next ticks send matches
        for _ in range(10):
            clock.advance(0.1)
        yield client.wait_for(lambda: len(posts(client)) >= 5)
        self.assertTrue(all(p["matching_rules"] == [{"id": rule_id, "tag": "common"}] for p in posts(client)))
        yield rules_post(emu, {"delete": {"ids": [rule_id]}})
        clock.advance(5)
        clock.advance(0.1)
        count = emu.journal[0].messages_sent
        for _ in range(5):
            clock.advance(1)
        self.assertEqual(len(emu.sessions), 1)  # the same connection throughout
        self.assertEqual(emu.journal[0].messages_sent, count)

    @defer.inlineCallbacks
    def test_a_rate_0_stream_with_nothing_to_match_wakes_up_for_a_new_rule(self) -> Any:
        emu = start_x_emulator(self)
        yield rules_post(emu, {"add": [{"value": "zzzqqqx"}]})  # matches nothing
        client = yield stream(self, emu, FILTER)
        self.assertEqual(posts(client), [])
        yield rules_post(emu, {"add": [{"value": "#python", "tag": "py"}]})
        yield client.wait_for(lambda: len(posts(client)) >= 50)
        for p in posts(client)[:50]:
            self.assertEqual(p["matching_rules"][0]["tag"], "py")
            self.assertIn("#python", p["data"]["text"].lower())
