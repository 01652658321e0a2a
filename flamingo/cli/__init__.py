"""The ``flamingo`` command: REST client, queue tail, console and emulator.

Built on argparse: it is in the standard library (no dependency to install
or keep current), its sub-parsers give each subcommand its own ``--help``
and usage errors, and nothing here needs more than that.  HTTP goes through
``urllib`` and ``tail`` speaks RESP over a plain socket, for the same
reason: the command starts fast and needs nothing beyond Python.

Exit codes: 0 ok, 1 the server said no (its error is printed), 2 usage,
3 the daemon (or Redis, for ``tail``) cannot be reached (the address is printed).

The package by role: :mod:`~flamingo.cli.client` (REST and Redis
connections, errors and exit codes), :mod:`~flamingo.cli.format` (text for
people), :mod:`~flamingo.cli.commands` (one function per subcommand) and
:mod:`~flamingo.cli.parser` (the command line).  ``main`` is the console
script's entry point.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from flamingo.cli.client import (
    DEFAULT_URL,
    OK,
    USAGE,
    Client,
    CliError,
    RespClient,
    ServerSaidNo,
    Unreachable,
    UsageError,
    load_config,
    resolve_token,
    resolve_url,
)
from flamingo.cli.commands import Context, cmd_emulator, console_address
from flamingo.cli.format import SUB_COLUMNS, flatten, table
from flamingo.cli.parser import build_parser

__all__ = ["main", "build_parser", "Client", "ServerSaidNo", "Unreachable", "UsageError",
           "RespClient", "console_address", "load_config", "resolve_url", "resolve_token",
           "DEFAULT_URL", "SUB_COLUMNS", "table", "flatten"]


def _looks_like_config(arg: str) -> bool:
    return arg.endswith((".yml", ".yaml")) and Path(arg).expanduser().is_file()


def main(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ if env is None else env)
    if argv and argv[0] == "emulator":
        return cmd_emulator(argv[1:])
    if argv and _looks_like_config(argv[0]):  # the original's `flamingo path/to/flamingo.yml`
        argv = ["console", "-c", argv[0], *argv[1:]]
    parser = build_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return USAGE
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return USAGE
    try:
        config = load_config(getattr(args, "config", None))
        return int(args.func(Context(args, config, env)))
    except ServerSaidNo as e:
        if getattr(args, "json", False):
            body = e.body if e.body is not None else {"error": e.error, "detail": e.detail}
            sys.stdout.write(json.dumps(body, sort_keys=True) + "\n")
        print(f"flamingo: {e}", file=sys.stderr)
        return e.code
    except CliError as e:
        print(f"flamingo: {e}", file=sys.stderr)
        return e.code
    except BrokenPipeError:
        return OK
