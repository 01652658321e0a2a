"""A local Redis Cluster of three masters (no replicas) on loopback, for tests.

``redis-server --cluster-enabled yes`` three times, then ``redis-cli --cluster
create --cluster-yes``; ``start()`` returns once every node says
``cluster_state:ok``.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time

from flamingo._redis_server import RedisServer
from flamingo.dispatch.redis_address import owner_of

__all__ = ["Cluster"]


def _port_with_bus() -> int:
    """A free loopback port whose cluster bus port (+10000) is free too (and below 65536)."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for a cluster node")


class Cluster:
    def __init__(self, size: int = 3) -> None:
        args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
        self.nodes = [RedisServer(port=_port_with_bus(), args=args) for _ in range(size)]

    def start(self) -> Cluster:
        for n in self.nodes:
            n.start()
        cli = shutil.which("redis-cli") or "redis-cli"
        subprocess.run([cli, "--cluster", "create", *(n.address for n in self.nodes), "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        deadline = time.monotonic() + 30
        while not all(b"cluster_state:ok" in n.command("CLUSTER", "INFO") for n in self.nodes):
            if time.monotonic() > deadline:
                raise AssertionError("the cluster never reached cluster_state:ok")
            time.sleep(0.05)  # set-up poll of a real condition
        return self

    def owner(self, key: str) -> RedisServer:
        """The node serving ``key``'s slot."""
        seed = self.nodes[0]
        slot = seed.command("CLUSTER", "KEYSLOT", key)
        addr, _ = owner_of(slot, seed.command("CLUSTER", "SLOTS"), seed.host)
        return next(n for n in self.nodes if (n.host, n.port) == addr)

    def move_slot(self, key: str, to: RedisServer) -> None:
        """Move ``key``'s slot, with its keys, to node ``to`` (what a resharding does)."""
        src = self.owner(key)
        slot = str(src.command("CLUSTER", "KEYSLOT", key))
        src_id, dst_id = src.command("CLUSTER", "MYID").decode(), to.command("CLUSTER", "MYID").decode()
        to.command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        while True:
            keys = src.command("CLUSTER", "GETKEYSINSLOT", slot, "1000")
            if not keys:
                break
            src.command("MIGRATE", to.host, str(to.port), "", "0", "5000", "KEYS", *keys)
        for n in self.nodes:
            n.command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)

    def cleanup(self) -> None:
        for n in self.nodes:
            n.cleanup()
