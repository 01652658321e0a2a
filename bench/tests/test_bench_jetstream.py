"""The Jetstream bench's pure part: its report line from a result."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bench.jetstream import render


class RenderTests(SynchronousTestCase):
    def test_render(self) -> None:
        text = render({
            "rate": 2000.0, "down_seconds": 60.0,
            "steady": {"events_per_s": 2014.0, "cpu_s_per_million": 40.0, "cursor_lag_s": 0.036,
                       "peak_rss_mb": 90.4, "mean_event_bytes": 715.0},
            "catch_up": {"drain_seconds": 20.28, "events_replayed": 113957, "events_per_s": 5620.0,
                         "peak_events_per_s_1s": 9952.0, "cpu_s_per_million": 51.0,
                         "duplicates_dropped": 10029, "peak_rss_mb": 129.9},
            "check": {"delivered_total": 207669, "event_log_lines": 207669, "same": True}})
        self.assertIn("~715 B events", text)
        self.assertIn("113957 events drained in 20.28 s = 5620 events/s end to end", text)
        self.assertIn("(same)", text)
