"""TermMatcher's fast paths: the bytes prefilter and the lazy haystack never change a result."""

from __future__ import annotations

import json
import re

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from flamingo.domain import matching, predicates
from flamingo.domain.matching import TermMatcher, haystack, prefilter_view


def tweet(text="", hashtags=(), mentions=(), urls=(), **extra):
    t = {"created_at": "x", "id": 10, "text": text, "user": {"id": 1, "screen_name": "someone",
                                                             "description": extra.pop("bio", "")},
         "entities": {"hashtags": [{"text": h} for h in hashtags],
                      "user_mentions": [{"screen_name": m} for m in mentions],
                      "urls": [{"url": "https://t.co/x", "expanded_url": u} for u in urls]}}
    t.update(extra)
    return t


def encodings(obj) -> list[bytes]:
    """The same message as different encoders write it: raw UTF-8, \\u escapes, escaped slashes."""
    ascii_json = json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
    return [orjson.dumps(obj), ascii_json.encode(), ascii_json.replace("/", "\\/").encode()]


# The matcher as it was before the fast paths (typing.Mapping checks, eager tokens):
# the reference the fast paths must agree with.
_WORD = re.compile(r"[#@$]?\w+", re.UNICODE)


def reference_matches(terms, tweet) -> bool:
    if not isinstance(tweet, dict):
        return False
    tokens, texts = set(), []
    parts = [tweet] + [tweet[k] for k in ("retweeted_status", "quoted_status") if isinstance(tweet.get(k), dict)]
    for status in parts:
        ext = status.get("extended_tweet")
        if isinstance(ext, dict) and isinstance(ext.get("full_text"), str):
            text = ext["full_text"]
        else:
            text = status.get("full_text", status.get("text"))
            text = text if isinstance(text, str) else ""
        text = text.lower()
        texts.append(text)
        for tok in _WORD.findall(text):
            tokens.add(tok)
            if tok[0] in "#@$":
                tokens.add(tok[1:])
        if isinstance(ext, dict) and isinstance(ext.get("entities"), dict):
            ent = ext["entities"]
        else:
            ent = status.get("entities") if isinstance(status.get("entities"), dict) else {}
        for tag in ent.get("hashtags") or ():
            if isinstance(tag, dict) and isinstance(tag.get("text"), str):
                tokens.update((tag["text"].lower(), "#" + tag["text"].lower()))
        for m in ent.get("user_mentions") or ():
            if isinstance(m, dict) and isinstance(m.get("screen_name"), str):
                tokens.update((m["screen_name"].lower(), "@" + m["screen_name"].lower()))
        for u in ent.get("urls") or ():
            if isinstance(u, dict):
                e = u.get("expanded_url") or u.get("url")
                if isinstance(e, str):
                    texts.append(e.lower())
                    tokens.update(_WORD.findall(e.lower()))
    text = "\n".join(texts)

    def word(w):
        return w in tokens or (not _WORD.fullmatch(w) and w in text)

    phrases = [p.lower().split() for p in predicates.split_values(terms)]
    return any(all(word(w) for w in p) for p in phrases)


class PrefilterTests(SynchronousTestCase):
    def check(self, terms, obj, expected):
        m = TermMatcher(terms)
        self.assertEqual(m.matches(obj), expected)
        self.assertEqual(reference_matches(terms, obj), expected)
        for raw in encodings(obj):
            self.assertEqual(m.matches_raw(raw), expected, raw)

    def test_plain_terms_are_ruled_out_on_bytes(self):
        m = TermMatcher(["love", "coffee shop"])
        self.assertEqual(m.needles, ((b"love",), (b"coffee", b"shop")))
        self.assertFalse(m.may_match(prefilter_view(orjson.dumps(tweet("nothing here")))))
        self.assertFalse(m.may_match(prefilter_view(orjson.dumps(tweet("coffee, no sh0p")))))
        self.assertTrue(m.may_match(prefilter_view(orjson.dumps(tweet("I LOVE it")))))
        self.check(["love"], tweet("I LOVE it"), True)
        self.check(["love"], tweet("lovely"), False)

    def test_a_bio_passes_the_prefilter_but_not_the_match(self):
        obj = tweet("nothing", bio="I love coffee")
        self.assertTrue(TermMatcher(["love"]).may_match(prefilter_view(orjson.dumps(obj))))
        self.check(["love"], obj, False)

    def test_hashtags_and_mentions_from_entities_only(self):
        # "#austin" never occurs in the bytes: the entity holds "austin"
        self.check(["#austin"], tweet("rain today", hashtags=["Austin"]), True)
        self.check(["@bob"], tweet("hi there", mentions=["Bob"]), True)
        self.check(["#austin"], tweet("rain today", hashtags=["Dallas"]), False)
        self.assertEqual(TermMatcher(["#austin", "@bob"]).needles, ((b"austin",), (b"bob",)))

    def test_urls_in_entities_only(self):
        self.check(["example.com"], tweet("look https://t.co/x", urls=["https://Example.com/a"]), True)
        self.check(["example"], tweet("look https://t.co/x", urls=["https://example.com/a"]), True)
        # a slash may be written \/ by the encoder: such a term is never decided on bytes
        self.assertIsNone(TermMatcher(["example.com/a"]).needles)
        self.check(["example.com/a"], tweet("look", urls=["https://example.com/a"]), True)

    def test_non_ascii_terms_are_parsed(self):
        self.assertIsNone(TermMatcher(["café"]).needles)
        self.check(["café"], tweet("CAFÉ open"), True)  # str.lower folds É; bytes.lower would not
        self.check(["東京"], tweet("#東京 rain", hashtags=["東京"]), True)
        self.check(["café"], tweet("cafe open"), False)

    def test_escaped_unicode_in_the_raw_json(self):
        # \u escapes of non-ASCII text leave ASCII terms decidable on bytes
        raw = b'{"created_at":"x","user":{"id":1},"text":"caf\\u00e9 l\\u00f6ve"}'
        self.assertIsNotNone(prefilter_view(raw))
        self.assertFalse(TermMatcher(["love"]).matches_raw(raw))
        self.assertFalse(TermMatcher(["caf"]).matches_raw(raw))  # "café" is the word
        self.assertTrue(TermMatcher(["café"]).matches_raw(raw))
        self.assertTrue(TermMatcher(["love"]).matches_raw(raw.replace(b"\\u00f6", b"o")))
        # an escaped ASCII letter hides the term from the bytes: parsed instead
        raw = b'{"created_at":"x","user":{"id":1},"text":"I \\u004Cove \\u0070ython"}'
        self.assertIsNone(prefilter_view(raw))
        self.assertTrue(TermMatcher(["love"]).matches_raw(raw))
        self.assertTrue(TermMatcher(["python"]).matches_raw(raw))
        # an escaped backslash followed by u00.. is conservatively parsed too
        raw = b'{"created_at":"x","user":{"id":1},"text":"a\\\\u0041 love"}'
        self.assertIsNone(prefilter_view(raw))
        self.assertTrue(TermMatcher(["love"]).matches_raw(raw))

    def test_characters_whose_lower_case_is_ascii(self):
        # KELVIN SIGN lowers to "k", DOTTED CAPITAL I to "i" + a combining dot
        for text, term in (("\u212aiwi", "kiwi"), ("\\u212Aiwi", "kiwi"), ("\u0130stanbul", "i")):
            obj = tweet(text) if "\\" not in text else None
            if obj is not None:
                self.check([term], obj, True)
                self.assertIsNone(prefilter_view(orjson.dumps(obj)))
            else:
                raw = b'{"created_at":"x","user":{"id":1},"text":"' + text.encode() + b'"}'
                self.assertIsNone(prefilter_view(raw))
                self.assertTrue(TermMatcher([term]).matches_raw(raw))

    def test_quotes_backslashes_and_controls_in_terms_are_parsed(self):
        for term in ('say"hi', "back\\slash", "a/b"):
            self.assertIsNone(TermMatcher([term]).needles)
        self.check(['say"hi'], tweet('they say"hi'), True)

    def test_invalid_json_and_non_objects(self):
        m = TermMatcher(["love"])
        self.assertFalse(m.matches_raw(b'{"text":"love'))
        self.assertFalse(m.matches_raw(b'["love"]'))
        self.assertFalse(m.matches_raw(b""))
        self.assertIsNone(haystack(["love"]))
        self.assertFalse(TermMatcher([]).matches_raw(b'{"text":"love"}'))

    def test_prefilter_pauses_when_most_messages_pass(self):
        m = TermMatcher(["love"])
        view = prefilter_view(orjson.dumps(tweet("love")))
        for _ in range(matching.PREFILTER_WINDOW):
            self.assertTrue(m.wants_prefilter())
            m.may_match(view)
        self.assertFalse(m.wants_prefilter())  # paused, results unchanged
        self.assertTrue(m.matches_raw(orjson.dumps(tweet("love"))))
        self.assertFalse(m.matches_raw(orjson.dumps(tweet("hate"))))
        m._paused = 1
        self.assertFalse(m.wants_prefilter())
        self.assertTrue(m.wants_prefilter())  # probing again

    def test_shared_haystack_is_reusable(self):
        hay = haystack(tweet("Coffee #shop", hashtags=["shop"], retweeted_status=tweet("python rocks")))
        self.assertTrue(TermMatcher(["python"]).matches_haystack(hay))
        self.assertTrue(TermMatcher(["coffee shop"]).matches_haystack(hay))
        self.assertFalse(TermMatcher(["java"]).matches_haystack(hay))


_ALPHABET = st.sampled_from(list("abcxyz LOVE_#@$./-:\"\\\n\t") + ["é", "É", "\u212a", "\u0130", "東", "😂", "ß"])
_text = st.text(_ALPHABET, max_size=40)
_term = st.lists(st.text(_ALPHABET, min_size=1, max_size=8).map(str.strip).filter(bool), min_size=1, max_size=3)


class PrefilterProperties(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(terms=_term, text=_text, bio=_text, tags=st.lists(_text, max_size=2),
           mentions=st.lists(_text, max_size=2), urls=st.lists(_text, max_size=2),
           inner=st.one_of(st.none(), _text), extended=st.one_of(st.none(), _text))
    def test_fast_paths_agree_with_the_reference(self, terms, text, bio, tags, mentions, urls, inner, extended):
        extra = {}
        if inner is not None:
            extra["retweeted_status"] = tweet(inner, hashtags=tags[:1])
        if extended is not None:
            extra["extended_tweet"] = {"full_text": extended, "entities": {"hashtags": [{"text": t} for t in tags]}}
        obj = tweet(text, hashtags=tags, mentions=mentions, urls=urls, bio=bio, **extra)
        m = TermMatcher(terms)
        expected = reference_matches(terms, obj)
        self.assertEqual(m.matches(obj), expected)
        for raw in encodings(obj):
            self.assertEqual(m.matches_raw(raw), expected, (terms, raw))
