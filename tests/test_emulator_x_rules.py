"""The X emulator's rules endpoints over real HTTP: add, list, page, delete, dry_run, errors, limits."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from flamingo.emulator.x.rulesapi import page_token, token_offset
from tests.support.xemu import rules_get, rules_post, start_x_emulator

TOKEN = "app-token"


class AddTests(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_add_returns_string_ids_and_a_summary(self) -> Any:
        emu = start_x_emulator(self, bearer_token=TOKEN)
        r = yield rules_post(emu, {"add": [{"value": "#python", "tag": "py"}, {"value": "from:nasa"}]}, token=TOKEN)
        self.assertEqual(r.status, 201)
        self.assertIn("application/json", r.headers["content-type"])
        body = r.json()
        self.assertEqual([(d["value"], d.get("tag")) for d in body["data"]], [("#python", "py"), ("from:nasa", None)])
        for d in body["data"]:
            self.assertIsInstance(d["id"], str)
            self.assertTrue(d["id"].isdigit())
        self.assertEqual(body["meta"]["summary"], {"created": 2, "not_created": 0, "valid": 2, "invalid": 0})
        self.assertIn("sent", body["meta"])
        self.assertNotIn("errors", body)
        listed = yield rules_get(emu, token=TOKEN)
        self.assertEqual(listed.json()["data"], body["data"])
        self.assertEqual(listed.json()["meta"]["result_count"], 2)
        self.assertEqual(sorted(r.value for r in emu.x.rules.effective), ["#python", "from:nasa"])

    @defer.inlineCallbacks
    def test_no_rules_lists_no_data(self) -> Any:
        emu = start_x_emulator(self)
        r = yield rules_get(emu)
        self.assertEqual(r.status, 200)
        self.assertNotIn("data", r.json())
        self.assertEqual(r.json()["meta"]["result_count"], 0)

    @defer.inlineCallbacks
    def test_dry_run_validates_without_committing(self) -> Any:
        emu = start_x_emulator(self)
        r = yield rules_post(emu, {"add": [{"value": "cat", "tag": "c"}]}, dry_run="true")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["meta"]["summary"]["valid"], 1)
        self.assertEqual(r.json()["data"][0]["value"], "cat")
        self.assertEqual(emu.x.rules.rules, {})
        r = yield rules_post(emu, {"add": [{"value": "cat ("}]}, dry_run="true")
        self.assertEqual(r.json()["meta"]["summary"], {"created": 0, "not_created": 1, "valid": 0, "invalid": 1})
        self.assertEqual(r.json()["errors"][0]["title"], "UnprocessableEntity")
        listed = yield rules_get(emu)
        self.assertEqual(listed.json()["meta"]["result_count"], 0)

    @defer.inlineCallbacks
    def test_duplicate_rules(self) -> Any:
        emu = start_x_emulator(self)
        first = yield rules_post(emu, {"add": [{"value": "coffee", "tag": "a"}]})
        rule_id = first.json()["data"][0]["id"]
        r = yield rules_post(emu, {"add": [{"value": "coffee", "tag": "b"}]})
        body = r.json()
        self.assertEqual(r.status, 200)
        self.assertEqual(body["errors"], [{"value": "coffee", "id": rule_id, "title": "DuplicateRule",
                                           "type": "https://api.x.com/2/problems/duplicate-rules"}])
        self.assertEqual(body["meta"]["summary"], {"created": 0, "not_created": 1, "valid": 0, "invalid": 1})
        # twice in one request: the second is the duplicate, and nothing is created
        r = yield rules_post(emu, {"add": [{"value": "tea"}, {"value": "tea"}]})
        self.assertEqual([e["title"] for e in r.json()["errors"]], ["DuplicateRule"])
        self.assertEqual(r.json()["meta"]["summary"], {"created": 0, "not_created": 2, "valid": 1, "invalid": 1})
        self.assertEqual([x.value for x in emu.x.rules.rules.values()], ["coffee"])

    @defer.inlineCallbacks
    def test_an_invalid_rule_blocks_the_whole_add(self) -> Any:
        emu = start_x_emulator(self)
        r = yield rules_post(emu, {"add": [{"value": "good"}, {"value": "-(bad OR worse)"}, {"value": "lang:en"}]})
        body = r.json()
        self.assertEqual(body["meta"]["summary"], {"created": 0, "not_created": 3, "valid": 1, "invalid": 2})
        self.assertNotIn("data", body)
        for error in body["errors"]:
            self.assertEqual(error["title"], "UnprocessableEntity")
            self.assertEqual(error["type"], "https://api.x.com/2/problems/invalid-rules")
            self.assertEqual(len(error["details"]), 1)
        self.assertIn("group", body["errors"][0]["details"][0])
        self.assertIn("standalone", body["errors"][1]["details"][0])
        self.assertEqual(emu.x.rules.rules, {})

    @defer.inlineCallbacks
    def test_rule_length_per_tier(self) -> Any:
        emu = start_x_emulator(self)
        ok, long = "a" * 1024, "b" * 1025
        r = yield rules_post(emu, {"add": [{"value": ok}]})
        self.assertEqual(r.status, 201)
        r = yield rules_post(emu, {"add": [{"value": long}]})
        self.assertIn("1024", r.json()["errors"][0]["details"][0])
        ent = start_x_emulator(self, tier="enterprise")
        r = yield rules_post(ent, {"add": [{"value": long}]})
        self.assertEqual(r.status, 201)
        r = yield rules_post(ent, {"add": [{"value": "c" * 2049}]})
        self.assertIn("2048", r.json()["errors"][0]["details"][0])

    @defer.inlineCallbacks
    def test_rule_count_per_tier(self) -> Any:
        emu = start_x_emulator(self)
        r = yield rules_post(emu, {"add": [{"value": f"word{i}"} for i in range(1000)]})
        self.assertEqual(r.json()["meta"]["summary"]["created"], 1000)
        r = yield rules_post(emu, {"add": [{"value": "one more"}]})
        error = r.json()["errors"][0]
        self.assertEqual((error["title"], error["value"]), ("RulesCapExceeded", "one more"))
        self.assertEqual(error["type"], "https://api.x.com/2/problems/rule-cap")
        self.assertEqual(len(emu.x.rules.rules), 1000)
        small = start_x_emulator(self, max_rules=2)
        r = yield rules_post(small, {"add": [{"value": "a"}, {"value": "b"}, {"value": "c"}]})
        self.assertEqual([e["value"] for e in r.json()["errors"]], ["c"])
        self.assertEqual(r.json()["meta"]["summary"], {"created": 0, "not_created": 3, "valid": 2, "invalid": 1})

    @defer.inlineCallbacks
    def test_malformed_bodies_are_400(self) -> Any:
        emu = start_x_emulator(self)
        bodies: list[Any] = [b"{not json", b"[]", {}, {"add": [{"value": "a"}], "delete": {"ids": ["1"]}},
                             {"add": []}, {"add": [{"tag": "no value"}]}, {"add": [{"value": 3}]},
                             {"add": [{"value": "a", "extra": 1}]}, {"delete": {}}, {"delete": {"ids": ["x1"]}},
                             {"remove": {}}]
        for body in bodies:
            r = yield rules_post(emu, body)
            self.assertEqual(r.status, 400, body)
            self.assertEqual(r.json()["title"], "Invalid Request", body)
        r = yield rules_post(emu, {"add": [{"value": "a"}]}, dry_run="maybe")
        self.assertEqual(r.status, 400)
        r = yield rules_post(emu, {"add": [{"value": "a"}]}, colour="red")
        self.assertEqual(r.status, 400)


class ListAndDeleteTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def _five(self, emu: Any) -> Any:
        r = yield rules_post(emu, {"add": [{"value": f"w{i}", "tag": f"t{i}"} for i in range(5)]})
        return [d["id"] for d in r.json()["data"]]

    @defer.inlineCallbacks
    def test_paging(self) -> Any:
        emu = start_x_emulator(self)
        ids = yield self._five(emu)
        seen, token, pages = [], None, 0
        while True:
            query = {"max_results": 2}
            if token:
                query["pagination_token"] = token
            r = yield rules_get(emu, **query)
            meta = r.json()["meta"]
            self.assertEqual(meta["result_count"], len(r.json()["data"]))
            seen += [d["id"] for d in r.json()["data"]]
            pages += 1
            token = meta.get("next_token")
            if token is None:
                break
            self.assertEqual(len(token), 16)
        self.assertEqual((seen, pages), (ids, 3))

    @defer.inlineCallbacks
    def test_ids_filter_and_bad_queries(self) -> Any:
        emu = start_x_emulator(self)
        ids = yield self._five(emu)
        r = yield rules_get(emu, ids=f"{ids[3]},{ids[1]},12345")
        self.assertEqual([d["id"] for d in r.json()["data"]], [ids[1], ids[3]])
        for query in ({"max_results": 0}, {"max_results": 1001}, {"pagination_token": "short"},
                      {"ids": "abc"}, {"colour": "red"}):
            r = yield rules_get(emu, **query)
            self.assertEqual(r.status, 400, query)
            self.assertEqual(r.json()["type"], "https://api.x.com/2/problems/invalid-request")

    @defer.inlineCallbacks
    def test_delete_by_ids_and_values(self) -> Any:
        emu = start_x_emulator(self)
        ids = yield self._five(emu)
        r = yield rules_post(emu, {"delete": {"ids": [ids[0], "999"]}})
        body = r.json()
        self.assertEqual(r.status, 200)
        self.assertEqual(body["meta"]["summary"], {"deleted": 1, "not_deleted": 1})
        self.assertEqual(body["errors"][0]["id"], "999")
        r = yield rules_post(emu, {"delete": {"values": ["w1", "w2"]}}, dry_run="true")
        self.assertEqual(r.json()["meta"]["summary"], {"deleted": 2, "not_deleted": 0})
        self.assertEqual(len(emu.x.rules.rules), 4)  # dry run: nothing deleted
        r = yield rules_post(emu, {"delete": {"values": ["w1", "w2"]}})
        self.assertEqual([x.value for x in emu.x.rules.effective], ["w3", "w4"])
        r = yield rules_post(emu, b"", delete_all="true")
        self.assertEqual(r.json()["meta"]["summary"], {"deleted": 2, "not_deleted": 0})
        self.assertEqual(emu.x.rules.rules, {})


class RateLimitTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_rules_posts_are_rate_limited_on_the_clock(self) -> Any:
        clock = Clock()
        clock.advance(1_700_000_000)
        emu = start_x_emulator(self, clock=clock, rules_rate=2)
        for n in range(2):
            r = yield rules_post(emu, {"add": [{"value": f"w{n}"}]})
            self.assertEqual(r.status, 201)
            self.assertEqual(r.headers["x-rate-limit-limit"], "2")
            self.assertEqual(r.headers["x-rate-limit-remaining"], str(1 - n))
            self.assertEqual(r.headers["x-rate-limit-reset"], str(1_700_000_000 + 900))
        r = yield rules_post(emu, {"add": [{"value": "w9"}]})
        self.assertEqual(r.status, 429)
        self.assertEqual(r.json()["title"], "Too Many Requests")
        self.assertEqual(r.headers["x-rate-limit-remaining"], "0")
        self.assertEqual(len(emu.x.rules.rules), 2)
        got = yield rules_get(emu)  # reading is counted apart
        self.assertEqual(got.status, 200)
        clock.advance(900)
        r = yield rules_post(emu, {"add": [{"value": "w9"}]})
        self.assertEqual(r.status, 201)


class TokenTests(SynchronousTestCase):
    def test_page_tokens_round_trip(self) -> None:
        for offset in (0, 1, 999, 25000, 2**40):
            token = page_token(offset)
            self.assertEqual(len(token), 16)
            self.assertEqual(token_offset(token), offset)
        self.assertIsNone(token_offset("!" * 16))


class CountsTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_rule_counts_and_the_tiers_cap(self) -> Any:
        from tests.support.xemu import call

        emu = start_x_emulator(self, tier="enterprise")
        yield rules_post(emu, {"add": [{"value": "a"}, {"value": "b"}]})
        r = yield call(emu, "GET", "/2/tweets/search/stream/rules/counts",
                       **{"rules_count.fields": "all_project_client_apps"})
        data = r.json()["data"]
        self.assertEqual((data["cap_per_client_app"], data["project_rules_count"]), ("25000", "2"))
        self.assertEqual(data["client_app_rules_count"]["rule_count"], 2)
        self.assertEqual(data["all_project_client_apps"][0]["rule_count"], 2)
        bad = yield call(emu, "GET", "/2/tweets/search/stream/rules/counts", **{"rules_count.fields": "nope"})
        self.assertEqual(bad.status, 400)
