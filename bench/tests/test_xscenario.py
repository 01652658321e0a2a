"""The X scenario's pieces (pure): the daemon's config and the report row."""

from __future__ import annotations

import shutil

from twisted.trial.unittest import SynchronousTestCase

from bench import report
from bench.daemon import SubSpec
from bench.run import SCENARIOS
from bench.xscenario import EMULATOR_ARGS, X_TOKEN, XFlamingod


class XScenarioTests(SynchronousTestCase):
    def test_the_daemon_reads_x_with_a_bearer_token(self) -> None:
        d = XFlamingod("http://127.0.0.1:1", "u", "p", 6379, [SubSpec("raw")], gzip=False)
        self.addCleanup(shutil.rmtree, d.dir, True)
        self.assertEqual((d.config["source"], d.config["stream"], d.config["bearer_token"]), ("x", "sample", X_TOKEN))
        self.assertNotIn("username", d.config)
        self.assertNotIn("auth", d.config)
        self.assertIn(X_TOKEN, EMULATOR_ARGS)

    def test_x_rows_are_not_compared_with_v1_limits(self) -> None:
        x = next(s for s in SCENARIOS if s.source == "x")
        sc = {"title": x.title, "size": "small", "gzip": False, "source": "x", "subscriptions": ["raw (raw)"],
              "events_per_s": 1000.0, "peak_rss_mb": 80, "cpu_s_per_million": 9.0, "log_covers_redis": True}
        results = {"scenarios": {x.key: sc}, "limits": {"small": {"curl_events_per_s": 5.0}},
                   "baselines": {"small": {"events_per_s": 1.0}}}
        row = report.derive(results)[0]
        self.assertIsNone(row["vs_curl_limit"])
        self.assertIsNone(row["vs_baseline"])
