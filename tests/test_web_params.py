"""Request parameter parsing (pure): query, JSON and form bodies."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from flamingo.web._params import BadRequest, parse_bool, parse_int, parse_request, split_values
from flamingo.web.openapi import document
from flamingo.web.routes import ROUTES, listing

value = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=","),
                min_size=1, max_size=20).filter(lambda s: s.strip() == s and s)


class ParamsTests(unittest.SynchronousTestCase):
    @given(st.lists(value, max_size=10))
    def test_split_roundtrip(self, values):
        self.assertEqual(split_values([",".join(values)]), values)
        self.assertEqual(split_values(values), values)

    @given(st.dictionaries(st.sampled_from(["track", "follow", "name", "x y", "é"]),
                           st.lists(value, min_size=1, max_size=4), max_size=4))
    def test_query_form_and_json_agree(self, params):
        q = urlencode([(k, v) for k, vs in params.items() for v in vs]).encode()
        from_query = parse_request(q, None, b"")
        from_form = parse_request(b"", "application/x-www-form-urlencoded", q)
        from_json = parse_request(b"", "application/json; charset=utf-8",
                                  json.dumps(params).encode())
        for k in params:
            self.assertEqual(from_query.split(k), from_form.split(k))
            self.assertEqual(from_query.split(k), from_json.split(k))

    def test_query_then_body(self):
        p = parse_request(b"track=a", "application/json", b'{"track": "b,c", "max_length": 5}')
        self.assertEqual(p.split("track"), ["a", "b", "c"])
        self.assertEqual(p.one("max_length"), "5")
        self.assertIsNone(p.split("follow"))

    def test_malformed(self):
        for q, ctype, body in (
            (b"", "application/json", b"{nope"),
            (b"", "application/json", b'"str"'),
            (b"", "application/json", b'{"a": {"b": 1}}'),
            (b"", "application/json", b'{"a": true}'),
            (b"", "application/json", b'{"a": [null]}'),
            (b"", "application/json", b'{"a": "\\ud800"}'),
            (b"", "application/json", b"\xff"),
            (b"", "text/plain", b"track=a"),
            (b"a=%ff", None, b""),
            (b"a=\xc3", None, b""),
            (b"", "application/x-www-form-urlencoded", b"a=%ed%a0%80"),
        ):
            self.assertRaises(BadRequest, parse_request, q, ctype, body)

    def test_one_refuses_ambiguity(self):
        self.assertRaises(BadRequest, parse_request(b"n=a&n=b", None, b"").one, "n")
        self.assertEqual(parse_request(b"n=a&n=a", None, b"").one("n"), "a")
        self.assertRaises(BadRequest, parse_request(b"", "application/json",
                                                    b'{"n": [1]}').one, "n")

    def test_bool_and_int(self):
        self.assertTrue(parse_bool("x", "TRUE"))
        self.assertFalse(parse_bool("x", None))
        self.assertFalse(parse_bool("x", ""))
        self.assertRaises(BadRequest, parse_bool, "x", "maybe")
        self.assertEqual(parse_int("x", " 12 "), 12)
        self.assertIsNone(parse_int("x", "null"))
        self.assertRaises(BadRequest, parse_int, "x", "1.5")


class RouteTableTests(unittest.SynchronousTestCase):
    def test_listing_and_openapi_cover_the_same_routes(self):
        doc = document()
        listed = {tuple(line.split(" ", 1)) for line in listing()}
        self.assertEqual(listed, {(r.method, r.path) for r in ROUTES})
        ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
        self.assertEqual(ops, {(r.method, r.openapi_path) for r in ROUTES})
        for item in doc["paths"].values():
            for op in item.values():
                self.assertIn("401", op["responses"])
