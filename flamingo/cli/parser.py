"""The ``flamingo`` command line: subcommands, their options and help.

argparse, from the standard library: its sub-parsers give each subcommand
its own ``--help`` and usage errors, and nothing here needs more.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence

from flamingo.cli.commands import (
    Context,
    cmd_console,
    cmd_meta,
    cmd_restart,
    cmd_rules,
    cmd_status,
    cmd_stream,
    cmd_subscribe,
    cmd_subscriptions,
    cmd_tail,
    cmd_top,
    cmd_unsubscribe,
)

__all__ = ["FlamingoParser", "build_parser"]

#: A value that argparse would take for an option: locations are negative
#: numbers, often comma-joined (``-122.75,36.8,-121.75,37.8``).
_NEGATIVE = re.compile(r"^-\.?\d[\d.,-]*$")
#: Marks such a value while argparse reads the line (no shell argument holds NUL).
_MARK = "\0"


class FlamingoParser(argparse.ArgumentParser):
    """An ArgumentParser that, when ``negative_values`` is set, reads negative numbers as values.

    argparse itself only knows plain negative numbers (``-74``), and only
    while no option looks like one; comma-joined coordinates would be taken
    for unknown options.  They are marked before parsing and unmarked after.
    """

    negative_values = False

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None,
                         ) -> tuple[argparse.Namespace, list[str]]:
        if not self.negative_values or args is None:
            return super().parse_known_args(args, namespace)
        marked = [_MARK + a if _NEGATIVE.match(a) else a for a in args]
        ns, extras = super().parse_known_args(marked, namespace)
        for key, value in vars(ns).items():
            setattr(ns, key, _unmark(value))
        return ns, [_unmark_text(a) for a in extras]


def _unmark_text(value: str) -> str:
    return value[len(_MARK):] if value.startswith(_MARK) else value


def _unmark(value: object) -> object:
    if isinstance(value, str):
        return _unmark_text(value)
    if isinstance(value, list):
        return [_unmark(v) for v in value]
    return value


def _common() -> FlamingoParser:
    """Options every subcommand takes, before or after its name."""
    p = FlamingoParser(add_help=False)
    s = argparse.SUPPRESS
    p.add_argument("-c", "--config", metavar="FILE", default=s,
                   help="flamingo.yml to read web.host/port/token, redis and console from "
                        "(default ./flamingo.yml, then ~/flamingo.yml)")
    p.add_argument("--url", default=s, help="the daemon's REST address, e.g. http://127.0.0.1:4711 "
                                            "(or FLAMINGO_URL; the token comes from "
                                            "FLAMINGO_WEB_TOKEN or web.token)")
    p.add_argument("--json", action="store_true", default=s, help="print JSON for scripts")
    p.add_argument("--timeout", type=float, default=s, metavar="SECONDS",
                   help="HTTP timeout (default 10)")
    return p


def _count(text: str) -> int:
    """``-n``: a whole number of events, at least 1 (0 or less would print nothing, silently)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = FlamingoParser(
        prog="flamingo", parents=[common],
        description="Control a running Flamingo daemon, read its queues, open its console.",
        epilog="exit codes: 0 ok, 1 the server said no, 2 usage, 3 cannot reach the daemon. "
               "`flamingo path/to/flamingo.yml` opens the console, as the original did.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=FlamingoParser)

    def add(name: str, help_: str, func: Callable[[Context], int], epilog: str | None = None) -> FlamingoParser:
        p = sub.add_parser(name, help=help_, description=help_, parents=[common], epilog=epilog)
        p.set_defaults(func=func)
        return p

    p = add("status", "the wader's connection state, journal backlog, Redis reachability",
            cmd_status)
    p.add_argument("--watch", action="store_true", help="show it again every second, until Ctrl-C")
    p.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                   help="refresh interval for --watch (default 1)")
    p = add("top", "a live view: state, rates with a sparkline, backlog, subscriptions (q quits)",
            cmd_top)
    p.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                   help="refresh interval (default 1)")
    add("meta", "stats and process info (what /meta.json shows)", cmd_meta)

    p = add("stream", "show a stream's params, or set/add/remove/clear one",
            cmd_stream, epilog="examples: flamingo stream filter; "
                               "flamingo stream filter set track @cheaptweet austin '#etsy'; "
                               "flamingo stream filter add track x; "
                               "flamingo stream filter remove track x; "
                               "flamingo stream filter clear track")
    p.add_argument("name", nargs="?", help="a stream of the config's source (twitter: filter, sample, firehose; "
                   "jetstream: subscribe; mastodon: hashtag, list, ...; default: the config's stream)")
    p.add_argument("action", nargs="?", choices=("set", "add", "remove", "clear"))
    p.add_argument("param", nargs="?", help="track, follow, locations, ... (jetstream: wantedCollections, "
                   "wantedDids; mastodon: tag, list)")
    p.add_argument("values", nargs="*", help="values (one argument each; phrases in quotes)")
    p.negative_values = True

    add("subscriptions", "list subscriptions and their queues", cmd_subscriptions)

    p = add("subscribe", "create (or replace) a subscription", cmd_subscribe)
    p.add_argument("name")
    p.add_argument("--format", choices=("raw", "envelope", "resque", "stream"))
    p.add_argument("--groups", action="append", metavar="GROUP[,GROUP]",
                   help="format stream: consumer groups to create (XGROUP CREATE ... $ MKSTREAM)")
    p.add_argument("--types", action="append", metavar="TYPE[,TYPE]",
                   help="event types to deliver, e.g. tweet,delete (default all)")
    p.add_argument("--filter", nargs="+", metavar="TERM",
                   help="deliver only events matching any of these terms")
    p.add_argument("--max-length", type=int, metavar="N", help="keep at most N events queued")
    p.add_argument("--rules", action="append", metavar="TAG[,TAG]",
                   help="X only: deliver only posts that matched a rule with one of these tags")

    p = add("rules", "X filter rules (source: x): list, add or remove; X follows without a reconnect",
            cmd_rules, epilog="examples: flamingo rules list; flamingo rules add 'cats has:images' --tag cats; "
                              "flamingo rules remove --tag cats; flamingo rules remove --value dogs")
    rules = p.add_subparsers(dest="action", metavar="ACTION", parser_class=FlamingoParser)
    rules.add_parser("list", help="the rules, their X ids and sync status", parents=[common])
    r = rules.add_parser("add", help="add a rule (a value already there is left unchanged)", parents=[common])
    r.add_argument("value", help="the rule, in X's rule syntax (quote it)")
    r.add_argument("--tag", help="the rule's tag (subscriptions route by it: --rules TAG)")
    r = rules.add_parser("remove", help="remove a rule by value, or every rule with a tag", parents=[common])
    r.add_argument("--value", help="the rule's value")
    r.add_argument("--tag", help="every rule with this tag")

    p = add("unsubscribe", "delete a subscription (its queue is left for consumers)", cmd_unsubscribe)
    p.add_argument("name")
    p.add_argument("--drop-queue", action="store_true", help="delete the queue as well")

    add("restart", "restart the wader gracefully (what USR1 does)", cmd_restart)

    p = add("tail", "print a subscription's queued events one a line, consuming them (BLPOP)",
            cmd_tail)
    p.add_argument("name", help="the subscription")
    p.add_argument("-n", type=_count, metavar="N", help="stop after N events (--peek: show N, default 10)")
    p.add_argument("--peek", action="store_true", help="read without removing (LRANGE)")
    p.add_argument("--idle", type=float, metavar="SECONDS",
                   help="stop after this long without an event")
    p.add_argument("--redis", metavar="HOST:PORT", help="Redis address (default from the config)")
    p.add_argument("--namespace", help="key namespace (default from the config, else flamingo)")
    p.add_argument("--queue", metavar="KEY", help="read this Redis list (or stream) instead")
    p.add_argument("--group", metavar="G", help="format stream: read as a member of consumer group G "
                   "(XREADGROUP), acknowledging each event (XACK); made at $ if missing")
    p.add_argument("--consumer", metavar="C", help="with --group: this consumer's name")
    p.add_argument("--claim-idle", type=float, default=60.0, metavar="SECONDS",
                   help="with --group: take over entries other consumers left unacknowledged this long "
                        "(XAUTOCLAIM; default 60)")

    p = add("console", "open the live console in the daemon (runs ssh)", cmd_console)
    p.add_argument("--user", "-l", help="user name to send (any; the key decides)")
    p.add_argument("-i", dest="identity", metavar="KEY", help="private key file for ssh")
    p.add_argument("--ssh", metavar="PATH", help="ssh client to run (default: ssh on PATH)")
    p.add_argument("ssh_args", nargs=argparse.REMAINDER,
                   help="after --, more ssh options (e.g. -- -o StrictHostKeyChecking=no)")

    sub.add_parser("emulator", help="run the Streaming API emulator (see flamingo emulator --help)",
                   add_help=False)
    return parser
