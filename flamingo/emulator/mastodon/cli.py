"""``flamingo emulator --source mastodon``: an instance and its streaming server from a shell."""

from __future__ import annotations

import argparse
import sys

from flamingo.emulator.mastodon.faults import KINDS, MastoFault
from flamingo.emulator.mastodon.server import MastoOptions
from flamingo.emulator.running import foreground_reactor, run_until_signal

__all__ = ["main", "build_parser"]

EPILOG = (
    "REST:      GET /api/v2/instance, /api/v1/timelines/public?local=&remote=, /tag/<tag>, "
    "/list/<id> (lists 1, 2, 42), /home\n"
    "streaming: WebSocket /api/v1/streaming (subscribe/unsubscribe), SSE /api/v1/streaming/<stream>, "
    "GET /api/v1/streaming/health\n\n"
    "faults (--fault KIND[:after=N,seconds=T], repeatable):\n"
    + "\n".join(f"  {kind:<8} {text}" for kind, text in KINDS.items())
    + "\n\nexample:\n"
    "  flamingo emulator --source mastodon --access-token t0ken --rate 20 &\n"
    "  curl -N -H 'Authorization: Bearer t0ken' 'http://127.0.0.1:8091/api/v1/streaming/hashtag?tag=python'"
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="flamingo emulator --source mastodon",
        description="A local Mastodon instance: discovery, the timelines REST API, and a streaming "
        "server (WebSocket, SSE) on a second port, with statuses made continuously.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--host", default="127.0.0.1", help="interface (default 127.0.0.1; beyond loopback only with --access-token)")
    a("--port", type=int, default=8090, help="REST port (default 8090; 0 = any free port)")
    a("--streaming-port", type=int, default=8091, help="streaming port (default 8091; 0 = any free port)")
    a("--access-token", help="the user token accepted (default: any non-empty token)")
    a("--seed", type=int, default=1, help="corpus seed (default 1)")
    a("--rate", type=float, default=5.0, help="statuses made per second (default 5)")
    a("--retain", type=int, default=10_000, help="statuses kept for the REST timelines (default 10000)")
    a("--edit-share", type=float, default=0.02, help="share of events that are edits (status.update)")
    a("--delete-share", type=float, default=0.02, help="share of events that are deletes")
    a("--rate-limit", type=int, default=300, help="REST requests per period per token (default 300)")
    a("--rate-period", type=float, default=300.0, help="the rate limit's period in seconds (default 300)")
    a("--ping", type=float, default=30.0, help="seconds between WebSocket pings (default 30; 0 = never)")
    a("--thump", type=float, default=15.0, help="seconds between SSE :thump lines (default 15; 0 = never)")
    a("--fault", action="append", default=[], metavar="SPEC", help="e.g. refuse:after=100,seconds=10")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        faults = [MastoFault.parse(spec) for spec in args.fault]
        options = MastoOptions(
            access_token=args.access_token, seed=args.seed, rate=args.rate, retain=args.retain,
            edit_share=args.edit_share, delete_share=args.delete_share, rate_limit=args.rate_limit,
            rate_period=args.rate_period, ping_interval=args.ping, thump_interval=args.thump)
    except (ValueError, TypeError) as e:
        print(f"flamingo emulator: {e}", file=sys.stderr)
        return 2

    from flamingo.emulator.mastodon.server import MastodonEmulator
    from flamingo.emulator.server import ExposureError

    reactor = foreground_reactor()
    emu = MastodonEmulator(options, reactor=reactor)
    emu.add_faults(*faults)
    try:
        emu.start(args.host, args.port, args.streaming_port)
    except ExposureError as e:
        print(f"flamingo emulator: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # CannotListenError and friends
        print(f"flamingo emulator: {e}", file=sys.stderr)
        return 1
    print(f"Mastodon emulator listening on {emu.url} (streaming: {emu.streaming_url})", flush=True)
    print(f"  {emu.url}/api/v2/instance", flush=True)

    def shutdown(*_: object) -> None:
        emu.stop().addBoth(lambda _: reactor.stop())

    run_until_signal(reactor, shutdown)
    return 0
