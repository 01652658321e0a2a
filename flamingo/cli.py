"""The ``flamingo`` command: REST client, queue tail, console and emulator.

Subcommands register themselves in ``COMMANDS``; see ``flamingo --help``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

__all__ = ["main"]


def _emulator(argv: Sequence[str]) -> int:
    from flamingo.emulator.cli import main as emulator_main

    return emulator_main(list(argv))


#: name -> (help, runner taking the remaining argv and returning an exit code)
COMMANDS: dict[str, tuple[str, Callable[[Sequence[str]], int]]] = {
    "emulator": ("run the Streaming API emulator", _emulator),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="flamingo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, _) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        parser.print_usage(sys.stderr)
        print(f"flamingo: unknown command {name!r}", file=sys.stderr)
        return 2
    return COMMANDS[name][1](rest)


if __name__ == "__main__":
    sys.exit(main())
