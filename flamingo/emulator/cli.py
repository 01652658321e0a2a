"""``flamingo emulator``: run the Streaming API emulator from a shell."""

from __future__ import annotations

import argparse
import sys

import yaml

from flamingo.emulator import jet_cli
from flamingo.emulator.faults import KINDS, Fault
from flamingo.emulator.options import EmulatorOptions
from flamingo.emulator.running import foreground_reactor, run_until_signal

__all__ = ["main", "build_parser", "load_script"]

EPILOG = (
    "endpoints: POST/GET /1.1/statuses/filter.json, GET /1.1/statuses/sample.json, "
    "GET /1.1/statuses/firehose.json\n\n"
    "faults (--fault KIND[:key=value,...], repeatable; or a YAML --script):\n"
    + "\n".join(f"  {kind:<18} {text}" for kind, text in KINDS.items())
    + "\n  keys: after=N times=K code=C seconds=T bytes=B data=TEXT length=absurd|truncated count=N\n\n"
    "script file (YAML):\n"
    "  faults:\n"
    "    - {kind: status, code: 503, times: 2}\n"
    "    - {kind: close_after, after: 100}\n"
    "    - {stall: 95, after: 10}\n\n"
    "X API v2 (--source x):\n"
    "  GET /2/tweets/search/stream, /2/tweets/sample/stream, /2/tweets/sample10/stream?partition=1,\n"
    "      /2/tweets/firehose/stream?partition=1, /2/tweets/compliance/stream?partition=1,\n"
    "      /2/users/compliance/stream?partition=1\n"
    "  GET/POST /2/tweets/search/stream/rules; GET /2/connections; DELETE /2/connections/all\n"
    "  the disconnect fault sends X's operational-disconnect line, connection_limit its\n"
    "  TooManyConnections line\n\n"
    "example:\n"
    "  flamingo emulator --user u --password p --rate 50 &\n"
    "  curl -N -u u:p -d track=austin http://127.0.0.1:8080/1.1/statuses/filter.json\n\n"
    "  flamingo emulator --source x --bearer-token T --rate 50 &\n"
    "  curl -H 'Authorization: Bearer T' -H 'Content-Type: application/json' \\\n"
    "    -d '{\"add\":[{\"value\":\"#python OR love\",\"tag\":\"py\"}]}' "
    "http://127.0.0.1:8080/2/tweets/search/stream/rules\n"
    "  curl -N -H 'Authorization: Bearer T' http://127.0.0.1:8080/2/tweets/search/stream\n\n"
    + jet_cli.EPILOG
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="flamingo emulator",
        description="A faithful local Streaming API (v1.1, or X API v2 with --source x): realistic "
        "seeded posts, the real framing, auth, limits and scripted faults. With no credentials it accepts any request, "
        "so it listens beyond loopback (--host) only with credentials configured.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a = p.add_argument
    a("--source", choices=("twitter", "x", "jetstream", "mastodon"), default="twitter",
      help="which API to emulate: twitter (v1.1, the default), x (X API v2: streams, rules, matching), "
           "jetstream (Bluesky) or mastodon (see --source mastodon --help)")
    a("--host", default="127.0.0.1",
      help="interface to listen on (default 127.0.0.1); beyond loopback only with credentials "
           "(--user/--password, --bearer-token or --oauth-consumer-key/--oauth-consumer-secret)")
    a("--port", type=int, default=8080, help="port to listen on (default 8080; 0 = any free port)")
    a("--user", help="HTTP Basic user name accepted")
    a("--password", help="HTTP Basic password accepted")
    a("--bearer-token", help="Bearer token accepted")
    a("--oauth-consumer-key", help="OAuth 1.0a consumer key accepted")
    a("--oauth-consumer-secret", help="OAuth 1.0a consumer secret (verifies HMAC-SHA1 signatures)")
    a("--oauth-token", help="OAuth 1.0a access token accepted")
    a("--oauth-token-secret", help="OAuth 1.0a access token secret")
    a("--seed", type=int, default=1, help="corpus seed: the same seed makes the same stream (default 1)")
    a("--rate", type=float, default=0.0,
      help="messages per second of the timeline all connections share (each gets its matches); "
           "0 = as fast as each client reads (default 0)")
    a("--size", choices=("realistic", "small"), default="realistic",
      help="realistic v1.1 statuses (median ~3.5 KB) or small ones (~300 B)")
    a("--replay", metavar="FILE", help="send the lines of this JSONL file instead of generated tweets")
    a("--script", metavar="FILE", help="YAML fault script (see below)")
    a("--fault", metavar="SPEC", action="append", default=[],
      help="add a fault, e.g. status:code=503,times=2 or close_after:after=100 (repeatable)")
    a("--keepalive", type=float, default=None, metavar="SECONDS",
      help="seconds of idleness before a keep-alive newline (default 30, 20 with --source x; 0 = never)")
    a("--journal", metavar="FILE", help="append the connection journal to FILE as JSON lines")
    a("--delivery-cap", type=int, metavar="N",
      help="deliver at most N statuses/s on a filter stream; the rest are counted in limit notices")
    a("--allow-count", action="store_true", help="accept the count parameter (backfill role) instead of 416")
    a("--random-disconnects", type=float, default=0.0, metavar="P",
      help="chance per message of a random disconnect message (default 0: deterministic)")
    a("--stall-queue", type=int, default=1000, metavar="N",
      help="messages queued for a slow client before disconnect code 4 (rate mode; default 1000)")
    a("--allow-duplicate-connections", action="store_true",
      help="do not disconnect the older connection of the same account")
    a("--header-timeout", type=float, default=10.0, metavar="SECONDS",
      help="a connection that has not sent a complete request in SECONDS gets 408 and is "
           "closed (default 10)")
    a("--max-connections", type=int, default=100, metavar="N",
      help="open connections at most, streams included; one more gets 503 and is closed "
           "(default 100)")
    x = p.add_argument_group("X API v2 (--source x)")
    b = x.add_argument
    b("--tier", choices=("pay-per-use", "enterprise"), default="pay-per-use",
      help="rule limits: pay-per-use 1,000 rules of <= 1,024 chars, 1 connection per stream; "
           "enterprise 25,000 of <= 2,048, 2 connections (default pay-per-use)")
    b("--rules-delay", type=float, default=0.0, metavar="SECONDS",
      help="seconds before a committed rule change reaches the live stream (X: up to ~20; default 0)")
    b("--rules-rate", type=int, default=100, metavar="N",
      help="rules POSTs allowed per --rate-window; one more gets 429 (default 100, as X)")
    b("--connect-rate", type=int, default=50, metavar="N",
      help="stream connections allowed per --rate-window; one more gets 429 (default 50, as X)")
    b("--rate-window", type=float, default=900.0, metavar="SECONDS",
      help="the rate-limit window (default 900 = 15 minutes, as X)")
    b("--connections", type=int, metavar="N",
      help="open connections allowed per stream (and partition); one more gets 429 TooManyConnections "
           "(default: the tier's)")
    b("--max-rules", type=int, metavar="N", help="override the tier's rule count limit")
    b("--max-rule-length", type=int, metavar="N", help="override the tier's rule length limit")
    b("--stale-seconds", type=float, default=0.0, metavar="SECONDS",
      help="a stream whose client went away still counts against --connections for SECONDS, as X "
           "notices late (TooManyConnections until then, or DELETE /2/connections/all; default 0)")
    b("--post-cap", type=int, metavar="N",
      help="after N posts delivered (all streams), streams end with UsageCapExceeded and new ones "
           "get 429, as at X's monthly cap (default: no cap)")
    b("--allow-no-rules", action="store_true",
      help="let the filter stream connect while the app has no rules (X answers 409 RuleConfigurationIssue)")
    jet_cli.add_arguments(p)
    return p


def load_script(path: str) -> list[Fault]:
    """Faults from a YAML script: a list, or a mapping with a ``faults`` list."""
    with open(path, encoding="utf-8") as f:
        data: object = yaml.safe_load(f) or {}
    items = data.get("faults", []) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ValueError("a script is a list of faults (or {faults: [...]})")
    return [Fault.from_dict(item) for item in items]


def options_from_args(args: argparse.Namespace) -> EmulatorOptions:
    return EmulatorOptions(
        seed=args.seed,
        rate=args.rate,
        size=args.size,
        keepalive=args.keepalive,
        user=args.user,
        password=args.password,
        bearer_token=args.bearer_token,
        oauth_consumer_key=args.oauth_consumer_key,
        oauth_consumer_secret=args.oauth_consumer_secret,
        oauth_token=args.oauth_token,
        oauth_token_secret=args.oauth_token_secret,
        delivery_cap=args.delivery_cap,
        replay=args.replay,
        allow_count=args.allow_count,
        one_connection_per_account=not args.allow_duplicate_connections,
        random_disconnects=args.random_disconnects,
        stall_queue=args.stall_queue,
        journal=args.journal,
        header_timeout=args.header_timeout,
        max_connections=args.max_connections,
        source=args.source,
        tier=args.tier,
        rules_delay=args.rules_delay,
        rules_rate=args.rules_rate,
        connect_rate=args.connect_rate,
        rate_window=args.rate_window,
        connections=args.connections,
        max_rules=args.max_rules,
        max_rule_length=args.max_rule_length,
        allow_no_rules=args.allow_no_rules,
        stale_seconds=args.stale_seconds,
        post_cap=args.post_cap,
    )


def source_of(argv: list[str]) -> tuple[str, list[str]]:
    """The ``--source`` value (default twitter) and the other arguments."""
    rest, source, i = [], "twitter", 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--source" and i + 1 < len(argv):
            source, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--source="):
            source = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return source, rest


def main(argv: list[str]) -> int:
    source, others = source_of(argv)
    if source == "mastodon":
        from flamingo.emulator.mastodon.cli import main as mastodon_main

        return mastodon_main(others)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.source == "jetstream":
        return jet_cli.run(args)
    try:
        faults = [Fault.parse(spec) for spec in args.fault]
        if args.script:
            faults += load_script(args.script)
        options = options_from_args(args)
    except (ValueError, OSError, yaml.YAMLError, TypeError) as e:
        print(f"flamingo emulator: {e}", file=sys.stderr)
        return 2
    if args.replay:
        try:
            open(args.replay, "rb").close()
        except OSError as e:
            print(f"flamingo emulator: {e}", file=sys.stderr)
            return 2

    from flamingo.emulator.server import Emulator, ExposureError

    reactor = foreground_reactor()
    emu = Emulator(options, reactor=reactor)
    emu.faults.add(*faults)
    try:
        emu.start(args.host, args.port)
    except ExposureError as e:
        print(f"flamingo emulator: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # CannotListenError and friends
        print(f"flamingo emulator: {e}", file=sys.stderr)
        return 1
    if options.source == "x":
        print(f"X API v2 emulator listening on {emu.url}", flush=True)
        print(f"  {emu.url}/2/tweets/search/stream  (rules: {emu.url}/2/tweets/search/stream/rules)", flush=True)
    else:
        print(f"Streaming API emulator listening on {emu.url}", flush=True)
        print(f"  {emu.url}/1.1/statuses/filter.json  (POST/GET, track/follow/locations)", flush=True)

    def shutdown(*_: object) -> None:
        emu.broadcast_disconnect(1, "Shutdown")
        emu.stop().addBoth(lambda _: reactor.stop())

    run_until_signal(reactor, shutdown)
    return 0
