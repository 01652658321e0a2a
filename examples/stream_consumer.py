#!/usr/bin/env python3
"""Process a Flamingo ``format: stream`` subscription at least once, with redis-py.

    flamingo subscribe tweets --format stream --groups workers   # or REST / the console
    python3 examples/stream_consumer.py tweets workers worker-1   # run several, each its own name

Each entry of ``<ns>:stream:<name>`` has two fields: ``type`` (tweet, delete,
...) and ``event`` (the raw JSON as received). A consumer group hands each entry
to one of its consumers; the consumer acknowledges it (XACK) only after the
work is done. A consumer that crashes leaves its entries pending: on restart it
reads its own pending entries first (id 0), and any consumer takes over entries
another one left pending longer than --claim-idle seconds (XAUTOCLAIM). So
every entry is processed at least once; make the processing idempotent.
"""

from __future__ import annotations

import argparse
import json

import redis


def process(kind: str, event: dict) -> None:
    """The work: here, print one line. Must be safe to repeat (at-least-once)."""
    if kind == "tweet":
        print(f"tweet {event.get('id_str') or (event.get('data') or {}).get('id')}", flush=True)
    else:
        print(kind, flush=True)


def handle(r: redis.Redis, key: str, group: str, entries: list) -> int:
    done = 0
    for entry_id, fields in entries:
        if fields:  # None: the entry was trimmed away while pending
            process(fields[b"type"].decode(), json.loads(fields[b"event"]))
            done += 1
        r.xack(key, group, entry_id)  # only after the work: a crash before this re-delivers
    return done


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("subscription")
    p.add_argument("group")
    p.add_argument("consumer")
    p.add_argument("--namespace", default="flamingo")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6379)
    p.add_argument("--claim-idle", type=float, default=60.0,
                   help="take over entries pending this long at another consumer")
    p.add_argument("--count", type=int, default=0, help="stop after this many entries (0 = forever)")
    args = p.parse_args()
    r = redis.Redis(host=args.host, port=args.port)
    key = f"{args.namespace}:stream:{args.subscription}"
    try:
        r.xgroup_create(key, args.group, id="$", mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise
    seen = 0
    # what this consumer was given and did not acknowledge (it crashed)
    while True:
        mine = r.xreadgroup(args.group, args.consumer, {key: "0"}, count=100)
        if not mine or not mine[0][1]:
            break
        seen += handle(r, key, args.group, mine[0][1])
    while not args.count or seen < args.count:
        # entries another consumer left pending too long: it probably died
        _, claimed, _ = r.xautoclaim(key, args.group, args.consumer,
                                     min_idle_time=int(args.claim_idle * 1000), start_id="0-0", count=100)
        if claimed:
            seen += handle(r, key, args.group, claimed)
            continue
        new = r.xreadgroup(args.group, args.consumer, {key: ">"}, count=100, block=1000)
        if new:
            seen += handle(r, key, args.group, new[0][1])


if __name__ == "__main__":
    main()
