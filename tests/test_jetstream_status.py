"""Jetstream's cursor and lag where a user looks: /status.json, /meta.json, /metrics, the console."""

from __future__ import annotations

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from flamingo.app import App, Started
from flamingo.config import from_mapping
from flamingo.console.namespace import build_namespace
from flamingo.dispatch.stats import Stats
from flamingo.sources.registry import build_source
from flamingo.web import documents
from flamingo.web.metrics import Metrics
from tests.support.parts import FakeDelivery, FakeWader


class CursorStatusTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_700_000_010)
        config = from_mapping({"source": "jetstream", "jetstream": {"rewind": 5}}, environ={})
        self.stats = Stats(clock=self.clock)
        self.source = build_source(config, self.clock, self.clock, self.stats, None)
        self.source.request({})
        self.source.decode(b'{"did":"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa","time_us":1700000000000000,'  # type: ignore[attr-defined]
                           b'"kind":"identity","identity":{}}', False)
        self.app = App(config=config, reactor=self.clock, store=None, stats=self.stats, wader=FakeWader(),
                       delivery=FakeDelivery(), started=Started(1_700_000_000))

    def test_status_and_meta(self) -> None:
        status = documents.status_document(self.app, self.clock.seconds())
        self.assertEqual(status["source"], "jetstream")
        self.assertEqual(status["cursor"]["time_us"], 1_700_000_000_000_000)
        self.assertEqual(status["cursor"]["lag_seconds"], 10.0)
        self.assertEqual(status["cursor"]["rewind_seconds"], 5.0)
        meta = documents.meta_document(self.app, self.clock.seconds())
        self.assertEqual(meta["cursor"]["time_us"], 1_700_000_000_000_000)

    def test_metrics(self) -> None:
        text = Metrics(self.app).render().decode()
        self.assertIn("flamingo_cursor_time_us 1.7e+15", text)
        self.assertIn("flamingo_cursor_lag_seconds 10.0", text)

    def test_console(self) -> None:
        ns = build_namespace(self.app, lambda d, label: None)
        self.assertEqual(ns["status"]()["cursor"]["time_us"], 1_700_000_000_000_000)
        self.assertEqual(ns["meta"]()["cursor"]["lag_seconds"], 10.0)

    def test_cli_status_shows_the_cursor(self) -> None:
        from flamingo.cli.format import show_status

        text = show_status(documents.status_document(self.app, self.clock.seconds()))
        self.assertIn("cursor", text)
        self.assertIn("1700000000000000 (lag 10.0 s)", text)

    def test_twitter_has_no_cursor(self) -> None:
        config = from_mapping({"username": "u", "password": "p"}, environ={})
        app = App(config=config, reactor=self.clock, store=None, stats=Stats(clock=self.clock),
                  wader=FakeWader(), delivery=FakeDelivery(), started=Started(1))
        self.assertIsNone(documents.status_document(app, 2)["cursor"])
