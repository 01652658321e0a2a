#!/usr/bin/env python3
"""Read a Flamingo subscription queue (raw or envelope format) with redis-py.

    flamingo subscribe tweets --format envelope              # or through REST / the console
    python3 examples/consumer.py tweets                       # namespace "flamingo"
    python3 examples/consumer.py tweets --namespace other --host 127.0.0.1 --port 6379

BLPOP blocks until an event arrives; each value is one event: the raw JSON
exactly as Twitter sent it (raw) or {"type": ..., "event": ...} (envelope).
"""

from __future__ import annotations

import argparse
import json

import redis


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("subscription")
    p.add_argument("--namespace", default="flamingo")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6379)
    p.add_argument("--count", type=int, default=0, help="stop after this many events (0 = forever)")
    args = p.parse_args()
    r = redis.Redis(host=args.host, port=args.port)
    queue = f"{args.namespace}:queue:{args.subscription}"
    seen = 0
    while not args.count or seen < args.count:
        _, value = r.blpop([queue])
        message = json.loads(value)
        if isinstance(message, dict) and set(message) == {"type", "event"}:  # envelope
            kind, event = message["type"], message["event"]
        else:  # raw: type it yourself if you need to (see flamingo.stream.messages)
            kind, event = ("tweet" if "text" in message else next(iter(message))), message
        if kind == "tweet":
            print(f"@{event['user']['screen_name']}: {event['text']}")
        else:
            print(f"[{kind}] {json.dumps(event)[:120]}")
        seen += 1


if __name__ == "__main__":
    main()
