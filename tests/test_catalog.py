"""The source table and the ``source:`` key: one place says what each source offers."""

from __future__ import annotations

from unittest import TestCase

from flamingo.config import ConfigError, from_mapping
from flamingo.domain import catalog
from flamingo.domain.store_rules import change_targets, validate_params
from flamingo.errors import ValidationError


class SourceKey(TestCase):
    def test_default_is_twitter_v11(self) -> None:
        c = from_mapping({"username": "u", "password": "p"})
        self.assertEqual((c.source, c.stream, c.api.url, c.auth),
                         ("twitter", "filter", "https://stream.twitter.com", "basic"))
        self.assertEqual(c.wader.stall_timeout, 90.0)

    def test_api_version_11_is_twitter(self) -> None:
        c = from_mapping({"api": {"version": "1.1"}, "username": "u", "password": "p"})
        self.assertEqual(c.source, "twitter")

    def test_contradiction_names_both_keys(self) -> None:
        with self.assertRaises(ConfigError) as e:
            from_mapping({"source": "jetstream", "api": {"version": "1.1"}})
        self.assertIn("source: jetstream", str(e.exception))
        self.assertIn("api.version", str(e.exception))

    def test_each_source_has_its_defaults(self) -> None:
        x = from_mapping({"source": "x", "bearer_token": "t"})
        self.assertEqual((x.stream, x.api.url, x.auth, x.wader.stall_timeout),
                         ("filter", "https://api.x.com", "bearer", 20.0))
        j = from_mapping({"source": "jetstream"})
        self.assertEqual((j.stream, j.api.url, j.auth, j.wader.stall_timeout),
                         ("subscribe", "wss://jetstream2.us-east.bsky.network", "none", 30.0))
        self.assertTrue(j.jetstream.compress)
        self.assertEqual(j.jetstream.rewind, 5.0)
        m = from_mapping({"source": "mastodon", "api": {"url": "https://mastodon.example"}, "bearer_token": "t",
                          "stream": "hashtag:local"})
        self.assertEqual((m.stream, m.auth, m.mastodon.gap_max), ("hashtag:local", "bearer", 2000))

    def test_mistakes_are_one_line_naming_the_key(self) -> None:
        cases = [
            ({"source": "facebook"}, "source"),
            ({"source": "x"}, "bearer_token"),
            ({"source": "mastodon", "bearer_token": "t"}, "api.url"),
            ({"source": "jetstream", "api": {"url": "https://x.example"}}, "api.url"),
            ({"source": "x", "bearer_token": "t", "stream": "subscribe"}, "stream"),
            ({"source": "x", "bearer_token": "t", "stream": "firehose"}, "x.partition"),
            ({"source": "x", "bearer_token": "t", "stream": "firehose", "x": {"partition": 21}}, "x.partition"),
            ({"source": "x", "bearer_token": "t", "x": {"partition": 1}}, "x.partition"),
            ({"source": "x", "bearer_token": "t", "x": {"backfill_minutes": 6}}, "x.backfill_minutes"),
            ({"source": "mastodon", "api": {"url": "https://m.example"}, "bearer_token": "t",
              "mastodon": {"transport": "carrier-pigeon"}}, "mastodon.transport"),
            ({"source": "jetstream", "auth": "basic"}, "auth"),
        ]
        for data, key in cases:
            with self.subTest(data=data), self.assertRaises(ConfigError) as e:
                from_mapping(data)
            self.assertEqual(e.exception.key, key, str(e.exception))
            self.assertNotIn("\n", str(e.exception))


class Catalog(TestCase):
    def test_every_stream_listed_once(self) -> None:
        streams = catalog.all_streams()
        self.assertEqual(len(streams), len(set(streams)))
        self.assertIn("subscribe", streams)
        self.assertIn("hashtag:local", streams)

    def test_params_checked_per_source(self) -> None:
        validate_params("subscribe", {"wantedCollections": ["app.bsky.feed.post"]}, "jetstream")
        with self.assertRaises(ValidationError) as e:
            validate_params("subscribe", {"track": ["x"]}, "jetstream")
        self.assertIn("wantedCollections", str(e.exception))
        with self.assertRaises(ValidationError):
            validate_params("filter", {"track": ["x"]}, "x")  # rules, not params

    def test_change_notices_with_colon_streams(self) -> None:
        self.assertEqual(change_targets("params:hashtag:local:tag"), [("params", "hashtag:local", "tag")])
        self.assertEqual(change_targets("params:hashtag:local"), [("params", "hashtag:local", None)])
        self.assertEqual(change_targets("params:subscribe:wantedDids"), [("params", "subscribe", "wantedDids")])
        self.assertEqual(change_targets("params:filter:track"), [("params", "filter", "track")])


class JournalTailRead(TestCase):
    def test_tail_is_the_last_events_oldest_first(self) -> None:
        import tempfile

        from flamingo.dispatch.journal import Journal

        with tempfile.TemporaryDirectory() as d:
            j = Journal(d, kind="event", fsync="no", rotate_events=3).open()
            self.assertEqual(j.tail(5), [])
            for i in range(10):
                j.append([b'{"n":%d}' % i])
            self.assertEqual(j.tail(4), [b'{"n":6}', b'{"n":7}', b'{"n":8}', b'{"n":9}'])
            self.assertEqual(len(j.tail(100)), 10)
            j.close()

    def test_tail_keeps_the_newest_when_the_byte_cap_bites(self) -> None:
        import tempfile

        from flamingo.dispatch.journal import Journal

        with tempfile.TemporaryDirectory() as d:
            j = Journal(d, kind="event", fsync="no", rotate_events=3).open()
            for i in range(10):
                j.append([b'{"n":%d}' % i])  # 7 bytes each
            self.assertEqual(j.tail(10, max_bytes=21), [b'{"n":7}', b'{"n":8}', b'{"n":9}'])
            self.assertEqual(j.tail(2, max_bytes=1000), [b'{"n":8}', b'{"n":9}'])
            j.close()


class SurfacesReadTheCatalog(TestCase):
    def test_dashboard_offers_each_sources_params(self) -> None:
        from flamingo.web.dashboard import param_keys

        self.assertEqual(param_keys("twitter", "filter"), ("track", "follow", "locations"))
        self.assertEqual(param_keys("jetstream", "subscribe"), ("wantedCollections", "wantedDids"))
        self.assertEqual(param_keys("mastodon", "hashtag"), ("tag", "list"))
        self.assertEqual(param_keys("x", "filter"), ())

    def test_openapi_names_every_sources_streams(self) -> None:
        from flamingo.web.openapi import document

        text = str(document())
        for stream in ("subscribe", "hashtag:local", "sample10", "firehose"):
            self.assertIn(stream, text)
