"""``/ready`` (readiness) next to ``/health`` (liveness): every stall shows
as a reason while /health stays 200. The stuck timer runs on a Clock; the
API is served in memory (StubTreq) over a real Store on the test Redis."""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from flamingo.config import from_mapping
from flamingo.web.api import FlamingoApi
from flamingo.web.health import ProgressWatch
from tests.support.parts import SECRET_PASSWORD, FakeDelivery, make_app, make_store
from tests.support.redis import free_port


def _config(stuck_after: float | None = None) -> Any:
    data: dict[str, Any] = {"username": "u", "password": SECRET_PASSWORD}
    if stuck_after is not None:
        data["health"] = {"stuck_after": stuck_after}
    return from_mapping(data, environ={})


class SinkDelivery(FakeDelivery):
    """A delivery whose sink status the test moves: checkpoint, backlog, progress_at."""

    def __init__(self) -> None:
        super().__init__()
        self.redis = {"connected": True, "checkpoint": 100, "backlog": 0, "error": None}

    def status(self) -> dict[str, Any]:
        return {"journal": dict(self.journal), "redis": dict(self.redis),
                "backlog": self.redis["backlog"]}


class ReadyTestCase(unittest.TestCase):
    timeout = 30
    stuck_after: float | None = None
    redis_down = False

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        if self.redis_down:
            # Store.stop leaves its in-flight health-check ping's timeout behind
            self.addCleanup(task.deferLater, reactor, 0.4, lambda: None)
            self.store = yield make_store(self, redis_port=free_port(), timeout=0.3)
        else:
            self.store = yield make_store(self)
        self.clock = task.Clock()
        self.delivery = SinkDelivery()
        self.app = attrs.evolve(make_app(_config(self.stuck_after), self.store), delivery=self.delivery)
        self.serve()

    def serve(self) -> None:
        self.api = FlamingoApi(self.app, clock=self.clock)
        self.http = StubTreq(self.api.resource())

    @defer.inlineCallbacks
    def get(self, path: str, status: int) -> Any:
        response = yield self.http.get("http://127.0.0.1" + path)
        self.assertEqual(response.code, status, path)
        if path == "/metrics":
            text = yield response.text()
            return {(s.name, tuple(sorted(s.labels.items()))): s.value
                    for f in text_string_to_metric_families(text) for s in f.samples}
        doc = yield response.json()
        return doc

    @defer.inlineCallbacks
    def reasons(self, status: int) -> Any:
        doc = yield self.get("/ready", status)
        health = yield self.get("/health", 200)  # liveness never follows a stall
        self.assertEqual(health["status"], "ok")
        return [r["reason"] for r in doc["reasons"]]

    def stall(self, backlog: int = 120) -> None:
        self.delivery.redis.update(backlog=backlog)

    def deliver(self, n: int = 10) -> None:
        self.delivery.redis["checkpoint"] += n


class StuckTimerTests(ReadyTestCase):
    @defer.inlineCallbacks
    def test_tracked_from_the_checkpoint_when_the_sink_gives_no_progress_at(self) -> Any:
        doc = yield self.get("/ready", 200)
        self.assertEqual(doc, {"status": "ready", "reasons": []})
        self.stall()
        self.clock.advance(30)
        self.assertEqual((yield self.reasons(200)), [])
        self.deliver()  # it moved: the timer starts again
        self.api.readiness.stalled()
        self.clock.advance(59)
        self.assertEqual((yield self.reasons(200)), [])
        self.clock.advance(1)
        doc = yield self.get("/ready", 503)
        self.assertEqual(doc["status"], "not ready")
        self.assertEqual([r["reason"] for r in doc["reasons"]], ["sink_stuck"])
        self.assertIn("120 events has not moved for 60s", doc["detail"])
        self.assertEqual(doc["error"], "not ready")
        self.deliver()
        self.assertEqual((yield self.reasons(200)), [])
        self.clock.advance(600)
        self.delivery.redis.update(backlog=0)  # caught up: nothing to move is not stuck
        self.assertEqual((yield self.reasons(200)), [])

    @defer.inlineCallbacks
    def test_progress_at_from_the_sink_wins(self) -> Any:
        self.clock.advance(1000)
        self.stall()
        self.delivery.redis["progress_at"] = 1000.0 - 61  # stalled before anyone asked
        self.assertEqual((yield self.reasons(503)), ["sink_stuck"])
        self.deliver()  # the checkpoint moved but progress_at says when the last commit was
        self.delivery.redis["progress_at"] = 1000.0
        self.assertEqual((yield self.reasons(200)), [])
        self.clock.advance(59.5)
        self.assertEqual((yield self.reasons(200)), [])
        self.clock.advance(0.5)
        self.assertEqual((yield self.reasons(503)), ["sink_stuck"])

    @defer.inlineCallbacks
    def test_metrics_carry_the_same(self) -> Any:
        m = yield self.get("/metrics", 200)
        self.assertEqual(m[("flamingo_ready", ())], 1.0)
        self.assertEqual(m[("flamingo_not_ready", (("reason", "sink_stuck"),))], 0.0)
        self.assertEqual(m[("flamingo_sink_stalled_seconds", ())], 0.0)
        self.stall()
        self.clock.advance(61)
        self.delivery.redis["progress_at"] = 0.0
        m = yield self.get("/metrics", 200)
        self.assertEqual(m[("flamingo_ready", ())], 0.0)
        self.assertEqual(m[("flamingo_sink_stalled_seconds", ())], 61.0)
        for reason in ("journal", "store", "sink_error", "sink_stuck", "wader_fatal"):
            self.assertEqual(m[("flamingo_not_ready", (("reason", reason),))],
                             1.0 if reason == "sink_stuck" else 0.0, reason)


class ShortStuckAfterTests(ReadyTestCase):
    stuck_after = 5.0

    @defer.inlineCallbacks
    def test_health_stuck_after_is_the_threshold(self) -> Any:
        self.assertEqual(self.app.config.health.stuck_after, 5.0)
        self.stall()
        yield self.reasons(200)
        self.clock.advance(5)
        self.assertEqual((yield self.reasons(503)), ["sink_stuck"])


class OtherReasonTests(ReadyTestCase):
    @defer.inlineCallbacks
    def test_sink_error_wader_fatal_journal(self) -> Any:
        self.delivery.redis["error"] = "ERR checkpoint is not an integer"
        self.app.wader.state = attrs.evolve(self.app.wader.state, name="fatal",
                                            message="HTTP 401 Unauthorized")
        doc = yield self.get("/ready", 503)
        self.assertEqual(doc["reasons"], [
            {"reason": "sink_error", "detail": "ERR checkpoint is not an integer"},
            {"reason": "wader_fatal", "detail": "HTTP 401 Unauthorized"}])
        self.delivery.journal.update(writable=False, error="disk full")
        doc = yield self.get("/ready", 503)
        self.assertEqual(doc["reasons"][0], {"reason": "journal", "detail": "disk full"})
        yield self.get("/health", 503)  # a journal that cannot write is a liveness failure

    @defer.inlineCallbacks
    def test_store_not_started(self) -> Any:
        self.app = attrs.evolve(self.app, store=None)
        self.serve()
        doc = yield self.get("/ready", 503)
        self.assertEqual(doc["reasons"], [{"reason": "store", "detail": "store not started"}])

    @defer.inlineCallbacks
    def test_route_listed(self) -> Any:
        response = yield self.http.get("http://127.0.0.1/")
        text = yield response.text()
        self.assertIn("GET /ready", text.splitlines())
        doc = yield self.get("/openapi.json", 200)
        self.assertEqual(set(doc["paths"]["/ready"]["get"]["responses"]),
                         {"200", "401", "403", "421", "503"})


class RedisDownReadyTests(ReadyTestCase):
    redis_down = True

    @defer.inlineCallbacks
    def test_an_unmoving_backlog_while_redis_is_down_is_not_stuck(self) -> Any:
        self.assertFalse(self.store.available)
        self.stall()
        self.assertEqual((yield self.reasons(503)), ["store"])
        self.clock.advance(600)  # the backlog grows, the checkpoint waits for Redis
        self.assertEqual((yield self.reasons(503)), ["store"])
        self.assertEqual(self.api.readiness.stalled(), 600.0)  # timed, but not blamed


class SampleTests(unittest.TestCase):
    """The web service samples the sink every second, so a stall that began
    before the first probe is timed from when it began."""

    timeout = 30

    @defer.inlineCallbacks
    def test_sampled_while_serving(self) -> Any:
        from twisted.internet.endpoints import serverFromString

        from flamingo.web.server import WebService, make_site

        store = yield make_store(self)
        clock = task.Clock()
        delivery = SinkDelivery()
        app = attrs.evolve(make_app(_config(), store), reactor=clock, delivery=delivery)
        delivery.redis["backlog"] = 50
        site = make_site(app)
        service = WebService(serverFromString(reactor, "tcp:0:interface=127.0.0.1"), site, clock)
        service.startService()
        self.addCleanup(service.stopService)
        clock.pump([1.0] * 60)
        http = StubTreq(site.resource)
        response = yield http.get("http://127.0.0.1/ready")
        doc = yield response.json()
        self.assertEqual(response.code, 503, doc)
        self.assertEqual([r["reason"] for r in doc["reasons"]], ["sink_stuck"])


class ProgressWatchTests(unittest.SynchronousTestCase):
    @given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.floats(0, 100)),
                    min_size=1, max_size=30))
    def test_moved_at_is_the_last_change_or_empty_backlog(self, steps: list[Any]) -> None:
        watch = ProgressWatch()
        now = 0.0
        last: Any = None
        moved = 0.0
        for checkpoint, backlog, dt in steps:
            now += dt
            if last is None or backlog == 0 or checkpoint != last:
                moved = now
            last = checkpoint
            self.assertEqual(watch.observe(checkpoint, backlog, now), moved)
            self.assertLessEqual(moved, now)


class LivenessWithoutJournal(unittest.SynchronousTestCase):
    def test_a_delivery_that_reports_no_journal_is_not_live(self) -> None:
        """No part of the daemon runs without a journal: its absence is a fault, not a pass."""
        from twisted.internet.task import Clock

        from flamingo.app import App
        from flamingo.web.health import liveness
        from tests.support.parts import make_config

        class NoJournal:
            def status(self) -> dict[str, Any]:
                return {"redis": {"connected": True}, "backlog": 0}

        ok, checks = liveness(App(make_config(), Clock(), delivery=NoJournal()))
        self.assertFalse(ok)
        self.assertEqual(checks["journal"], {"ok": False, "reason": "delivery reports no journal"})
