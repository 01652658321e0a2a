"""``flamingo top`` (a live terminal view, with rich) and ``flamingo status --watch``
(a plain refresh): the same snapshot the web dashboard polls,
``GET /dashboard/data.json``, once a second.

rich draws tables and colours without curses and leaves the terminal as it
found it (alternate screen); the sparkline and the layout are pure functions
of the snapshot, so they are tested without a terminal. ``q`` (or Ctrl-C)
quits; keys are read in cbreak mode with ``select``, so the refresh never
waits on the keyboard.
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO, TypeVar

from flamingo._types import JsonObject

if TYPE_CHECKING:  # rich is imported when the view is drawn
    from rich.console import RenderableType

__all__ = ["BLOCKS", "sparkline", "view", "run_top", "watch"]

BLOCKS = "▁▂▃▄▅▆▇█"
_T = TypeVar("_T")

STATE_STYLE = {"connected": "bold green", "connecting": "yellow", "retrying": "yellow",
               "waiting_for_params": "yellow", "fatal": "bold red", "stopped": "red"}


def sparkline(values: Sequence[float], width: int) -> str:
    """The last ``width`` values as block characters, scaled to their maximum;
    a zero is a blank, so an idle second is visible."""
    if width <= 0:
        return ""
    tail = list(values)[-width:]
    top = max(tail, default=0)
    if top <= 0:
        return " " * len(tail)
    steps = len(BLOCKS) - 1
    return "".join(" " if v <= 0 else BLOCKS[min(steps, int(v * steps / top + 0.5))]
                   for v in tail)


def _num(v: object, digits: int = 1) -> str:
    if isinstance(v, bool) or v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def view(doc: JsonObject, width: int = 80, error: str | None = None) -> RenderableType:
    """The whole screen for one snapshot (a rich renderable)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    wader = doc.get("wader") or {}
    state = wader.get("name") or "-"
    head = Text.assemble(("flamingo top", "bold magenta"), "  ",
                         ("state ", "dim"), (state, STATE_STYLE.get(state, "bold")),
                         "  ", ("stream ", "dim"), str((doc.get("stream") or {}).get("name", "-")),
                         "  ", ("redis ", "dim"),
                         "reachable" if (doc.get("redis") or {}).get("available")
                         else Text("UNREACHABLE", "bold red"))
    parts: list[RenderableType] = [head]
    if error:
        parts.append(Text(f"daemon not answering: {error} (retrying)", "bold red"))
    if wader.get("message") or wader.get("cause"):
        parts.append(Text(f"{wader.get('cause') or ''} {wader.get('message') or ''}".strip(),
                          "yellow"))
    if wader.get("request_line"):
        parts.append(Text(str(wader["request_line"]), "dim"))

    rates = doc.get("rates") or {}
    events = doc.get("events") or {}
    history = [p.get("events", 0) for p in doc.get("history") or []]
    figures = Table.grid(padding=(0, 2))
    for _ in range(5):
        figures.add_column(justify="right")
    figures.add_row(*(Text(s, "dim") for s in ("events", "10 s /s", "1 min /s", "5 min /s",
                                               "backlog")))
    figures.add_row(_num(events.get("total")),
                    *(_num((rates.get(k) or {}).get("events_per_sec")) for k in ("10s", "1m", "5m")),
                    _num(doc.get("backlog")))
    parts += [Text(""), figures]
    spark_width = max(10, width - 24)
    parts.append(Text.assemble(("events/s ", "dim"),
                               (sparkline(history, spark_width), "magenta"),
                               (f" {_num(max(history[-spark_width:], default=0))} max", "dim")))

    sink = doc.get("sink") or {}
    journal = doc.get("journal") or {}
    delivery = Text.assemble(
        ("journal ", "dim"), f"{_num(journal.get('segments'))} files, "
        f"{_num(journal.get('bytes'))} bytes, last {_num(journal.get('last_seq'))}   ",
        ("checkpoint ", "dim"), _num(sink.get("checkpoint")), "   ",
        ("gaps ", "dim"), _num(sink.get("gap_events", 0)))
    parts += [Text(""), delivery]
    for what, err in (("sink", sink.get("error")), ("journal", journal.get("error"))):
        if err:
            parts.append(Text(f"{what} error: {err}", "bold red"))

    subs = Table(title="subscriptions", title_justify="left", expand=False, box=None,
                 header_style="dim", pad_edge=False)
    for col, justify in (("name", "left"), ("queue", "left"), ("length", "right"),
                         ("trimmed", "right"), ("format", "left"), ("types", "left")):
        subs.add_column(col, justify=justify)  # type: ignore[arg-type]
    for s in doc.get("subscriptions") or []:
        subs.add_row(str(s.get("name")), str(s.get("queue")), _num(s.get("length") or 0),
                     _num(s.get("trimmed")), str(s.get("format")),
                     ",".join(s.get("types") or ["all"]))
    if not doc.get("subscriptions"):
        subs.add_row("(none)", "", "", "", "", "")
    parts += [Text(""), subs, Text(""), Text("q quits · refreshed every second", "dim")]
    return Group(*parts)


def _wait_without_keys(timeout: float) -> str:
    """No TTY, no keys: only the refresh interval passes."""
    time.sleep(timeout)
    return ""


@contextmanager
def _keys(stream: TextIO) -> Iterator[Callable[[float], str]]:
    """``read(timeout)`` -> the keys typed within ``timeout`` (cbreak mode on a TTY)."""
    fd = stream.fileno() if hasattr(stream, "fileno") else -1
    if fd < 0 or not os.isatty(fd):
        yield _wait_without_keys
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def read(timeout: float) -> str:
        ready, _, _ = select.select([fd], [], [], timeout)
        return os.read(fd, 32).decode("utf-8", "replace") if ready else ""

    try:
        yield read
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def run_top(fetch: Callable[[], JsonObject], interval: float = 1.0,
            stdin: TextIO | None = None) -> int:
    """Draw until ``q``; ``fetch()`` raises OSError-like errors while the daemon is away."""
    from rich.console import Console
    from rich.live import Live

    from flamingo.cli import Unreachable

    console = Console()
    last: JsonObject = {}
    with _keys(stdin or sys.stdin) as read_keys, \
            Live(console=console, screen=True, auto_refresh=False) as live:
        while True:
            error = None
            try:
                last = fetch()
            except Unreachable as e:
                error = str(e)
            live.update(view(last, console.width, error), refresh=True)
            deadline = time.monotonic() + interval
            while (left := deadline - time.monotonic()) > 0:
                if "q" in read_keys(left).lower():
                    return 0


def watch(fetch: Callable[[], _T], show: Callable[[_T], str], out: TextIO,
          interval: float = 1.0) -> int:
    """``status --watch``: the plain view again every ``interval`` seconds, until Ctrl-C."""
    tty = hasattr(out, "isatty") and out.isatty()
    while True:
        text = show(fetch()).rstrip("\n")
        stamp = time.strftime("%H:%M:%S")
        out.write(("\x1b[H\x1b[2J" if tty else "\n") + f"every {interval:g}s · {stamp}\n\n"
                  + text + "\n")
        out.flush()
        time.sleep(interval)
