"""``format: stream`` subscriptions: the daemon XADDs, consumer groups read, lag is shown.

Real parts: the daemon (FlamingoService) against the emulator and the test
redis-server, ``flamingo tail --group`` and the redis-py example as child
processes. Waits poll real state.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

from treq.client import HTTPClient
from twisted.internet import defer, error, protocol, reactor
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool

from flamingo.dispatch.stream_groups import parse_groups
from flamingo.domain.subscription import Subscription
from flamingo.errors import ValidationError
from tests.support.daemon import start_daemon
from tests.support.processes import run
from tests.support.redis import shared_redis
from tests.support.waiting import until, wait_for

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "stream_consumer.py"


class Pure(unittest.SynchronousTestCase):
    def test_options(self):
        sub = Subscription.create("s", format="stream", groups="a,b,a")
        self.assertEqual(sub.groups, ("a", "b"))
        self.assertEqual(sub.queue_key("ns"), "ns:stream:s")
        self.assertEqual(Subscription.from_hash("s", sub.to_hash()), sub)
        self.assertEqual(sub.to_dict()["groups"], ["a", "b"])
        self.assertNotIn("groups", Subscription.create("r").to_dict())
        for bad, why in ((dict(groups=["g"]), "need format: stream"),
                         (dict(format="stream", groups=["a b"]), "must match")):
            with self.assertRaises(ValidationError) as cm:
                Subscription.create("s", **bad)
            self.assertEqual(cm.exception.field, "groups")
            self.assertIn(why, str(cm.exception))

    def test_xinfo_groups_with_and_without_lag(self):
        seven = [[b"name", b"g2", b"consumers", 1, b"pending", 3, b"last-delivered-id", b"5-0",
                  b"entries-read", 5, b"lag", 7],
                 [b"name", b"g1", b"consumers", 0, b"pending", 0, b"last-delivered-id", b"0-0",
                  b"entries-read", None, b"lag", None]]
        six = [["name", "g", "consumers", 2, "pending", 1, "last-delivered-id", "9-0"]]
        self.assertEqual(parse_groups(seven), [
            {"name": "g1", "consumers": 0, "pending": 0, "lag": None, "last_delivered_id": "0-0"},
            {"name": "g2", "consumers": 1, "pending": 3, "lag": 7, "last_delivered_id": "5-0"}])
        self.assertEqual(parse_groups(six)[0]["lag"], None)  # Redis < 7: no lag, never guessed
        self.assertEqual(parse_groups(six)[0]["pending"], 1)
        self.assertEqual(parse_groups(None), [])
        # RESP3 maps; values int() refuses or that are no number are null
        self.assertEqual(parse_groups([{b"name": b"g", b"consumers": [1], b"pending": "x", b"lag": True}]),
                         [{"name": "g", "consumers": None, "pending": None, "lag": None, "last_delivered_id": None}])


class _Out(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Any) -> None:
        v = reason.value
        self.ended.callback(v.exitCode if isinstance(v, error.ProcessTerminated) else 0)


def entries(r: Any, key: str) -> list[dict[bytes, bytes]]:
    return [dict(zip(f[::2], f[1::2])) for _, f in r.command("XRANGE", key, "-", "+") or []]


class StreamSubscriptionTests(unittest.TestCase):
    timeout = 90

    @defer.inlineCallbacks
    def test_daemon_feeds_a_stream_and_groups_read_it(self) -> Any:
        live = yield start_daemon(self, rate=40, track=("austin", "python", "etsy"), prefix="st")
        r, ns, url = shared_redis(), live.namespace, live.url
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        treq = HTTPClient(Agent(reactor, pool=pool))
        resp = yield treq.post(f"{url}/subscriptions.json",
                               params={"name": "s", "format": "stream", "groups": "g1,g2",
                                       "max_length": "100000"})
        doc = yield resp.json()
        self.assertEqual(resp.code, 200, doc)
        key = f"{ns}:stream:s"
        self.assertEqual(doc["queue"], key)
        self.assertEqual(doc["groups"], ["g1", "g2"])
        yield until(lambda: (r.command("XLEN", key) or 0) >= 12, 40)
        got = entries(r, key)
        for e in got:
            self.assertEqual(set(e), {b"type", b"event"})
            json.loads(e[b"event"])
        self.assertIn(b"tweet", {e[b"type"] for e in got})
        events = [e[b"event"] for e in got]
        self.assertEqual(len(events), len(set(events)))
        groups = {g["name"]: g for g in parse_groups(r.command("XINFO", "GROUPS", key))}
        self.assertEqual(set(groups), {"g1", "g2"})

        # a consumer that read 3 entries and died without acknowledging them
        dead = r.command("XREADGROUP", "GROUP", "g1", "dead", "COUNT", "3", "STREAMS", key, ">")
        dead_ids = [i for i, _ in dead[0][1]]
        self.assertEqual(len(dead_ids), 3)
        # `flamingo tail --group`: claims them (idle > 0 s) and acknowledges what it prints
        code, out, err = yield run(["-c", str(live.config_file), "tail", "s", "--group", "g1",
                                    "--consumer", "c2", "-n", "5", "--claim-idle", "0",
                                    "--idle", "20"], {})
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        self.assertEqual(len(lines), 5)
        want = {e[b"event"] for i, e in zip([x[0] for x in r.command("XRANGE", key, "-", "+")], got)
                if i in dead_ids}
        self.assertTrue(want <= {line.encode() for line in lines}, "the dead consumer's entries were claimed")
        summary = r.command("XPENDING", key, "g1")
        self.assertEqual(summary[0], 0, "everything printed was acknowledged")

        # saving again (a new group added) is idempotent: g1 keeps its position (BUSYGROUP is fine)
        g1 = {g["name"]: g for g in parse_groups(r.command("XINFO", "GROUPS", key))}["g1"]
        resp = yield treq.post(f"{url}/subscriptions.json",
                               params={"name": "s", "format": "stream", "groups": "g1,g2,g3"})
        body = yield resp.text()
        self.assertEqual(resp.code, 200, body)
        again = {g["name"]: g for g in parse_groups(r.command("XINFO", "GROUPS", key))}
        self.assertEqual(set(again), {"g1", "g2", "g3"})
        self.assertEqual(again["g1"]["last_delivered_id"], g1["last_delivered_id"])
        # a stream is not BLPOPped: without a group, tail says how to read it; --peek shows entries
        code, out, err = yield run(["-c", str(live.config_file), "tail", "s", "-n", "1"], {})
        self.assertNotEqual(code, 0)
        self.assertIn("read it with --group G --consumer C", err)
        code, out, err = yield run(["-c", str(live.config_file), "tail", "s", "--peek", "-n", "2"], {})
        self.assertEqual(code, 0, err)
        self.assertEqual(out.encode().splitlines(), events[:2])

        # lag per group in REST, status, /metrics
        @defer.inlineCallbacks
        def stats() -> Any:  # noqa: ANN202
            resp = yield treq.get(f"{url}/subscriptions/s.json")
            doc = yield resp.json()
            return doc
        deadline = reactor.seconds() + 30
        while True:
            doc = yield stats()
            gs = {g["name"]: g for g in doc["stream"]["groups"]}
            if gs.get("g1", {}).get("lag") is not None and gs["g2"]["lag"] is not None and \
                    gs["g2"]["lag"] > gs["g1"]["lag"]:
                break
            self.assertLess(reactor.seconds(), deadline, f"group stats never showed: {doc}")
            yield wait_for(lambda: True, interval=0.2)
        self.assertGreaterEqual(doc["stream"]["length"], 12)
        resp = yield treq.get(f"{url}/status.json")
        status = yield resp.json()
        self.assertIn("s", status["streams"])
        resp = yield treq.get(f"{url}/metrics")
        metrics = (yield resp.text())
        self.assertIn('flamingo_stream_group_lag{group="g1",subscription="s"}', metrics)
        self.assertIn('flamingo_stream_group_pending{group="g2",subscription="s"}', metrics)
        resp = yield treq.get(f"{url}/dashboard/data.json")
        snap = yield resp.json()
        row = next(s for s in snap["subscriptions"] if s["name"] == "s")
        self.assertEqual({g["name"] for g in row["stream"]["groups"]}, {"g1", "g2", "g3"})

    @defer.inlineCallbacks
    def test_python_example_claims_a_dead_consumers_entries(self) -> Any:
        r = shared_redis()
        ns = "ex" + uuid.uuid4().hex[:8]
        key = f"{ns}:stream:s"
        r.command("XGROUP", "CREATE", key, "workers", "$", "MKSTREAM")
        for i in range(6):
            r.command("XADD", key, "*", "type", "tweet", "event", json.dumps({"id_str": str(i)}))
        r.command("XREADGROUP", "GROUP", "workers", "dead", "COUNT", "2", "STREAMS", key, ">")
        p = _Out()
        reactor.spawnProcess(p, sys.executable, [sys.executable, str(EXAMPLE), "s", "workers", "w1",
                                                 "--namespace", ns, "--port", str(r.port),
                                                 "--claim-idle", "0", "--count", "6"], env=None)
        code = yield p.ended
        self.assertEqual(code, 0, p.err.decode())
        self.assertEqual(sorted(p.out.decode().split()), sorted(["tweet"] * 6 + [str(i) for i in range(6)]))
        self.assertEqual(r.command("XPENDING", key, "workers")[0], 0)
        r.command("DEL", key)
