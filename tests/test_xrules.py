"""X filter rules: the pure core (validation, plan), the rules API client, the book on a
real Redis and the reconciler against a fake X, its timers on a ``task.Clock``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from treq.testing import StubTreq
from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import resource, server

from flamingo.errors import NotFound, StoreUnavailable, ValidationError
from flamingo.sources.xrules.book import RuleBook
from flamingo.sources.xrules.client import AddResult, RulesApiError, TreqRulesApi, parse_add
from flamingo.sources.xrules.model import (
    TIERS,
    Outcome,
    RemoteRule,
    Rule,
    apply_outcome,
    check_new,
    plan,
    select_removed,
)
from flamingo.sources.xrules.reconciler import PostBudget, Reconciler
from tests.support.parts import make_store
from tests.support.waiting import until

PPU = TIERS["pay-per-use"]


class FakeX:
    """X's rules in memory, as its API behaves: an invalid rule in a real add creates none."""

    def __init__(self) -> None:
        self.rules: dict[str, RemoteRule] = {}
        self.next_id = 1000
        self.calls: list[str] = []
        self.failures: list[RulesApiError] = []

    def _maybe_fail(self) -> None:
        if self.failures:
            raise self.failures.pop(0)

    def list(self) -> defer.Deferred[list[RemoteRule]]:
        self.calls.append("GET")
        try:
            self._maybe_fail()
        except RulesApiError as e:
            return defer.fail(e)
        return defer.succeed(list(self.rules.values()))

    def add(self, rules: Sequence[Rule], dry_run: bool) -> defer.Deferred[AddResult]:
        self.calls.append("POST add dry_run" if dry_run else "POST add")
        try:
            self._maybe_fail()
        except RulesApiError as e:
            return defer.fail(e)
        ids: dict[str, str] = {}
        rejected: dict[str, str] = {}
        values = {r.value: r for r in self.rules.values()}
        for r in rules:
            if "INVALID" in r.value:
                rejected[r.value] = "UnprocessableEntity: Reference to invalid operator"
            elif r.value in values:
                ids[r.value] = values[r.value].id
            else:
                ids[r.value] = ""
        if dry_run or rejected:
            return defer.succeed(AddResult(ids={v: "" for v in ids} if dry_run else {}, rejected=rejected))
        for r in rules:
            if r.value not in values:
                self.next_id += 1
                self.rules[str(self.next_id)] = RemoteRule(str(self.next_id), r.value, r.tag)
                ids[r.value] = str(self.next_id)
        return defer.succeed(AddResult(ids=ids))

    def delete(self, ids: Sequence[str]) -> defer.Deferred[int]:
        self.calls.append("POST delete")
        try:
            self._maybe_fail()
        except RulesApiError as e:
            return defer.fail(e)
        n = sum(1 for i in ids if self.rules.pop(i, None) is not None)
        return defer.succeed(n)

    def held(self) -> set[tuple[str, str | None]]:
        return {(r.value, r.tag) for r in self.rules.values()}


# --- pure ---------------------------------------------------------------------------------


class ValidationTests(SynchronousTestCase):
    def test_empty_values_are_refused(self) -> None:
        for v in ("", "   ", None, 3):
            with self.assertRaises(ValidationError) as e:
                check_new([], v, None, PPU)
            self.assertEqual(e.exception.field, "value")

    def test_length_per_tier(self) -> None:
        self.assertEqual(check_new([], "a" * 1024, None, PPU), Rule("a" * 1024))
        with self.assertRaises(ValidationError) as e:
            check_new([], "a" * 1025, None, PPU)
        self.assertIn("1024", str(e.exception))
        self.assertIsNotNone(check_new([], "a" * 2048, None, TIERS["enterprise"]))
        with self.assertRaises(ValidationError):
            check_new([], "a" * 2049, None, TIERS["enterprise"])

    def test_count_per_tier(self) -> None:
        full = [Rule(str(i)) for i in range(1000)]
        with self.assertRaises(ValidationError) as e:
            check_new(full, "one more", None, PPU)
        self.assertEqual(e.exception.field, "rules")
        self.assertIsNotNone(check_new(full, "one more", None, TIERS["enterprise"]))

    def test_a_duplicate_value_is_unchanged(self) -> None:
        self.assertIsNone(check_new([Rule("cats", "c")], " cats ", "other", PPU))
        self.assertIsNone(check_new([Rule(str(i)) for i in range(1000)], "5", None, PPU))  # even when full

    def test_tags_are_stripped_and_empty_means_none(self) -> None:
        self.assertEqual(check_new([], "cats", " pets ", PPU), Rule("cats", "pets"))
        self.assertEqual(check_new([], "cats", "", PPU), Rule("cats", None))

    def test_remove_by_value_or_tag(self) -> None:
        rules = [Rule("a", "t"), Rule("b", "t"), Rule("c")]
        self.assertEqual(select_removed(rules, value="c"), [Rule("c")])
        self.assertEqual(select_removed(rules, tag="t"), rules[:2])
        self.assertEqual(select_removed(rules, value="zzz"), [])
        for kw in ({}, {"value": "a", "tag": "t"}, {"value": ""}, {"tag": " "}):
            with self.assertRaises(ValidationError):
                select_removed(rules, **kw)


class PlanTests(SynchronousTestCase):
    def test_keeps_adds_and_deletes(self) -> None:
        desired = [Rule("cats", "pets"), Rule("dogs", "pets"), Rule("birds", "sky"), Rule("bad", status="rejected")]
        remote = [RemoteRule("1", "cats", "pets"), RemoteRule("2", "birds", "old tag"), RemoteRule("3", "not ours")]
        p = plan(desired, remote)
        self.assertEqual(p.active, {"cats": "1"})
        self.assertEqual({r.id for r in p.delete}, {"2", "3"})  # a changed tag is deleted and added again
        self.assertEqual([r.value for r in p.add], ["dogs", "birds"])  # a rejected rule is not sent again

    def test_nothing_to_do(self) -> None:
        p = plan([Rule("cats", "pets", "1", "active")], [RemoteRule("1", "cats", "pets")])
        self.assertTrue(p.empty)

    def test_outcome(self) -> None:
        rules = [Rule("a"), Rule("b"), Rule("c", id="9", status="active"), Rule("d", status="rejected", error="x")]
        changed = apply_outcome(rules, Outcome(ids={"a": "1"}, rejected={"b": "no"}))
        self.assertEqual(changed, {"a": Rule("a", id="1", status="active"),
                                   "b": Rule("b", status="rejected", error="no"),
                                   "c": Rule("c", status="pending")})

    @given(st.lists(st.tuples(st.sampled_from("abcdefg"), st.sampled_from([None, "t", "u"]),
                              st.booleans()), max_size=8),
           st.lists(st.tuples(st.sampled_from("abcdefgh"), st.sampled_from([None, "t", "u"])), max_size=8))
    def test_applying_the_plan_makes_x_equal(self, wanted: list[Any], held: list[Any]) -> None:
        desired = list({v: Rule(v, t, status="rejected" if bad else "pending") for v, t, bad in wanted}.values())
        remote = [RemoteRule(str(i), v, t) for i, (v, t) in enumerate(held)]
        p = plan(desired, remote)
        gone = {r.id for r in p.delete}
        after = {(r.value, r.tag) for r in remote if r.id not in gone} | {(r.value, r.tag) for r in p.add}
        self.assertEqual(after, {(r.value, r.tag) for r in desired if r.status != "rejected"}
                         | {(r.value, r.tag) for r in remote if r.id not in gone})
        self.assertEqual(len(after), len([r for r in remote if r.id not in gone]) + len(p.add))
        ok = {(r.value, r.tag) for r in desired if r.status != "rejected"}
        self.assertTrue(ok <= after)
        self.assertTrue(after <= ok | {(r.value, r.tag) for r in desired})
        kept_twice = [r.value for r in remote if r.id not in gone]
        self.assertEqual(len(kept_twice), len(set(kept_twice)))  # never two copies of a value


class BudgetTests(SynchronousTestCase):
    def test_100_posts_per_15_minutes(self) -> None:
        b = PostBudget()
        for i in range(99):
            b.spend(float(i))
        self.assertEqual(b.wait(100.0, 1), 0.0)
        self.assertEqual(b.wait(100.0, 2), 800.0)  # the first POST (at 0 s) leaves the window at 900 s
        b.spend(100.0)
        self.assertEqual(b.wait(100.0, 3), 802.0)
        self.assertEqual(b.wait(1000.0, 3), 0.0)


class ParseTests(SynchronousTestCase):
    def test_add_answer(self) -> None:
        sent = [Rule("cats"), Rule("dogs"), Rule("bad (")]
        doc = {"data": [{"value": "cats", "id": "11"}],
               "errors": [{"value": "dogs", "id": "12", "title": "DuplicateRule"},
                          {"value": "bad (", "title": "UnprocessableEntity",
                           "details": ["Unmatched parenthesis"]},
                          {"value": "never sent", "title": "x"}]}
        r = parse_add(doc, sent, dry_run=False)
        self.assertEqual(r.ids, {"cats": "11", "dogs": "12"})
        self.assertEqual(r.rejected, {"bad (": "UnprocessableEntity: Unmatched parenthesis"})


# --- the client over HTTP (in memory) --------------------------------------------------------


class RulesEndpoint(resource.Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.rules = [{"id": str(i), "value": f"v{i}", "tag": "t"} for i in range(5)]
        self.seen: list[tuple[str, dict[str, list[str]], Any, str]] = []
        self.status = 200
        self.headers: dict[bytes, bytes] = {}

    def render(self, request: server.Request) -> bytes:
        args = {k.decode(): [x.decode() for x in v] for k, v in request.args.items()}
        body = json.loads(request.content.read() or b"null")
        self.seen.append((request.method.decode(), args, body, request.getHeader("authorization") or ""))
        request.setHeader(b"content-type", b"application/json")
        for k, v in self.headers.items():
            request.setHeader(k, v)
        if self.status != 200:
            request.setResponseCode(self.status)
            return json.dumps({"title": "Too Many Requests" if self.status == 429 else "Unauthorized",
                               "detail": "nope"}).encode()
        if request.method == b"GET":
            start = int(args.get("pagination_token", ["0"])[0])
            size = int(args["max_results"][0])
            page = self.rules[start:start + size]
            meta: dict[str, Any] = {"result_count": len(page)}
            if start + size < len(self.rules):
                meta["next_token"] = str(start + size)
            return json.dumps({"data": page, "meta": meta}).encode()
        if "add" in body:
            return json.dumps({"data": [{"value": r["value"], "id": "99"} for r in body["add"]]}).encode()
        return json.dumps({"meta": {"summary": {"deleted": len(body["delete"]["ids"])}}}).encode()


class ClientTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.endpoint = RulesEndpoint()
        self.agent = StubTreq(self.endpoint)  # treq's in-memory client: the real request path, no socket
        self.clock = task.Clock()
        self.api = TreqRulesApi(self.agent, "https://api.x.com/", "tok", self.clock, page_size=2)

    def result_of(self, d: defer.Deferred[Any]) -> Any:
        for _ in range(5):  # each page: request, then its body
            self.agent.flush()
        return self.successResultOf(d)

    def test_lists_every_page(self) -> None:
        rules = self.result_of(self.api.list())
        self.assertEqual([r.value for r in rules], [f"v{i}" for i in range(5)])
        self.assertEqual([s[1].get("pagination_token") for s in self.endpoint.seen], [None, ["2"], ["4"]])
        self.assertTrue(all(s[3] == "Bearer tok" for s in self.endpoint.seen))

    def test_add_and_delete_bodies(self) -> None:
        r = self.result_of(self.api.add([Rule("cats", "pets"), Rule("dogs")], dry_run=True))
        self.assertEqual(r.ids, {"cats": "", "dogs": ""})
        self.result_of(self.api.add([Rule("cats", "pets")], dry_run=False))
        self.assertEqual(self.result_of(self.api.delete(["1", "2"])), 2)
        (m1, a1, b1, _), (m2, a2, b2, _), (m3, a3, b3, _) = self.endpoint.seen
        self.assertEqual((m1, a1, b1), ("POST", {"dry_run": ["true"]},
                                        {"add": [{"value": "cats", "tag": "pets"}, {"value": "dogs"}]}))
        self.assertEqual((a2, b2), ({}, {"add": [{"value": "cats", "tag": "pets"}]}))
        self.assertEqual(b3, {"delete": {"ids": ["1", "2"]}})
        self.assertEqual(self.api.calls, ["POST add dry_run", "POST add", "POST delete"])

    def test_errors_by_cause(self) -> None:
        self.endpoint.status = 429
        self.endpoint.headers = {b"x-rate-limit-reset": b"1900000000"}
        d = self.api.list()
        for _ in range(3):
            self.agent.flush()
        e = self.failureResultOf(d, RulesApiError).value
        self.assertEqual((e.cause, e.reset_at), ("rate_limit", 1900000000.0))
        self.assertIn("Too Many Requests", e.message)
        self.endpoint.status = 401
        d = self.api.list()
        for _ in range(3):
            self.agent.flush()
        e = self.failureResultOf(d, RulesApiError).value
        self.assertEqual(e.cause, "fatal")
        self.assertNotIn("tok", e.message)
        self.endpoint.status = 503
        d = self.api.list()
        for _ in range(3):
            self.agent.flush()
        self.assertEqual(self.failureResultOf(d, RulesApiError).value.cause, "http")


# --- the book on Redis, the reconciler against a fake X -----------------------------------------


class ReconcilerTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.store = yield make_store(self)
        self.book = RuleBook(self.store, PPU)
        self.store.on_notice("rules", self.book.changed)
        self.x = FakeX()
        self.clock = task.Clock()
        self.clock.advance(1_000_000)
        self.rec = Reconciler(self.book, self.x, self.clock, interval=300, debounce=1)
        self.book.on_change(self.rec.kick)
        self.addCleanup(self.rec.stop)

    def statuses(self) -> dict[str, tuple[str, str | None]]:
        return {r.value: (r.status, r.id) for r in self.book.rules()}

    @defer.inlineCallbacks
    def settle(self) -> Any:
        """Let the pass the clock started finish (Redis answers on the real reactor)."""
        self.clock.advance(0)
        yield until(lambda: not self.rec.in_pass and self.rec.syncing is None)

    @defer.inlineCallbacks
    def test_book_edits(self) -> Any:
        rule, created = yield self.book.add("cats", "pets")
        self.assertEqual((rule, created), (Rule("cats", "pets"), True))
        rule, created = yield self.book.add("cats", "other")
        self.assertEqual((rule.tag, created), ("pets", False))
        yield self.book.add("dogs", "pets")
        yield self.book.add("birds")
        left = yield self.book.remove(tag="pets")
        self.assertEqual(left, [Rule("birds")])
        yield self.assertFailure(self.book.remove(value="cats"), NotFound)
        yield self.assertFailure(self.book.add("x" * 1025), ValidationError)
        other = RuleBook(self.store, PPU)  # another daemon (or the CLI's REST) sees the same rules
        yield other.load()
        self.assertEqual(other.rules(), [Rule("birds")])

    @defer.inlineCallbacks
    def test_count_is_checked_in_redis(self) -> Any:
        small = RuleBook(self.store, TIERS["pay-per-use"].__class__(1024, 2))
        yield small.add("a")
        yield small.add("b")
        yield self.assertFailure(small.add("c"), ValidationError)

    @defer.inlineCallbacks
    def test_reconciles_at_start_adds_and_deletes(self) -> Any:
        self.x.rules = {"1": RemoteRule("1", "cats", "pets"), "2": RemoteRule("2", "stranger", None)}
        yield self.book.add("cats", "pets")
        yield self.book.add("dogs", "pets")
        yield self.book.add("bad INVALID")
        self.x.calls.clear()
        self.rec.start()
        yield self.settle()
        self.assertEqual(self.x.held(), {("cats", "pets"), ("dogs", "pets")})
        self.assertEqual(self.x.calls, ["GET", "POST delete", "POST add dry_run", "POST add"])
        st_ = self.statuses()
        self.assertEqual(st_["cats"], ("active", "1"))
        self.assertEqual(st_["dogs"][0], "active")
        self.assertEqual(st_["bad INVALID"], ("rejected", None))
        self.assertIn("invalid operator", self.book.get("bad INVALID").error or "")
        self.assertEqual(self.rec.status()["rejected"], 1)
        self.assertEqual(self.rec.status()["deleted_at_x"], 1)

        # nothing changed: a periodic pass costs one GET, and the rejected rule is not sent again
        self.x.calls.clear()
        self.clock.advance(300)
        yield self.settle()
        self.assertEqual(self.x.calls, ["GET"])

    @defer.inlineCallbacks
    def test_changes_are_applied_without_a_restart_and_coalesced(self) -> Any:
        self.rec.start()
        yield self.settle()
        self.x.calls.clear()
        yield self.book.add("a", "t")
        yield self.book.add("b", "t")
        yield until(lambda: self.rec.timer is not None and self.rec.next_at == self.clock.seconds() + 1)
        self.clock.advance(1)
        yield self.settle()
        self.assertEqual(self.x.held(), {("a", "t"), ("b", "t")})
        self.assertEqual(self.x.calls, ["GET", "POST add dry_run", "POST add"])  # one pass for both
        yield self.book.remove(tag="t")
        yield until(lambda: self.rec.timer is not None and self.rec.next_at == self.clock.seconds() + 1)
        self.clock.advance(1)
        yield self.settle()
        self.assertEqual(self.x.held(), set())

    @defer.inlineCallbacks
    def test_a_changed_tag_is_deleted_and_added_again(self) -> Any:
        self.x.rules = {"1": RemoteRule("1", "cats", "old")}
        yield self.book.add("cats", "new")
        self.rec.start()
        yield self.settle()
        self.assertEqual(self.x.held(), {("cats", "new")})
        self.assertEqual(self.statuses()["cats"][0], "active")

    @defer.inlineCallbacks
    def test_backoff_per_cause(self) -> Any:
        yield self.book.add("cats")
        self.x.failures = [RulesApiError("network", "refused"), RulesApiError("network", "refused"),
                           RulesApiError("http", "HTTP 503"), RulesApiError("rate_limit", "HTTP 429"),
                           RulesApiError("rate_limit", "HTTP 429",
                                         reset_at=self.clock.seconds() + 0.25 + 0.5 + 5 + 60 + 500)]
        self.rec.start()
        waits = []
        for _ in range(5):
            yield self.settle()
            waits.append(self.rec.next_at - self.clock.seconds())
            self.assertEqual(self.statuses()["cats"][0], "pending")
            self.clock.advance(waits[-1])
        self.assertEqual(waits, [0.25, 0.5, 5.0, 60.0, 500.0])
        self.assertEqual(self.rec.status()["cause"], "rate_limit")
        yield self.settle()
        self.assertEqual(self.statuses()["cats"][0], "active")
        self.assertIsNone(self.rec.status()["error"])
        self.assertEqual(self.rec.next_at - self.clock.seconds(), 300.0)

    @defer.inlineCallbacks
    def test_stop_cancels_a_pass_x_does_not_answer(self) -> Any:
        hung: defer.Deferred[list[RemoteRule]] = defer.Deferred()
        self.x.list = lambda: hung  # type: ignore[method-assign]
        self.rec.start()
        self.clock.advance(0)
        yield until(lambda: self.rec.syncing is not None)
        stopped = self.rec.stop()
        self.assertFalse(stopped.called)
        self.clock.advance(5)
        yield stopped
        self.assertIsNone(self.rec.timer)  # no pass scheduled after the stop

    @defer.inlineCallbacks
    def test_an_unauthorized_token_waits_for_the_periodic_pass(self) -> Any:
        self.x.failures = [RulesApiError("fatal", "HTTP 401: Unauthorized")]
        self.rec.start()
        yield self.settle()
        self.assertEqual(self.rec.next_at - self.clock.seconds(), 300.0)
        self.assertEqual(self.rec.status()["error"], "HTTP 401: Unauthorized")

    @defer.inlineCallbacks
    def test_the_post_budget_is_kept(self) -> Any:
        for _ in range(99):
            self.rec.budget.spend(self.clock.seconds())
        yield self.book.add("cats")
        self.rec.start()
        yield self.settle()
        self.assertEqual(self.x.calls, ["GET"])  # two POSTs needed, one left
        self.assertEqual(self.rec.status()["cause"], "rate_limit")
        self.assertEqual(self.rec.next_at - self.clock.seconds(), 900.0)

    @defer.inlineCallbacks
    def test_an_emptied_redis_does_not_delete_x_rules(self) -> Any:
        yield self.book.add("cats")
        self.rec.start()
        yield self.settle()
        self.assertEqual(self.x.held(), {("cats", None)})
        yield self.store.command("DEL", f"{self.store.prefix}:store:epoch", self.book.key)
        self.clock.advance(300)
        yield self.settle()
        self.assertEqual(self.x.held(), {("cats", None)})
        self.assertFalse(self.book.trusted)
        keys = yield self.store.command("HKEYS", self.book.key)
        self.assertEqual(keys, ["cats"])  # written back from memory


class EmptiedRedisTests(TestCase):
    """Redis that lost the rules is never taken as "no rules" (which would delete X's)."""

    timeout = 30

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.store = yield make_store(self)
        self.copy = Path(self.mktemp())
        self.book = RuleBook(self.store, PPU, copy_path=self.copy)
        yield self.book.add("cats", "pets")
        yield self.book.add("dogs")
        self.marker = f"{self.store.prefix}:store:epoch"

    @defer.inlineCallbacks
    def test_a_new_marker_and_no_rules_write_the_copy_in_memory_back(self) -> Any:
        yield self.store.command("DEL", self.book.key)
        yield self.store.command("SET", self.marker, "a-new-epoch")  # the store re-seeded an empty Redis
        yield self.book.load()
        self.assertEqual([r.value for r in self.book.rules()], ["cats", "dogs"])
        self.assertTrue(self.book.trusted)
        keys = yield self.store.command("HKEYS", self.book.key)
        self.assertEqual(sorted(keys), ["cats", "dogs"])

    @defer.inlineCallbacks
    def test_after_a_restart_the_copy_on_disk_is_written_back(self) -> Any:
        self.assertTrue(self.copy.exists())
        yield self.store.command("DEL", self.book.key)
        yield self.store.command("SET", self.marker, "a-new-epoch")
        restarted = RuleBook(self.store, PPU, copy_path=self.copy)
        yield restarted.load()
        self.assertEqual({r.value: r.tag for r in restarted.rules()}, {"cats": "pets", "dogs": None})

    @defer.inlineCallbacks
    def test_rules_removed_on_purpose_stay_removed(self) -> Any:
        yield self.book.remove(value="cats")
        yield self.book.remove(value="dogs")  # the hash is gone, the marker is the same
        restarted = RuleBook(self.store, PPU, copy_path=self.copy)
        yield restarted.load()
        self.assertEqual(restarted.rules(), [])
        self.assertTrue(restarted.trusted)


class UnreachableRedisTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_loads_fail_to_each_caller_and_a_notice_only_logs(self) -> Any:
        from tests.support.redis import free_port

        store = yield make_store(self, redis_port=free_port(), timeout=0.5)  # nobody listens
        book = RuleBook(store, PPU)
        first, second = book.load(), book.load()
        book.changed("rules:filter")  # a notice's reload failing is logged, not raised
        yield self.assertFailure(first, StoreUnavailable)
        yield self.assertFailure(second, StoreUnavailable)
        yield self.assertFailure(book.add("cats"), StoreUnavailable)
        self.assertFalse(book.loaded)
