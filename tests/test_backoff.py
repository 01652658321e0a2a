"""Reconnect schedules: the documented numbers, per cause, and their resets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from flamingo.config import Backoff, BackoffConfig
from flamingo.stream.backoff import Backoffs, cause_for_status, policy


class PolicyTests(SynchronousTestCase):
    def test_network_linear(self) -> None:
        p = policy(BackoffConfig().network)
        self.assertEqual([p(n) for n in range(1, 6)], [0.25, 0.5, 0.75, 1.0, 1.25])
        self.assertEqual(p(64), 16.0)
        self.assertEqual(p(10_000), 16.0)

    def test_http_exponential(self) -> None:
        p = policy(BackoffConfig().http)
        self.assertEqual([p(n) for n in range(1, 9)], [5, 10, 20, 40, 80, 160, 320, 320])

    def test_rate_limit(self) -> None:
        p = policy(BackoffConfig().rate_limit)
        self.assertEqual([p(n) for n in range(1, 7)], [60, 120, 240, 480, 960, 960])

    def test_attempt_zero_is_now(self) -> None:
        self.assertEqual(policy(BackoffConfig().http)(0), 0.0)

    @given(st.floats(0, 100), st.floats(0, 10), st.floats(1, 4), st.floats(0, 1000),
           st.integers(0, 10**9))
    def test_never_above_cap_never_negative(self, initial, step, factor, extra, n) -> None:
        b = Backoff(initial=initial, step=step, factor=factor, cap=initial + extra)
        d = policy(b)(n)
        self.assertTrue(0 <= d <= b.cap)

    @given(st.integers(1, 200))
    def test_monotonic(self, n) -> None:
        for b in (BackoffConfig().network, BackoffConfig().http, BackoffConfig().rate_limit):
            self.assertLessEqual(policy(b)(n), policy(b)(n + 1))


class CauseTests(SynchronousTestCase):
    def test_classes(self) -> None:
        for code in (401, 403, 404, 406, 413, 416):
            self.assertEqual(cause_for_status(code), "fatal")
        self.assertEqual(cause_for_status(420), "rate_limit")
        self.assertEqual(cause_for_status(429), "rate_limit")
        for code in (500, 502, 503, 504, 400, 410):
            self.assertEqual(cause_for_status(code), "http")


class BackoffsTests(SynchronousTestCase):
    def test_counters_per_cause_and_reset(self) -> None:
        b = Backoffs()
        self.assertEqual([b.next_delay("http") for _ in range(3)], [5, 10, 20])
        self.assertEqual(b.next_delay("network"), 0.25)
        self.assertEqual(b.next_delay("rate_limit"), 60)
        self.assertEqual(b.attempt("http"), 3)
        b.reset()
        self.assertEqual(b.next_delay("http"), 5)

    def test_dropped_is_at_once_then_network_schedule(self) -> None:
        b = Backoffs()
        self.assertEqual(b.next_delay("dropped"), 0.0)
        self.assertEqual(b.next_delay("dropped"), 0.25)
        self.assertEqual(b.next_delay("stall"), 0.75)

    def test_stall_uses_network_schedule(self) -> None:
        b = Backoffs()
        self.assertEqual([b.next_delay("stall") for _ in range(3)], [0.25, 0.5, 0.75])
