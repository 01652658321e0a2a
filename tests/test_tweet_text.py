"""A tweet's haystack from its bytes (msgspec, typed) is the dict path's, whatever the JSON holds."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from flamingo.domain.matching import Haystack, haystack
from flamingo.domain.tweet_text import tweet_haystack
from flamingo.emulator.corpus import Corpus, dumps

# every field the haystack reads may be absent, null, of its type or of another one
_text = st.text(st.sampled_from(list("aB #@:/.-") + ["É", "东", "\u0130", "😂"]), max_size=12)
_odd = st.one_of(st.none(), st.integers(-3, 3), st.booleans(), st.just([]), st.just({}), st.just(["x"]))
_str_field = st.one_of(_text, _odd)


def _obj(**fields: st.SearchStrategy[object]) -> st.SearchStrategy[dict[str, object]]:
    """A dict with any subset of ``fields``."""
    return st.fixed_dictionaries({}, optional=fields)


_entities = _obj(
    hashtags=st.one_of(st.lists(st.one_of(_obj(text=_str_field, indices=st.just([0, 1])), _odd), max_size=3),
                       _odd),
    user_mentions=st.one_of(st.lists(st.one_of(_obj(screen_name=_str_field, id=st.integers()), _odd),
                                     max_size=3), _odd),
    urls=st.one_of(st.lists(st.one_of(_obj(url=_str_field, expanded_url=_str_field), _odd), max_size=3), _odd),
    symbols=st.just([]))
_extended = _obj(full_text=_str_field, entities=st.one_of(_entities, _odd), display_text_range=st.just([0, 2]))
_status = _obj(text=_str_field, full_text=_str_field, extended_tweet=st.one_of(_extended, _odd),
               entities=st.one_of(_entities, _odd), user=st.just({"id": 1, "description": "i love coffee"}),
               id=st.integers(0, 10**18))
_tweet = st.builds(lambda base, inner: {**base, **inner}, _status,
                   _obj(retweeted_status=st.one_of(_status, _odd), quoted_status=st.one_of(_status, _odd)))


def _parts(h: Haystack | None) -> object:
    return None if h is None else (h._texts, h._urls, h._tags, h._mentions)


class TweetHaystackTests(SynchronousTestCase):
    @given(_tweet)
    def test_same_haystack_as_the_dict_path(self, tweet: dict[str, object]) -> None:
        raw = orjson.dumps(tweet)
        self.assertEqual(_parts(tweet_haystack(raw)), _parts(haystack(orjson.loads(raw))))

    @given(st.one_of(st.none(), st.integers(-9, 9), st.booleans(), st.lists(st.integers(-9, 9), max_size=2), _text))
    def test_not_an_object(self, value: object) -> None:
        self.assertIsNone(tweet_haystack(orjson.dumps(value)))

    def test_not_json(self) -> None:
        self.assertIsNone(tweet_haystack(b'{"text": "torn'))
        self.assertIsNone(tweet_haystack(b"Exceeded connection limit for user"))

    def test_the_emulators_corpus(self) -> None:
        n = 0
        for m in Corpus(seed=7, size="realistic").messages():
            raw = dumps(m)
            self.assertEqual(_parts(tweet_haystack(raw)), _parts(haystack(orjson.loads(raw))))
            n += 1
            if n == 300:
                break

    def test_an_extended_retweet(self) -> None:
        raw = orjson.dumps({
            "text": "RT @a: short…", "entities": {"user_mentions": [{"screen_name": "A"}]},
            "retweeted_status": {"text": "short…", "extended_tweet": {
                "full_text": "The Whole Text #Coffee",
                "entities": {"hashtags": [{"text": "Coffee"}], "urls": [{"url": "t.co/x", "expanded_url": ""}]}}}})
        self.assertEqual(_parts(tweet_haystack(raw)),
                         (["rt @a: short…", "the whole text #coffee"], ["t.co/x"], ["coffee"], ["a"]))
