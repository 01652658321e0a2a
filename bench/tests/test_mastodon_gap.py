"""The Mastodon gap-fill measurement runs and reports (a small gap)."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from bench.mastodon_gap import measure


class MastodonGapBenchTests(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_a_small_gap_is_measured(self) -> Any:
        seconds, pages, size = yield measure(reactor, 120)
        self.assertGreater(seconds, 0)
        self.assertGreaterEqual(pages, 3)  # 40 a page
        self.assertGreater(size, 2000)

    @defer.inlineCallbacks
    def test_live_statuses_are_measured(self) -> Any:
        from bench.mastodon_gap import measure_live

        for transport in ("websocket", "sse"):
            seconds, size = yield measure_live(reactor, 200, transport)
            self.assertGreater(seconds, 0)
            self.assertGreater(size, 2000)
