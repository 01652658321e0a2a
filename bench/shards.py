"""``python -m bench.shards``: what one Redis shard absorbs from the sink, per format.

One in-process sink (journal + RedisSink, the daemon's own code) delivers N
events already in its journal to one subscription, against a plain
redis-server and against one shard of a local 3-master cluster (keys under
the namespace's hash tag). Printed per run: events/s end to end (the sink's
Python is the limit on a small machine), and the Redis server's CPU seconds
per 100,000 events (``INFO cpu``), from which a shard's capacity follows:
one Redis core handles about ``100000 / cpu`` events/s of this sink's writes.
Several daemons, one namespace each, spread over the shards add up.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from twisted.internet import defer, task

from flamingo._redis_server import RedisServer
from flamingo.dispatch.journal import Journal
from flamingo.dispatch.redis_sink import RedisSink
from flamingo.domain.subscription import Subscription


def _cpu(server: RedisServer) -> float:
    info = server.command("INFO", "cpu").decode()
    fields = dict(line.split(":", 1) for line in info.split("\r\n") if ":" in line)
    return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


def _event(i: int) -> bytes:
    return orjson.dumps({"id": i, "id_str": str(i), "text": f"hello {i} " + "x" * 200,
                         "user": {"id": 7, "screen_name": "u"}})


@defer.inlineCallbacks
def _run(reactor: Any, server: RedisServer, prefix: str, fmt: str, n: int, cluster: bool) -> Any:
    tmp = Path(tempfile.mkdtemp(prefix="flamingo-shards-"))
    try:
        journal = Journal(tmp, kind="spool", fsync="no", reactor=reactor).open()
        frames = [_event(i) for i in range(n)]
        for i in range(0, n, 1000):
            journal.append(frames[i:i + 1000])
        ns = prefix.strip("{}")
        sub = Subscription.create("q", format=fmt, max_length=n * 2)
        sink = RedisSink(journal, lambda: {"q": sub}, namespace=ns, prefix=prefix, host=server.host,
                         port=server.port, reactor=reactor, cluster=cluster)
        # resume from position 0: everything in the journal is new to this namespace
        server.command("SET", f"{prefix}:sink:checkpoint", b"0:" + journal.epoch.encode())
        cpu0, t0 = _cpu(server), time.monotonic()
        sink.start()
        while not (sink.checkpoint is not None and sink.checkpoint >= n):
            yield task.deferLater(reactor, 0.01, lambda: None)
        took, cpu = time.monotonic() - t0, _cpu(server) - cpu0
        yield sink.stop()
        yield journal.close()
        return n / took, cpu * 100000 / n
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.shards", description=__doc__.split("\n")[0])
    p.add_argument("-n", type=int, default=100000, help="events per run (default 100000)")
    args = p.parse_args(argv)

    @defer.inlineCallbacks
    def go(reactor: Any) -> Any:
        from tests.support.cluster import Cluster  # the test's local cluster starter

        plain = RedisServer().start()
        cluster = Cluster().start()
        try:
            print(f"{'target':<34}{'format':<8}{'events/s':>10}{'redis cpu s / 100k':>20}")
            for fmt in ("raw", "stream"):
                rate, cpu = yield _run(reactor, plain, "bench", fmt, args.n, False)
                print(f"{'redis-server':<34}{fmt:<8}{rate:>10.0f}{cpu:>20.2f}")
                tag = "{bench%s}" % fmt
                node = cluster.owner(tag)
                rate, cpu = yield _run(reactor, node, tag, fmt, args.n, True)
                print(f"{'cluster shard ' + node.address:<34}{fmt:<8}{rate:>10.0f}{cpu:>20.2f}")
        finally:
            plain.cleanup()
            cluster.cleanup()

    task.react(go)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
