"""The whole ``source: x`` daemon against the X emulator, over real HTTP on 127.0.0.1,
with the test redis-server: rules through REST, CLI and console reach the emulator's
rule set and its matching; posts routed by rule tag; operational disconnects,
backfill and TooManyConnections; compliance streams typed by their key.

Waits poll real state with generous bounds; nothing asserts timing.
"""

from __future__ import annotations

import json
import os
from typing import Any

import orjson
from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from flamingo.console.namespace import build_namespace
from tests.support.processes import run
from tests.support.waiting import until
from tests.support.xdaemon import TOKEN, XDaemon, start_x_daemon
from tests.support.xemu import stream

RULES = "/streams/filter/rules.json"


def ids(frames: list[bytes]) -> list[str]:
    return [orjson.loads(f)["data"]["id"] for f in frames]


class RulesTests(TestCase):
    timeout = 90

    def at_x(self, d: XDaemon) -> dict[str, str | None]:
        return {r.value: r.tag for r in d.emulator.x.rules.rules.values()}

    def status_of(self, d: XDaemon, value: str) -> str | None:
        assert d.app.rules is not None
        for r in d.app.rules.rules():
            if r.value == value:
                return r.status
        return None

    @defer.inlineCallbacks
    def test_rest_adds_rejects_and_removes(self) -> Any:
        d = yield start_x_daemon(self, rate=0)
        code, rule = yield d.rest("POST", RULES, {"value": "love", "tag": "l"})
        self.assertEqual((code, rule["status"], rule["tag"]), (201, "pending", "l"))
        code, rule = yield d.rest("POST", RULES, {"value": "love", "tag": "other"})
        self.assertEqual((code, rule["tag"]), (200, "l"))  # a duplicate value: unchanged
        code, rule = yield d.rest("POST", RULES, {"value": "(unbalanced", "tag": "bad"})
        self.assertEqual(code, 201)
        for bad in ({"value": ""}, {"value": "x" * 1025}, {}):
            code, err = yield d.rest("POST", RULES, bad)
            self.assertEqual(code, 422, err)
        yield until(lambda: self.status_of(d, "love") == "active" and self.status_of(d, "(unbalanced") == "rejected",
                    60)
        self.assertEqual(self.at_x(d), {"love": "l"})
        code, rules = yield d.rest("GET", RULES)
        by_value = {r["value"]: r for r in rules}
        self.assertEqual(by_value["love"]["id"], d.emulator.x.rules.by_value("love").id)
        self.assertTrue(by_value["(unbalanced"]["error"])
        code, status = yield d.rest("GET", "/status.json")
        self.assertEqual((status["source"], status["rules"]["active"], status["rules"]["rejected"]), ("x", 1, 1))
        self.assertIsNotNone(status["rules"]["last_sync"])
        # the stream was never reconnected for the rules
        self.assertEqual(d.app.stats.snapshot()["connection"]["reconnects"], 0)
        code, left = yield d.rest("DELETE", RULES + "?tag=l")
        self.assertEqual((code, [r["value"] for r in left]), (200, ["(unbalanced"]))
        yield until(lambda: self.at_x(d) == {}, 60)
        code, _ = yield d.rest("DELETE", RULES + "?value=nothing-like-this")
        self.assertEqual(code, 404)

    @defer.inlineCallbacks
    def test_rules_x_holds_that_flamingo_does_not_are_deleted(self) -> Any:
        from tests.support.xemu import rules_post, start_x_emulator

        emu = start_x_emulator(self, rate=0, bearer_token=TOKEN)
        yield rules_post(emu, {"add": [{"value": "stranger", "tag": "s"}]}, token=TOKEN)
        self.assertEqual(len(emu.x.rules.rules), 1)
        d = yield start_x_daemon(self, emulator=emu)
        yield d.rest("POST", RULES, {"value": "love"})
        yield until(lambda: self.at_x(d) == {"love": None}, 60)
        self.assertEqual(d.app.rules.status()["deleted_at_x"], 1)

    @defer.inlineCallbacks
    def test_cli_and_console(self) -> Any:
        d = yield start_x_daemon(self, rate=0)
        env = {**os.environ, "FLAMINGO_URL": d.url}
        code, out, err = yield run(["rules", "add", "love OR #python", "--tag", "py"], env)
        self.assertEqual(code, 0, err)
        self.assertIn("love OR #python", out)
        yield until(lambda: self.at_x(d) == {"love OR #python": "py"}, 60)
        code, out, err = yield run(["rules", "list", "--json"], env)
        self.assertEqual(json.loads(out)[0]["status"], "active")

        ns = build_namespace(d.app, lambda dd, label: None)
        s = ns["Stream"].get("filter")
        rule = yield s.add_rule("cats", tag="pets")
        self.assertEqual(rule["status"], "pending")
        yield until(lambda: {r["value"]: r["status"] for r in s.rules}
                    == {"love OR #python": "active", "cats": "active"}, 60)
        self.assertEqual(self.at_x(d), {"love OR #python": "py", "cats": "pets"})
        left = yield s.remove_rule(tag="pets")
        self.assertEqual([r["value"] for r in left], ["love OR #python"])

        code, out, err = yield run(["rules", "remove", "--tag", "py"], env)
        self.assertEqual(code, 0, err)
        self.assertIn("no rules left", out)
        yield until(lambda: self.at_x(d) == {}, 60)
        code, out, err = yield run(["rules", "remove"], env)
        self.assertEqual(code, 2)  # usage: --value or --tag
        code, out, err = yield run(["rules", "add", "x" * 1025], env)
        self.assertEqual(code, 1)  # the server said no: one line naming the limit
        self.assertIn("1024", err)


class FirstRuleTests(TestCase):
    timeout = 90

    @defer.inlineCallbacks
    def test_the_filter_stream_opens_as_soon_as_a_rule_is_active(self) -> Any:
        # X answers 409 (RuleConfigurationIssue) while the app has no rule; the HTTP
        # backoff is set long here, so only the rules service's nudge can connect it
        d = yield start_x_daemon(self, rate=50, wader={"backoff": {"http": {"initial": 300}}})
        yield until(lambda: d.app.wader.state.name == "retrying", 60)
        self.assertIn("no rules at X yet", d.app.wader.state.message)
        d.subscribe("all")
        yield d.rest("POST", RULES, {"value": "love", "tag": "l"})
        yield until(lambda: d.app.wader.state.name == "connected" and len(d.queue("all")) >= 5, 60)
        self.assertEqual(d.app.stats.snapshot()["connection"]["attempts_by_cause"].get("restart"), 1)


class EmptiedRedisTests(TestCase):
    timeout = 90

    @defer.inlineCallbacks
    def test_redis_restarted_empty_keeps_x_rules(self) -> Any:
        from tests.support.redis import RedisServer

        redis = RedisServer().start()  # no persistence: a restart loses everything
        self.addCleanup(redis.cleanup)
        d = yield start_x_daemon(self, rate=10, redis=redis)
        d.subscribe("all")  # the store's copy has something to re-seed
        yield d.rest("POST", RULES, {"value": "love", "tag": "l"})
        yield until(lambda: d.app.rules.status()["active"] == 1, 60)
        redis.stop()
        redis.start()
        yield until(lambda: redis.command("HKEYS", f"{d.namespace}:rules:filter") == [b"love"], 60)
        yield d.app.rules.reconciler.sync()  # a pass now, not in 5 minutes
        self.assertEqual({r.value for r in d.emulator.x.rules.rules.values()}, {"love"})
        self.assertEqual(d.app.rules.status()["deleted_at_x"], 0)


class RulesLimitTests(TestCase):
    timeout = 90

    @defer.inlineCallbacks
    def test_the_rules_rate_limit_backs_off_and_keeps_the_rule_pending(self) -> Any:
        d = yield start_x_daemon(self, rate=0, rules_rate=2)  # two rules POSTs per window
        yield d.rest("POST", RULES, {"value": "love", "tag": "l"})
        yield until(lambda: d.app.rules.status()["active"] == 1, 60)  # a dry run and an add
        yield d.rest("POST", RULES, {"value": "python", "tag": "p"})
        yield until(lambda: d.app.rules.status()["cause"] == "rate_limit", 60)
        st = d.app.rules.status()
        self.assertEqual((st["pending"], st["active"]), (1, 1))
        self.assertIn("HTTP 429", st["error"])
        self.assertGreaterEqual(st["next_sync_at"] - reactor.seconds(), 59)  # 60 s, or X's reset if later
        code, status = yield d.rest("GET", "/status.json")
        self.assertEqual(status["rules"]["cause"], "rate_limit")


class RoutingTests(TestCase):
    timeout = 90

    @defer.inlineCallbacks
    def test_posts_reach_subscriptions_by_rule_tag_once_each(self) -> Any:
        d = yield start_x_daemon(self, rate=200)
        d.subscribe("all")
        d.subscribe("love", rules="love")
        d.subscribe("py", rules="py,nothing")
        yield until(lambda: len(d.app.store.subscriptions()) == 3)
        yield d.rest("POST", RULES, {"value": "love", "tag": "love"})
        yield d.rest("POST", RULES, {"value": "love OR #python", "tag": "py"})
        yield until(lambda: len(d.queue("love")) >= 20 and len(d.queue("py")) >= 20, 60)
        everything = d.queue("all")
        tags = {orjson.loads(f)["data"]["id"]: {r.get("tag") for r in orjson.loads(f)["matching_rules"]}
                for f in everything}
        both = [i for i, t in tags.items() if t == {"love", "py"}]
        self.assertTrue(both, "some posts match both rules")
        for name, tag in (("love", "love"), ("py", "py")):
            got = ids(d.queue(name))
            self.assertEqual(len(got), len(set(got)), f"{name}: a post twice")
            self.assertTrue(all(tag in tags.get(i, {tag}) for i in got))
            # every post of that tag in the whole stream is in the tag's queue (up to where it had got)
            last = got[-1]
            wanted = [i for i in ids(everything) if tag in tags[i] and int(i) <= int(last)]
            self.assertEqual([i for i in got if int(i) <= int(last)], wanted)
        self.assertEqual(len(ids(everything)), len(set(ids(everything))))


class ReconnectTests(TestCase):
    timeout = 90

    @defer.inlineCallbacks
    def test_operational_disconnect_reconnects_at_once_nothing_twice_with_backfill(self) -> Any:
        d = yield start_x_daemon(self, rate=50, stream="sample", x={"backfill_minutes": 1}, record=True)
        d.subscribe("all")
        yield until(lambda: len(d.queue("all")) >= 50, 60)
        for n in range(2):
            yield until(lambda n=n: len(d.queue("all")) >= 50 * (n + 1), 60)
            d.emulator.broadcast_disconnect(1, "operational")  # X's operational-disconnect line, then the end
            yield until(lambda n=n: d.app.stats.snapshot()["connection"]["reconnects"] >= n + 1, 60)
        yield until(lambda: len(d.queue("all")) >= 150, 60)
        snap = d.app.stats.snapshot()
        self.assertEqual(snap["connection"]["attempts_by_cause"].get("dropped"), 2)  # at once, 0 s
        self.assertGreater(snap["duplicates"], 0)  # the backfill's repeats, dropped by id
        queue = d.queue("all")
        posts = [f for f in queue if orjson.loads(f).get("data")]
        got = ids(posts)
        self.assertEqual(len(got), len(set(got)))  # nothing twice
        # nothing lost: every post the emulator sent, up to the last one queued, is there
        sent: set[str] = set()
        for frames in d.emulator.sent_messages:
            for f in frames:
                doc = orjson.loads(f)
                if "data" in doc:
                    sent.add(doc["data"]["id"])
        last = max(int(i) for i in got)
        self.assertLessEqual({i for i in sent if int(i) <= last}, set(got))
        errors = [orjson.loads(f) for f in queue if not orjson.loads(f).get("data")]
        self.assertEqual([e["errors"][0]["title"] for e in errors], ["operational-disconnect"] * 2)
        code, meta = yield d.rest("GET", "/meta.json")
        self.assertEqual(meta["events"]["by_type"].get("error"), 2)  # journaled, typed error

    @defer.inlineCallbacks
    def test_posts_x_sends_twice_are_dropped(self) -> Any:
        from tests.support.xemu import start_x_emulator

        emu = start_x_emulator(self, rate=50, bearer_token=TOKEN)
        emu.faults.repeat(count=10, after=20)  # the first stream re-sends 10 posts after 20
        d = yield start_x_daemon(self, emulator=emu, stream="sample")
        d.subscribe("all")
        yield until(lambda: d.app.stats.snapshot()["duplicates"] >= 10 and len(d.queue("all")) >= 40, 60)
        got = ids(d.queue("all"))
        self.assertEqual(len(got), len(set(got)))

    @defer.inlineCallbacks
    def test_a_restart_on_pay_per_use_closes_before_it_reconnects(self) -> Any:
        d = yield start_x_daemon(self, rate=50, stream="sample", x={"backfill_minutes": 1})
        d.subscribe("all")
        yield until(lambda: len(d.queue("all")) >= 30, 60)
        code, _ = yield d.rest("POST", "/wader/restart.json")
        self.assertEqual(code, 200)
        yield until(lambda: d.app.stats.snapshot()["connection"]["reconnects"] == 1
                    and d.app.wader.state.name == "connected", 60)
        count = len(d.queue("all"))
        yield until(lambda: len(d.queue("all")) >= count + 30, 60)
        self.assertEqual(d.emulator.x.counters["too_many_connections"], 0)
        got = ids(d.queue("all"))
        self.assertEqual(len(got), len(set(got)))

    @defer.inlineCallbacks
    def test_too_many_connections_waits_and_says_why(self) -> Any:
        from tests.support.xemu import start_x_emulator

        emu = start_x_emulator(self, rate=10, bearer_token=TOKEN)
        other = yield stream(self, emu, "/2/tweets/sample/stream", token=TOKEN)  # holds the one connection
        self.assertEqual(other.status, 200)
        d = yield start_x_daemon(self, emulator=emu, stream="sample")
        yield until(lambda: d.app.wader.state.name == "retrying", 60)
        state = d.app.wader.state
        self.assertEqual(state.cause, "rate_limit")
        self.assertIn("another client holds this app's streaming connection", state.message)
        self.assertGreaterEqual(state.next_attempt_at - reactor.seconds(), 50)
        code, status = yield d.rest("GET", "/status.json")
        self.assertIn("TooManyConnections", status["wader"]["message"])


class ComplianceTests(TestCase):
    timeout = 90

    @defer.inlineCallbacks
    def test_compliance_events_are_typed_by_their_key(self) -> Any:
        d = yield start_x_daemon(self, rate=200, stream="tweets-compliance", x={"partition": 1})
        d.subscribe("deletes", types="delete", format="envelope")
        yield until(lambda: len(d.queue("deletes")) >= 5, 60)
        by_type = d.app.stats.snapshot()["events"]["by_type"]
        self.assertLessEqual({"delete", "tweet_edit", "withheld"}, set(by_type))
        self.assertNotIn("tweet", by_type)
        for value in d.queue("deletes"):
            env = orjson.loads(value)
            self.assertEqual(env["type"], "delete")
