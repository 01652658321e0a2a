"""Routing X posts by rule tag (pure): a subscription with ``rules`` gets the posts whose
``matching_rules`` names one of its tags, each post once, whatever the number of rules."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from flamingo.console.namespace import build_namespace
from flamingo.dispatch.routing import Routes
from flamingo.domain.subscription import Subscription
from flamingo.errors import FlamingoError, ValidationError
from flamingo.sources.x_messages import x_message_type
from flamingo.web.openapi import document
from tests.support.http import Stub
from tests.support.parts import make_app, make_config, make_store


def post(i: int, *tags: str | None) -> bytes:
    doc: dict[str, Any] = {"data": {"id": str(i), "text": f"post {i}"}}
    if tags:
        doc["matching_rules"] = [{"id": str(n), **({"tag": t} if t is not None else {})}
                                 for n, t in enumerate(tags)]
    return json.dumps(doc).encode()


def route(frames: list[bytes], sub: Subscription) -> list[bytes]:
    types = [x_message_type(f) for f in frames]
    return Routes(frames, types, lambda terms: None).values_for(sub)  # type: ignore[arg-type, return-value]


class RuleRoutingTests(SynchronousTestCase):
    def test_by_tag(self) -> None:
        frames = [post(1, "py"), post(2, "love"), post(3, "py", "love"), post(4), post(5, None),
                  b'{"errors":[{"title":"operational-disconnect"}]}']
        self.assertEqual(route(frames, Subscription.create("a", rules="py")), [frames[0], frames[2]])
        self.assertEqual(route(frames, Subscription.create("b", rules=["love", "nothing"])), [frames[1], frames[2]])
        self.assertEqual(route(frames, Subscription.create("c")), frames)  # no rules option: everything
        env = route(frames, Subscription.create("d", rules="py", format="envelope"))
        self.assertEqual([json.loads(e)["type"] for e in env], ["tweet", "tweet"])

    @given(st.lists(st.lists(st.sampled_from(["a", "b", "c", None]), max_size=4), max_size=20),
           st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3))
    def test_each_post_once_per_subscription(self, tag_lists: list[list[str | None]], wanted: list[str]) -> None:
        frames = [post(i, *tags) for i, tags in enumerate(tag_lists)]
        got = route(frames, Subscription.create("s", rules=wanted))
        expect = [f for f, tags in zip(frames, tag_lists) if set(tags) & set(wanted)]
        self.assertEqual(got, expect)

    def test_the_option_round_trips_and_is_checked(self) -> None:
        sub = Subscription.create("py", rules="py, love ,py")
        self.assertEqual(sub.rules, ("py", "love"))
        self.assertEqual(Subscription.from_hash("py", sub.to_hash()), sub)
        self.assertEqual(sub.to_dict()["rules"], ["py", "love"])
        self.assertNotIn("rules", Subscription.create("plain").to_dict())
        for bad in (["x" * 257], [3], "a," * 401):
            with self.assertRaises(ValidationError):
                Subscription.create("bad", rules=bad)


class OtherSourcesTests(TestCase):
    """A daemon that is not an X filter stream has no rules: REST says 404, the console one line."""

    @defer.inlineCallbacks
    def test_no_rules_elsewhere(self) -> Any:
        store = yield make_store(self)
        app = make_app(make_config(), store)
        api = Stub(self, app)
        response, _, doc = yield api.request("GET", "/streams/filter/rules.json")
        self.assertEqual(response.code, 404)
        self.assertIn("source: x", doc["error"])
        response, _, doc = yield api.request("POST", "/streams/filter/rules.json", data={"value": "x"})
        self.assertEqual(response.code, 404)
        # a param named rules is not shadowed into a param route either
        response, _, _ = yield api.request("PUT", "/streams/filter/rules.json?values=a")
        self.assertEqual(response.code, 405)
        response, _, doc = yield api.request("GET", "/streams/filter/track.json")
        self.assertEqual(response.code, 200)
        ns = build_namespace(app, lambda d, label: None)
        with self.assertRaises(FlamingoError) as e:
            ns["Stream"].get("filter").rules  # noqa: B018 - the property raises
        self.assertIn("source: x", str(e.exception))
        paths = document()["paths"]
        self.assertEqual(sorted(paths["/streams/filter/rules.json"]), ["delete", "get", "post"])


class StatusTextTests(SynchronousTestCase):
    def test_flamingo_status_shows_the_rule_sync(self) -> None:
        from flamingo.cli.format import show_status

        text = show_status({"wader": {"name": "connected"}, "redis": {"available": True},
                            "rules": {"active": 2, "pending": 1, "rejected": 1, "last_sync": None,
                                      "error": "HTTP 503"}})
        self.assertIn("2 active, 1 pending, 1 rejected", text)
        self.assertIn("HTTP 503", text)
        self.assertNotIn("rules", show_status({"wader": {"name": "connected"}}))
