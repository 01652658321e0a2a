"""The baseline: the consumer users write instead of Flamingo.

What a tweepy ``StreamListener.on_data`` handler does, in plain Python:
``requests`` with ``stream=True`` and ``iter_lines()``, ``json.loads`` of
each message (to look at its type, as on_data does), one redis-py ``RPUSH``
per event and one line written to a file per event. No reconnects, no
batching, no backpressure: the best case of that approach.

Run as ``python -m bench.baseline URL --user U --password P --redis-port N
--queue KEY --out FILE --seconds S``; it stops after ``--seconds`` (or
``--max-events``) and prints one JSON line with what it did.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import redis
import requests

__all__ = ["consume", "main"]


def consume(url: str, auth: tuple[str, str], r: redis.Redis, queue: str, out, seconds: float,
            max_events: int | None = None, gzip: bool = False) -> dict:
    """Read the stream until ``seconds`` pass; return counts (the measured loop)."""
    events = statuses = nbytes = 0
    started = time.monotonic()
    deadline = started + seconds
    # requests asks for gzip by default; the benchmark compares like with like.
    headers = {"Accept-Encoding": "gzip" if gzip else "identity"}
    with requests.get(url, auth=auth, stream=True, timeout=(10, 90), headers=headers) as response:
        response.raise_for_status()
        for line in response.iter_lines(chunk_size=16 * 1024):
            if not line:  # keep-alive newline
                if time.monotonic() >= deadline:
                    break
                continue
            data = json.loads(line)  # on_data: parse to dispatch on the message's type
            if "in_reply_to_status_id" in data:
                statuses += 1
            r.rpush(queue, line)
            out.write(line)
            out.write(b"\n")
            events += 1
            nbytes += len(line)
            if (events & 255) == 0 and time.monotonic() >= deadline:
                break
            if max_events is not None and events >= max_events:
                break
    return {"events": events, "statuses": statuses, "bytes": nbytes,
            "seconds": time.monotonic() - started}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__.split("\n")[0])
    p.add_argument("url", help="stream URL, e.g. http://127.0.0.1:8080/1.1/statuses/sample.json")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--redis-host", default="127.0.0.1")
    p.add_argument("--redis-port", type=int, default=6379)
    p.add_argument("--queue", default="baseline:queue")
    p.add_argument("--out", required=True, help="file the events are appended to")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--max-events", type=int)
    p.add_argument("--gzip", action="store_true", help="ask for a gzip-compressed stream")
    a = p.parse_args(argv)
    r = redis.Redis(host=a.redis_host, port=a.redis_port)
    with open(a.out, "ab") as out:
        result = consume(a.url, (a.user, a.password), r, a.queue, out, a.seconds, a.max_events, a.gzip)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
