"""The console's terminal protocol: a colored manhole whose prompt waits for writes.

A line that starts a write (a Deferred) holds the prompt and any typed input
until the result is printed, or ``WAIT_LIMIT`` seconds pass, or Ctrl-C.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from twisted.conch import manhole
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from flamingo.app import App
from flamingo.console.namespace import BANNER, build_namespace, describe_error
from flamingo.errors import FlamingoError

__all__ = ["WAIT_LIMIT", "FlamingoInterpreter", "FlamingoManhole"]

#: Seconds the prompt waits for a write's result before giving the prompt
#: back (the result is then printed when it arrives).
WAIT_LIMIT = 10.0

_T = TypeVar("_T")


class FlamingoInterpreter(manhole.ManholeInterpreter):
    """Deferreds at top level are waited for and their result printed."""

    handler: FlamingoManhole

    def displayhook(self, obj: object) -> None:
        if isinstance(obj, defer.Deferred):
            self.handler.watch(obj, "")
            return
        self.locals["_"] = obj
        if obj is not None:
            self.write(repr(obj))  # type: ignore[no-untyped-call]  # conch leaves it untyped

    def excepthook(self, excType: type[BaseException], excValue: BaseException,
                   excTraceback: TracebackType) -> None:
        if isinstance(excValue, FlamingoError):
            self.write(describe_error(excValue) + "\n")  # type: ignore[no-untyped-call]  # conch's
        else:
            super().excepthook(excType, excValue, excTraceback)


class FlamingoManhole(manhole.ColoredManhole):
    """A manhole whose prompt waits for the writes a line started."""

    def __init__(self, app: App, clock: IReactorTime | None = None) -> None:
        super().__init__(None)  # type: ignore[no-untyped-call]  # conch leaves it untyped
        self.app = app
        self.clock = clock if clock is not None else app.reactor
        self._pending = 0  # watched writes whose result is not shown yet
        self._held: list[tuple[object, int | None]] | None = None  # keystrokes typed meanwhile
        self._timer: IDelayedCall | None = None
        self._eof = False

    def connectionMade(self) -> None:
        self.namespace = build_namespace(self.app, self.watch)
        super().connectionMade()  # type: ignore[no-untyped-call]  # conch leaves it untyped
        self.interpreter = FlamingoInterpreter(self, self.namespace)  # type: ignore[no-untyped-call]  # conch's
        self.terminal.write(BANNER.encode())
        self.terminal.write(self.ps[self.pn])

    def initializeScreen(self) -> None:
        # No screen reset and no prompt here: the banner comes first.
        self.setInsertMode()  # type: ignore[no-untyped-call]  # conch leaves it untyped

    def terminalSize(self, width: int, height: int) -> None:
        # Record only: the stock redraw would erase the banner.
        self.width, self.height = width, height

    #: Set by the SSH session: ends the session with exit status 0.
    on_quit: Callable[[], None] | None = None

    def handle_QUIT(self) -> None:
        if self.on_quit is not None:
            self.on_quit()
        else:
            self.terminal.loseConnection()

    # Results of asynchronous writes ------------------------------------------------

    def watch(self, d: defer.Deferred[_T], label: str) -> None:
        """Print ``d``'s result (or one error line) when it fires."""
        prefix = f"{label} = " if label else ""

        def shown(result: _T | Failure) -> None:
            if isinstance(result, Failure):
                text = describe_error(result)
            else:
                if self.interpreter is not None and not label:
                    self.interpreter.locals["_"] = result
                value: object = result
                if label and isinstance(result, dict):  # a stream's params: show this one
                    value = result.get(label.rsplit(".", 1)[-1], [])
                text = prefix + repr(value) if value is not None or label else "ok"
            self._show(text)
            self._pending -= 1
            if not self._pending:
                self._release()

        self._pending += 1
        d.addBoth(shown)

    def _show(self, text: str) -> None:
        data = text.rstrip("\n") + "\n"
        if self._held is not None:
            self.terminal.write(data.encode())
        else:
            self.addOutput(data.encode(), True)  # type: ignore[no-untyped-call]  # conch leaves it untyped

    def lineReceived(self, line: bytes) -> None:
        more = self.interpreter.push(line)
        self.pn = bool(more)
        if self._needsNewline():  # type: ignore[no-untyped-call]  # conch leaves it untyped
            self.terminal.nextLine()
        if self._pending:
            self._held = []
            self._timer = self.clock.callLater(WAIT_LIMIT, self._give_up_waiting)
        else:
            self.terminal.write(self.ps[self.pn])

    def _give_up_waiting(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()  # Ctrl-C came first
        self._timer = None
        self.terminal.write(b"(still waiting; the result will be printed when it arrives)\n")
        self._release()

    def _release(self) -> None:
        if self._held is None:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        held, self._held = self._held, None
        if self.terminal is None:
            return
        self.terminal.write(self.ps[self.pn])
        for key, modifier in held:
            if self._held is not None:  # a replayed line started a new wait
                self._held.append((key, modifier))
            else:
                super().keystrokeReceived(key, modifier)  # type: ignore[no-untyped-call]  # conch's
        if self._held is None and self._eof:
            self.handle_QUIT()

    def keystrokeReceived(self, keyID: object, modifier: int | None) -> None:
        """``keyID``: the typed bytes, or one of insults' key constants (arrows, F-keys)."""
        if self._held is not None:
            if keyID == manhole.CTRL_C:
                self._give_up_waiting()
                return
            self._held.append((keyID, modifier))
            return
        super().keystrokeReceived(keyID, modifier)  # type: ignore[no-untyped-call]  # conch's

    def eof_received(self) -> None:
        """The client closed its input: leave once pending results are shown."""
        self._eof = True
        if self._held is None:
            self.handle_QUIT()

    def connectionLost(self, reason: Failure) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        super().connectionLost(reason)  # type: ignore[no-untyped-call]  # conch leaves it untyped
