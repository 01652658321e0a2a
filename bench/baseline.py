"""The baseline: the consumer users write instead of Flamingo.

What a tweepy ``StreamListener.on_data`` handler does, in plain Python:
``requests`` with ``stream=True`` and ``iter_lines()``, ``json.loads`` of
each message (to look at its type, as on_data does), one redis-py ``RPUSH``
per event and one line written to a file per event. No reconnects, no
batching, no backpressure: the best case of that approach.

Run as ``python -m bench.baseline URL --user U --password P --redis-port N
--queue KEY --out FILE --seconds S``; it stops after ``--seconds`` (or
``--max-events``) and prints one JSON line with what it did.

``--subs4`` is scenario 2's like-for-like baseline: the same four
subscriptions done the naive way. Per event: ``json.loads``, then in one
redis-py pipeline (one round trip per event: the best case of that approach)
RPUSH the raw line to ``KEY:raw``, an envelope ``{"type":T,"event":E}`` to
``KEY:env`` and a Resque job ``{"class":"HandleFlamingoEvent","args":[T,E]}``
to ``KEY:jobs`` (both built by concatenating the bytes, as Flamingo's formats
are: generous to the baseline, which would otherwise ``json.dumps`` them), and
the raw line to ``KEY:terms`` when the tweet's text (or its retweeted or
quoted status's) holds one of the terms as a word, the simple way (lower
case, regex words).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence

import redis
import requests

__all__ = ["consume", "main", "SUBS4_SUFFIXES", "TERMS", "naive_type", "naive_matches"]

#: the queues of ``--subs4`` (KEY:suffix); all but ``terms`` get every event
SUBS4_SUFFIXES = ("raw", "env", "jobs", "terms")
TERMS = ("love", "python", "coffee")  # scenario 2's filter
_WORDS = re.compile(r"\w+")


def naive_type(data: object) -> str:
    """A message's type the way a handler would tell: a tweet, else its one key."""
    if not isinstance(data, dict):
        return "invalid"
    if "text" in data or "full_text" in data or "extended_tweet" in data:
        return "tweet"
    return next(iter(data), "unknown") if len(data) == 1 else "unknown"


def _text(status: dict) -> str:
    ext = status.get("extended_tweet")
    if isinstance(ext, dict) and isinstance(ext.get("full_text"), str):
        return ext["full_text"]
    text = status.get("full_text", status.get("text"))
    return text if isinstance(text, str) else ""


def naive_matches(data: dict, terms: Sequence[str] = TERMS) -> bool:
    """Any of ``terms`` as a word of the tweet's text (or its retweeted / quoted status's)."""
    texts = [_text(data)]
    for key in ("retweeted_status", "quoted_status"):
        inner = data.get(key)
        if isinstance(inner, dict):
            texts.append(_text(inner))
    words = set(_WORDS.findall(" ".join(texts).lower()))
    return any(t in words for t in terms)


def consume(url: str, auth: tuple[str, str], r: redis.Redis, queue: str, out, seconds: float,
            max_events: int | None = None, gzip: bool = False, subs4: bool = False) -> dict:
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
            if subs4:
                etype = naive_type(data).encode()
                pipe = r.pipeline(transaction=False)
                pipe.rpush(f"{queue}:raw", line)
                pipe.rpush(f"{queue}:env", b'{"type":"' + etype + b'","event":' + line + b"}")
                pipe.rpush(f"{queue}:jobs", b'{"class":"HandleFlamingoEvent","args":["' + etype + b'",' + line + b"]}")
                if etype == b"tweet" and naive_matches(data):
                    pipe.rpush(f"{queue}:terms", line)
                pipe.execute()
            else:
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
    p.add_argument("--subs4", action="store_true",
                   help="scenario 2's four subscriptions the naive way (queues KEY:raw, :env, :jobs, :terms)")
    a = p.parse_args(argv)
    r = redis.Redis(host=a.redis_host, port=a.redis_port)
    with open(a.out, "ab") as out:
        result = consume(a.url, (a.user, a.password), r, a.queue, out, a.seconds, a.max_events, a.gzip,
                         a.subs4)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
