"""The X emulator's limits and faults: one connection per stream, connect rate, operational disconnects,
scripted statuses (for N attempts or N seconds), in-stream errors, stalls; and the CLI flags."""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from flamingo.emulator.cli import build_parser, options_from_args
from tests.support.emulator import request
from tests.support.xemu import FILTER, call, lines, posts, rules_post, start_x_emulator, stream

SAMPLE = "/2/tweets/sample/stream"
CONNECTION_EXCEPTION = {"title": "ConnectionException",
                        "detail": "This stream is currently at the maximum allowed connection limit.",
                        "type": "https://api.x.com/2/problems/streaming-connection",
                        "connection_issue": "TooManyConnections"}


def body_of(client: Any) -> Any:
    return orjson.loads(client.raw.split(b"\r\n\r\n", 1)[1])


class ConnectionLimitTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_a_second_connection_gets_too_many_connections(self) -> Any:
        emu = start_x_emulator(self, allow_no_rules=True)
        first = yield stream(self, emu, FILTER)
        self.assertEqual(first.status, 200)
        second = yield request(emu.port, "GET", FILTER, testcase=self)
        yield second.closed
        self.assertEqual(second.status, 429)
        self.assertEqual(body_of(second), CONNECTION_EXCEPTION)
        self.assertIsNotNone(second.header("x-rate-limit-reset"))
        self.assertEqual(emu.x.counters["too_many_connections"], 1)
        # other streams have their own allowance
        other = yield stream(self, emu, SAMPLE)
        self.assertEqual(other.status, 200)
        # once the first is gone, the app may connect again
        yield first.close()
        yield self._until_open(emu, FILTER, 0)
        third = yield stream(self, emu, FILTER)
        self.assertEqual(third.status, 200)

    @defer.inlineCallbacks
    def _until_open(self, emu: Any, path: str, n: int) -> Any:
        from tests.support.waiting import until

        yield until(lambda: len([s for s in emu.x.open.get((path, None), []) if not s.closed]) == n)

    @defer.inlineCallbacks
    def test_the_connections_api_lists_and_ends_a_stale_connection(self) -> Any:
        emu = start_x_emulator(self, allow_no_rules=True)
        stale = yield stream(self, emu, FILTER)
        listed = yield call(emu, "GET", "/2/connections")
        self.assertEqual(listed.status, 200)
        (active,) = listed.json()["data"]
        self.assertEqual(active["endpoint_name"], "filtered_stream")
        self.assertNotIn("disconnected_at", active)
        killed = yield call(emu, "DELETE", "/2/connections/all")
        self.assertEqual(killed.json()["data"], {"successful_kills": 1, "failed_kills": 0,
                                                 "results": [{"uuid": active["id"], "success": True}]})
        yield stale.closed
        fresh = yield stream(self, emu, FILTER)
        self.assertEqual(fresh.status, 200)
        old = yield call(emu, "GET", "/2/connections", status="inactive")
        (gone,) = old.json()["data"]
        self.assertEqual(gone["id"], active["id"])
        self.assertIn("DELETE /2/connections/all", gone["disconnect_reason"])
        everything = yield call(emu, "GET", "/2/connections", status="all", max_results=1)
        self.assertEqual(everything.json()["meta"]["result_count"], 1)
        self.assertIn("next_token", everything.json()["meta"])
        bad = yield call(emu, "GET", "/2/connections", status="sometimes")
        self.assertEqual(bad.status, 400)

    @defer.inlineCallbacks
    def test_a_vanished_client_still_counts_for_stale_seconds(self) -> Any:
        clock = Clock()
        emu = start_x_emulator(self, clock=clock, allow_no_rules=True, stale_seconds=30)
        first = yield stream(self, emu, FILTER)
        yield first.close()
        yield emu.streams_closed()
        refused = yield request(emu.port, "GET", FILTER, testcase=self)
        yield refused.closed
        self.assertEqual(refused.status, 429)
        self.assertEqual(body_of(refused)["connection_issue"], "TooManyConnections")
        listed = yield call(emu, "GET", "/2/connections")
        self.assertEqual(len(listed.json()["data"]), 1)  # X still sees it
        clock.advance(30)
        again = yield stream(self, emu, FILTER)
        self.assertEqual(again.status, 200)
        yield again.close()
        yield emu.streams_closed()
        # ... or the app ends it at once
        killed = yield call(emu, "DELETE", "/2/connections/all")
        self.assertEqual(killed.json()["data"]["successful_kills"], 1)
        fresh = yield stream(self, emu, FILTER)
        self.assertEqual(fresh.status, 200)
        gone = yield call(emu, "GET", "/2/connections", status="inactive")
        self.assertEqual([c["disconnect_reason"] for c in gone.json()["data"]],
                         ["terminated by DELETE /2/connections/all", "stale connection timed out"])

    @defer.inlineCallbacks
    def test_pending_rule_changes_do_not_outlive_the_emulator(self) -> Any:
        from twisted.internet import reactor

        emu = start_x_emulator(self, rules_delay=60)
        yield rules_post(emu, {"add": [{"value": "cat"}]})
        calls = len(reactor.getDelayedCalls())
        yield emu.stop()
        self.assertLess(len(reactor.getDelayedCalls()), calls)
        self.assertEqual(emu.x.rules.effective, ())

    @defer.inlineCallbacks
    def test_enterprise_allows_two(self) -> Any:
        emu = start_x_emulator(self, tier="enterprise", allow_no_rules=True)
        for expected in (200, 200, 429):
            client = yield stream(self, emu, FILTER)
            self.assertEqual(client.status, expected)

    @defer.inlineCallbacks
    def test_partitions_are_separate_connections(self) -> Any:
        emu = start_x_emulator(self)
        for part in (1, 2, 1):
            client = yield stream(self, emu, "/2/tweets/firehose/stream", partition=part)
        self.assertEqual(client.status, 429)

    @defer.inlineCallbacks
    def test_connect_rate_limit(self) -> Any:
        clock = Clock()
        emu = start_x_emulator(self, clock=clock, connect_rate=2)
        for _ in range(2):
            client = yield stream(self, emu, SAMPLE)
            self.assertEqual(client.status, 200)
            self.assertEqual(client.header("x-rate-limit-limit"), "2")
            yield client.close()
        client = yield request(emu.port, "GET", SAMPLE, testcase=self)
        yield client.closed
        self.assertEqual(client.status, 429)
        self.assertEqual(body_of(client)["title"], "Too Many Requests")
        self.assertEqual(client.header("x-rate-limit-remaining"), "0")
        clock.advance(900)
        client = yield stream(self, emu, SAMPLE)
        self.assertEqual(client.status, 200)


class InStreamErrorTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_operational_disconnect_line_then_close(self) -> Any:
        emu = start_x_emulator(self)
        emu.faults.disconnect(1, after=5)
        client = yield stream(self, emu, SAMPLE)
        yield client.closed
        got = posts(client)
        self.assertEqual(len(got), 6)
        self.assertTrue(all("data" in p for p in got[:5]))
        error = got[5]["errors"][0]
        self.assertEqual(error["title"], "operational-disconnect")
        self.assertEqual(error["disconnect_type"], "UpstreamOperationalDisconnect")
        self.assertEqual(error["type"], "https://api.x.com/2/problems/operational-disconnect")
        self.assertIn("operational-disconnect", emu.journal[0].close_reason)

    @defer.inlineCallbacks
    def test_shutdown_sends_operational_disconnect_to_every_stream(self) -> Any:
        clock = Clock()
        emu = start_x_emulator(self, clock=clock, rate=1, allow_no_rules=True)
        client = yield stream(self, emu, FILTER)
        emu.broadcast_disconnect(1, "Shutdown")
        yield client.closed
        self.assertEqual(posts(client)[-1]["errors"][0]["title"], "operational-disconnect")

    @defer.inlineCallbacks
    def test_connection_limit_fault_is_the_too_many_connections_line(self) -> Any:
        emu = start_x_emulator(self)
        emu.faults.connection_limit(after=2)
        client = yield stream(self, emu, SAMPLE)
        yield client.closed
        self.assertEqual(posts(client)[-1], {"errors": [CONNECTION_EXCEPTION]})

    @defer.inlineCallbacks
    def test_stall_sends_nothing_not_even_keepalives(self) -> Any:
        clock = Clock()
        emu = start_x_emulator(self, clock=clock, rate=10, keepalive=1)
        emu.faults.stall(30, after=3)
        client = yield stream(self, emu, SAMPLE)
        clock.advance(0.5)
        yield client.wait_for(lambda: len(posts(client)) >= 3)
        sent = emu.journal[0].bytes_sent
        for _ in range(29):
            clock.advance(1)
        self.assertEqual(emu.journal[0].bytes_sent, sent)
        clock.advance(1.1)
        clock.advance(0.5)  # the next ticks: what was due during the stall is lost, new posts flow
        yield client.wait_for(lambda: len(posts(client)) > 3)

    @defer.inlineCallbacks
    def test_repeat_sends_recent_posts_again(self) -> Any:
        emu = start_x_emulator(self)
        emu.faults.repeat(5, after=20)
        emu.faults.close_after(30)
        client = yield stream(self, emu, SAMPLE)
        yield client.closed
        raw = lines(client)
        self.assertEqual(len(raw), 35)
        self.assertEqual(raw[20:25], raw[15:20])  # the same bytes again, after newer ones
        ids = [orjson.loads(line)["data"]["id"] for line in raw]
        self.assertEqual(len(set(ids)), 30)

    @defer.inlineCallbacks
    def test_the_post_cap_ends_streams_and_refuses_new_ones(self) -> Any:
        emu = start_x_emulator(self, post_cap=25)
        client = yield stream(self, emu, SAMPLE)
        yield client.closed
        got = posts(client)
        self.assertEqual(len(got), 26)
        error = got[-1]["errors"][0]
        self.assertEqual((error["title"], error["type"]),
                         ("UsageCapExceeded", "https://api.x.com/2/problems/usage-capped"))
        refused = yield request(emu.port, "GET", SAMPLE, testcase=self)
        yield refused.closed
        self.assertEqual(refused.status, 429)
        self.assertEqual(body_of(refused)["title"], "UsageCapExceeded")
        compliance = yield stream(self, emu, "/2/tweets/compliance/stream", partition=1)
        self.assertEqual(compliance.status, 200)  # compliance events are not posts

    @defer.inlineCallbacks
    def test_malformed_line(self) -> Any:
        emu = start_x_emulator(self)
        emu.faults.malformed_json(after=1)
        emu.faults.close_after(3)
        client = yield stream(self, emu, SAMPLE)
        yield client.closed
        raw = lines(client)
        self.assertEqual(len(raw), 4)
        with self.assertRaises(orjson.JSONDecodeError):
            orjson.loads(raw[1])


class StatusFaultTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_scripted_statuses_are_xs_json(self) -> Any:
        emu = start_x_emulator(self)
        for code in (500, 503, 429, 403):
            emu.faults.respond_status(code)
            client = yield request(emu.port, "GET", FILTER, testcase=self)
            yield client.closed
            self.assertEqual(client.status, code)
            body = body_of(client)
            self.assertEqual(body["status"], code)
            if code == 429:
                self.assertIsNotNone(client.header("x-rate-limit-reset"))

    @defer.inlineCallbacks
    def test_status_for_n_seconds_on_the_clock(self) -> Any:
        clock = Clock()
        emu = start_x_emulator(self, clock=clock)
        emu.faults.respond_status(503, seconds=30)
        codes = []
        for step in (0, 10, 19.9, 0.2):
            clock.advance(step)
            client = yield request(emu.port, "GET", SAMPLE, testcase=self)
            yield client.wait_for(lambda: client.status is not None)
            codes.append(client.status)
            yield client.close()
        self.assertEqual(codes, [503, 503, 503, 200])

    @defer.inlineCallbacks
    def test_rules_api_sees_scripted_statuses_too(self) -> Any:
        emu = start_x_emulator(self)
        emu.faults.respond_status(503)
        r = yield rules_post(emu, {"add": [{"value": "cat"}]})
        self.assertEqual(r.status, 503)
        self.assertEqual(emu.x.rules.rules, {})


class CliTests(SynchronousTestCase):
    def test_x_flags(self) -> None:
        args = build_parser().parse_args(
            ["--source", "x", "--tier", "enterprise", "--rules-delay", "20", "--rules-rate", "5",
             "--connect-rate", "7", "--rate-window", "60", "--connections", "3", "--max-rules", "10",
             "--max-rule-length", "50", "--bearer-token", "T", "--keepalive", "2", "--stale-seconds", "9",
             "--allow-no-rules", "--post-cap", "1000"])
        opts = options_from_args(args)
        self.assertEqual((opts.source, opts.tier, opts.rules_delay, opts.rules_rate, opts.connect_rate,
                          opts.rate_window, opts.connections, opts.max_rules, opts.max_rule_length,
                          opts.keepalive_seconds, opts.stale_seconds, opts.allow_no_rules, opts.post_cap),
                         ("x", "enterprise", 20.0, 5, 7, 60.0, 3, 10, 50, 2.0, 9.0, True, 1000))

    def test_defaults(self) -> None:
        opts = options_from_args(build_parser().parse_args(["--source", "x"]))
        self.assertEqual((opts.tier, opts.rules_delay, opts.rules_rate, opts.connect_rate, opts.keepalive_seconds),
                         ("pay-per-use", 0.0, 100, 50, 20.0))
        self.assertEqual(options_from_args(build_parser().parse_args([])).keepalive_seconds, 30.0)

    def test_repeat_fault_parses(self) -> None:
        from flamingo.emulator import Fault

        fault = Fault.parse("repeat:count=50,after=1000")
        self.assertEqual((fault.kind, fault.count, fault.after), ("repeat", 50, 1000))

    def test_status_fault_with_seconds_parses(self) -> None:
        from flamingo.emulator import Fault

        fault = Fault.parse("status:code=503,seconds=30")
        self.assertEqual((fault.code, fault.seconds), (503, 30.0))

    def test_replay_is_refused_for_x(self) -> None:
        with self.assertRaises(ValueError) as raised:
            options_from_args(build_parser().parse_args(["--source", "x", "--replay", "events.log"]))
        self.assertIn("--replay", str(raised.exception))
