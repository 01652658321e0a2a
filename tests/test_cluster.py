"""Redis Cluster: every key of a namespace carries the hash tag ``{<ns>}``, so a daemon's batch
stays on the shard that owns that slot. Real processes: three cluster nodes (``redis-server
--cluster-enabled yes``, ``redis-cli --cluster create``), two daemons under twistd with two
namespaces on two different shards, each configured with the same (third) node as its seed; the
first namespace's slot is then moved to the seed mid-stream (MOVED/ASK: the daemon follows).
"""

from __future__ import annotations

import uuid
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from flamingo.config import ConfigError, from_mapping
from flamingo.dispatch.redis_address import owner_of
from flamingo.dispatch.store import Store
from flamingo.domain.subscription import Subscription
from flamingo.errors import ValidationError
from tests.support.child_daemon import ChildDaemon
from tests.support.cluster import Cluster
from tests.support.processes import run
from tests.support.waiting import until

AUTH = {"username": "u", "password": "p"}


class Pure(unittest.SynchronousTestCase):
    def test_config_and_keys(self):
        c = from_mapping({**AUTH, "redis": {"cluster": True, "namespace": "a"}}, environ={})
        self.assertEqual(c.redis.prefix, "{a}")
        self.assertEqual(Subscription.create("q").queue_key(c.redis.prefix), "{a}:queue:q")
        self.assertEqual(from_mapping(AUTH, environ={}).redis.prefix, "flamingo")
        with self.assertRaises(ConfigError) as cm:
            from_mapping({**AUTH, "redis": {"cluster": True, "db": 2}}, environ={})
        self.assertEqual(cm.exception.key, "redis.db")

    def test_resque_is_refused_in_cluster_mode(self):
        store = Store(namespace="a", prefix="{a}", cluster=True)
        failure = self.failureResultOf(store.save_subscription(Subscription.create("jobs", format="resque")))
        self.assertIsInstance(failure.value, ValidationError)
        self.assertEqual(failure.value.field, "format")
        self.assertIn("cannot carry the namespace's hash tag", str(failure.value))

    def test_owner_of(self):
        slots = [[0, 5460, [b"127.0.0.1", 7000, b"id1"]], [5461, 10922, [b"", 7001, b"id2"]],
                 [10923, 16383, [b"127.0.0.1", 7002, b"id3"]]]
        owner, masters = owner_of(6000, slots, "10.0.0.9")
        self.assertEqual(owner, ("10.0.0.9", 7001))  # an empty host: the node asked
        self.assertEqual(len(masters), 3)
        self.assertEqual(owner_of(1, [], "h"), (None, []))


class ClusterTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_two_daemons_two_namespaces_each_exactly_once(self) -> Any:
        cluster = Cluster().start()
        self.addCleanup(cluster.cleanup)
        seed = cluster.nodes[2]
        # two namespaces whose slots are served by two different nodes, neither the seed
        chosen: dict[int, str] = {}
        while len(chosen) < 2:
            ns = "k" + uuid.uuid4().hex[:8]
            owner = cluster.owner("{%s}" % ns)
            if owner is not seed and owner.port not in chosen:
                chosen[owner.port] = ns
        daemons = []
        for ns in chosen.values():
            d = ChildDaemon(self, {"host": seed.address, "cluster": True}, namespace=ns)
            owner = cluster.owner("{%s}" % ns)
            tag = "{%s}" % ns
            owner.command("SADD", f"{tag}:streams:filter:track", "austin", "python")
            owner.command("SADD", f"{tag}:subscriptions", "q", "s")
            owner.command("HSET", f"{tag}:subscription:q", "format", "raw", "types", "", "filter", "",
                          "max_length", "")
            owner.command("HSET", f"{tag}:subscription:s", "format", "stream", "types", "", "filter", "",
                          "max_length", "", "groups", '["g"]')
            d.start()
            daemons.append((d, owner, tag))
        for _, owner, tag in daemons:
            yield until(lambda owner=owner, tag=tag: (owner.command("LLEN", f"{tag}:queue:q") or 0) >= 300, 40)
        # resharding mid-stream: the first namespace's slot moves to the seed; the daemon gets
        # ASK/MOVED, resolves the slot's owner again and goes on there
        first, old, tag = daemons[0]
        cluster.move_slot(tag, seed)
        daemons[0] = (first, seed, tag)
        grown = len(first.event_log()) + 300
        yield until(lambda: len(first.event_log()) >= grown and
                    (seed.command("LLEN", f"{tag}:queue:q") or 0) >= grown - 100, 40)
        for d, _, _ in daemons:
            yield d.stop()
        for d, owner, tag in daemons:
            log = d.event_log()
            self.assertGreater(len(log), 0)
            self.assertEqual(owner.command("LRANGE", f"{tag}:queue:q", "0", "-1"), log)  # once each, in order
            self.assertEqual(owner.command("XLEN", f"{tag}:stream:s"), len(log))
            self.assertEqual(owner.command("XINFO", "GROUPS", f"{tag}:stream:s")[0][1], b"g")
            self.assertIn(f"Redis sink connected to {owner.address} (cluster slot of {tag})", d.log())
        self.assertEqual(old.command("KEYS", f"{daemons[0][2]}*"), [])  # nothing left behind
        # `flamingo tail` with the config: asks the seed, follows MOVED to the slot's owner
        d, owner, tag = daemons[1]
        code, out, err = yield run(["-c", str(d.config), "tail", "q", "--peek", "-n", "3"], {})
        self.assertEqual(code, 0, err)
        self.assertEqual(out.encode().splitlines(), d.event_log()[:3])
        self.assertIn(f"Redis sink connected to {old.address}", daemons[0][0].log())  # before the move
        self.assertIn(f"Redis sink connected to {seed.address}", daemons[0][0].log())  # after it
