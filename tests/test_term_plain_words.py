"""A plain term word is looked up without building the haystack's token set: same answers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from flamingo.domain.matching import Haystack, TermMatcher, _plain_in_tokens

# word characters of every kind sre's \w knows (letters, digits, numerics, _), the
# token prefixes, separators, a combining mark (not \w) and case-folding oddities
_ALPHABET = st.sampled_from(list("abclove_19 #@$./-:\n") + ["é", "²", "٣", "东", "\u0301", "ß", "\u212a", "😂"])
_piece = st.text(_ALPHABET, max_size=30)
_word = st.sampled_from(["love", "a", "b1", "é", "_", "1", "love_", "东", "c²", "٣"])


class PlainWordTests(SynchronousTestCase):
    @given(st.lists(_piece, max_size=3), st.lists(_piece, max_size=2), st.lists(_piece, max_size=2),
           st.lists(_piece, max_size=2), _word)
    def test_same_as_the_token_set(self, texts: list[str], urls: list[str], tags: list[str],
                                   mentions: list[str], word: str) -> None:
        hay = Haystack(texts, urls, tags, mentions)
        self.assertEqual(_plain_in_tokens(word, hay), word in hay.tokens)

    @given(st.lists(_piece, max_size=3), st.lists(_piece, max_size=2), st.lists(_piece, max_size=2),
           st.lists(_piece, max_size=2), st.lists(_word, min_size=1, max_size=2))
    def test_matcher_answers_as_with_tokens(self, texts: list[str], urls: list[str], tags: list[str],
                                            mentions: list[str], words: list[str]) -> None:
        hay = Haystack(texts, urls, tags, mentions)
        expect = all(w in hay.tokens for w in words)
        self.assertEqual(TermMatcher([" ".join(words)]).matches_haystack(Haystack(texts, urls, tags, mentions)),
                         expect)

    def test_examples(self) -> None:
        hay = Haystack(["i #love it", "xlove"], ["http://a.b/#python/x-coffee"], ["tea"], ["bob"])
        self.assertTrue(_plain_in_tokens("love", hay))  # "#love" is also the token "love"
        self.assertFalse(_plain_in_tokens("python", hay))  # in a URL, only "#python"
        self.assertTrue(_plain_in_tokens("coffee", hay))
        self.assertTrue(_plain_in_tokens("tea", hay) and _plain_in_tokens("bob", hay))
        self.assertFalse(_plain_in_tokens("lov", hay))
