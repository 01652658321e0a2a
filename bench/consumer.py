"""A queue consumer for the latency run: ``python -m bench.consumer --queue KEY ...``.

Pops a Redis list as fast as it fills (``LPOP key 1000``, and ``BLPOP``
when empty so it wakes the moment an event lands) and stamps every event
with the wall clock at arrival, by digest (see ``bench.stamps``). Runs
until ``--seconds`` pass or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

import redis

from bench.stamps import StampWriter, digest

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.consumer")
    p.add_argument("--redis-port", type=int, required=True)
    p.add_argument("--redis-host", default="127.0.0.1")
    p.add_argument("--queue", required=True)
    p.add_argument("--stamps", required=True)
    p.add_argument("--seconds", type=float, default=120.0)
    a = p.parse_args(argv)

    stop = False

    def on_term(signum, frame):  # type: ignore[no-untyped-def]
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    # Generous socket timeout: Redis may be paused (SIGSTOP) for a while on purpose.
    r = redis.Redis(host=a.redis_host, port=a.redis_port, socket_timeout=60)
    writer = StampWriter(a.stamps)
    deadline = time.monotonic() + a.seconds
    received = 0
    try:
        while not stop and time.monotonic() < deadline:
            try:
                items = r.lpop(a.queue, 1000)
                if not items:
                    got = r.blpop([a.queue], timeout=0.2)
                    items = [got[1]] if got else []
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(0.01)  # Redis paused or restarting: try again
                continue
            if items:
                now = time.time()
                writer.add([digest(m) for m in items], now)
                received += len(items)
                writer.flush_if_due(now)
    finally:
        writer.close()
    print(received, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
