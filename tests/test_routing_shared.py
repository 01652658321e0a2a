"""A format's payloads are built once per batch and shared by every subscription of that format."""

from __future__ import annotations

import orjson
from twisted.trial.unittest import SynchronousTestCase

from flamingo.dispatch import payloads
from flamingo.dispatch.routing import Routes
from flamingo.domain.matching import TermMatcher
from flamingo.domain.subscription import Subscription


def tweet(i: int, text: str = "hello") -> bytes:
    return orjson.dumps({"created_at": "x", "id": i, "text": text, "entities": {}})


class SharedPayloadTests(SynchronousTestCase):
    def routes(self, frames, types):
        return Routes(frames, types, lambda terms: TermMatcher(terms))

    def test_same_format_same_objects_and_bytes_as_built_alone(self):
        frames = [tweet(1), tweet(2, "i love python"), b'{"delete":{"status":{"id":1}}}']
        types = ["tweet", "tweet", "delete"]
        r = self.routes(frames, types)
        a = r.values_for(Subscription.create("a", format="envelope"))
        b = r.values_for(Subscription.create("b", format="envelope"))
        f = r.values_for(Subscription.create("f", format="envelope", filter=["python"]))
        self.assertIs(a, b)
        self.assertIs(f[0], a[1])  # the filtered subscription's payload is the same object
        self.assertEqual(a, [payloads.envelope(fr, t) for fr, t in zip(frames, types)])
        self.assertEqual(orjson.loads(a[2]), {"type": "delete", "event": {"delete": {"status": {"id": 1}}}})
        q = r.values_for(Subscription.create("q", format="resque"))
        self.assertEqual(orjson.loads(q[1]), {"class": "HandleFlamingoEvent",
                                              "args": ["tweet", orjson.loads(frames[1])]})
        self.assertIs(r.values_for(Subscription.create("raw")), frames)

    def test_invalid_lines_kept_out_and_embedded_as_strings_where_asked(self):
        frames = [tweet(1), b"Exceeded connection limit for user", tweet(2)]
        types = ["tweet", "invalid", "tweet"]
        r = self.routes(frames, types)
        env = r.values_for(Subscription.create("e", format="envelope"))
        self.assertEqual(len(env), 2)
        self.assertIs(r.values_for(Subscription.create("e2", format="envelope")), env)
        self.assertEqual(r.values_for(Subscription.create("raw")), [frames[0], frames[2]])
        inv = r.values_for(Subscription.create("i", format="envelope", types=["invalid"]))
        self.assertEqual(orjson.loads(inv[0]), {"type": "invalid", "event": "Exceeded connection limit for user"})

    def test_type_heads_cache_is_bounded(self):
        for i in range(payloads._HEADS_MAX + 50):
            v = payloads.envelope(b"{}", f"kind{i}")
            self.assertEqual(orjson.loads(v), {"type": f"kind{i}", "event": {}})
        self.assertLessEqual(len(payloads._ENVELOPE_HEADS), payloads._HEADS_MAX)
