"""The wader's connection life as an Automat state machine (like Twisted's ClientService).

Each state holds only what it needs: ``pending`` its timer, ``connecting``
its link, ``connected`` its link and timers (stall, healthy, dedupe),
``replacing`` the live connection and its candidate, ``switching`` a
candidate whose old connection ended. A retry timer beside an open
connection, or a candidate without a connection, cannot be written.
Inputs come from the wader (start, stop, replace, params_changed), from timers (due,
stalled, healthy, overlap_over) and from links (responded, refused, alive,
messages, ended). Transitions that move data to the next state feed an
internal input carrying it (``dial``, ``dialing``, ``settle``, ``retry``,
``fail``, ``no_params``, ``overlap``); Automat runs it right after.

The table is in docs/ARCHITECTURE.md ("The wader's state machine").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import attrs
from automat import TypeMachineBuilder
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall

from flamingo.stream.endpoints import StreamRequest
from flamingo.stream.overlap import RecentIds
from flamingo.stream.source import Fatal, Link, Retry, Verdict
from flamingo.stream.wader_core import Core, Links

__all__ = ["Inputs", "build_machine", "INITIAL"]

#: the first attempt after start: at once, not a retry
INITIAL = Retry("initial", "")


class Inputs(Protocol):
    def start(self) -> None: ...

    def stop(self, done: Deferred[None]) -> None:
        """Close everything; ``done`` fires when it is gone (may run after the current input)."""

    def replace(self) -> None:
        """Reconnect with the current params (overlapping when connected)."""

    def params_changed(self) -> None:
        """The params were edited (after the debounce): applied on the open
        connection when the source can, else as ``replace``."""

    def due(self) -> None:
        """The pending attempt's time has come."""

    def responded(self, link: Link) -> None: ...

    def refused(self, link: Link, verdict: Verdict) -> None: ...

    def alive(self, link: Link) -> None: ...

    def messages(self, link: Link, frames: list[bytes]) -> None: ...

    def ended(self, link: Link, verdict: Verdict) -> None: ...

    def stalled(self, link: Link) -> None: ...

    def healthy(self) -> None: ...

    def overlap_over(self) -> None:
        """The candidate took too long, or the dedupe period after a switch is over."""

    # internal: carry data from one state to the next
    def retry(self, why: Retry | None = None) -> None: ...

    def fail(self, fatal: Fatal, request_line: str | None) -> None: ...

    def no_params(self) -> None: ...

    def dial(self, request: StreamRequest, cause: str) -> None: ...

    def dialing(self, link: Link, collected: RecentIds | None = None) -> None: ...

    def settle(self, connection: Link | Live, collected: RecentIds | None = None) -> None:
        """Go on with this connection: a new link (dropping repeats of ``collected``),
        or the live one whose candidate failed."""

    def overlap(self, live: Live, request: StreamRequest) -> None: ...



def _cancel(call: IDelayedCall | None) -> None:
    if call is not None and call.active():
        call.cancel()


@attrs.define
class Timer:
    """Pending: the next attempt and why it happens."""

    call: IDelayedCall
    cause: str


@attrs.define
class Dialing:
    """Connecting: the link, and ids an ended predecessor sent (to drop repeats)."""

    link: Link
    collected: RecentIds | None = None


@attrs.define
class Live:
    """Connected: the link messages come from, and its timers."""

    link: Link
    healthy: IDelayedCall | None = None
    stall: IDelayedCall | None = None
    dedupe: RecentIds | None = None  # ids the previous connection sent
    dedupe_end: IDelayedCall | None = None
    replace_later: IDelayedCall | None = None  # min_interval not over yet

    def cancel(self) -> None:
        for call in (self.healthy, self.stall, self.dedupe_end, self.replace_later):
            _cancel(call)
        self.healthy = self.stall = self.dedupe_end = self.replace_later = None


@attrs.define
class Switch:
    """Replacing: the live connection, its candidate, and what the live one sent meanwhile."""

    live: Live
    candidate: Link
    collect: RecentIds
    timeout: IDelayedCall


def _pending(c: Inputs, core: Core, why: Retry | None = None) -> Timer:
    core.links = Links()
    if why is None:
        return Timer(core.schedule(c.due, 0.0, "restart", None), "restart")
    if why is INITIAL:
        return Timer(core.schedule(c.due, 0.0, "initial", None), "initial")
    delay = core.backoffs.next_delay(why.cause)
    return Timer(core.schedule(c.due, delay, why.cause, why.message), why.cause)


def _dial(c: Inputs, core: Core, request: StreamRequest, cause: str) -> Dialing:
    # Opened here, inside the transition: what the link reports at once (a
    # refusal inside open()) is handled after it, in the connecting state.
    link = core.connect(request, cause)
    core.links = Links(active=link)
    return Dialing(link)


def _dialing(c: Inputs, core: Core, link: Link, collected: RecentIds | None = None) -> Dialing:
    core.links = Links(active=link)
    return Dialing(link, collected)


def _live(c: Inputs, core: Core, connection: Link | Live,
          collected: RecentIds | None = None) -> Live:
    if isinstance(connection, Live):  # its candidate failed: the connection goes on
        core.links = Links(active=connection.link, deduping=connection.dedupe is not None)
        return connection
    link = connection
    live = Live(link)
    core.connected(link)
    live.healthy = core.clock.callLater(core.config.wader.healthy_after, c.healthy)
    if collected is not None:
        live.dedupe = collected
        live.dedupe_end = core.clock.callLater(core.config.wader.overlap_timeout, c.overlap_over)
    core.links = Links(active=link, deduping=collected is not None)
    return live


def _switch(c: Inputs, core: Core, live: Live, request: StreamRequest) -> Switch:
    candidate = core.open_replacement(request)  # inside the transition, as in _dial
    timeout = core.clock.callLater(core.config.wader.overlap_timeout, c.overlap_over)
    core.links = Links(active=live.link, candidate=candidate)
    return Switch(live, candidate, RecentIds(core.config.wader.dedupe_window), timeout)


def _end(c: Inputs, verdict: Verdict, line: str) -> None:
    if isinstance(verdict, Fatal):
        c.fail(verdict, line)
    else:
        c.retry(verdict)


def build_machine() -> Callable[[Core], Inputs]:
    b = TypeMachineBuilder(Inputs, Core)
    stopped = b.state("stopped")
    waiting = b.state("waiting_for_params")
    fatal_state = b.state("fatal")
    pending = b.state("pending", _pending)
    connecting = b.state("connecting", _dial)
    switching = b.state("switching", _dialing)  # the old link ended; its candidate dials
    connected = b.state("connected", _live)
    replacing = b.state("replacing", _switch)

    # -- stopped, waiting_for_params, fatal: no connection, no timer ---------------
    @stopped.upon(Inputs.start).loop()
    def start(c: Inputs, core: Core) -> None:
        c.retry(INITIAL)

    stopped.upon(Inputs.retry).to(pending).returns(None)
    stopped.upon(Inputs.stop).loop()(lambda c, core, done: core.stopped((), done))
    for idle in (waiting, fatal_state):
        idle.upon(Inputs.replace).to(pending).returns(None)
        idle.upon(Inputs.params_changed).to(pending).returns(None)
        idle.upon(Inputs.stop).to(stopped)(lambda c, core, done: core.stopped((), done))
        idle.upon(Inputs.start).loop().returns(None)
    for idle in (stopped, waiting, fatal_state):
        idle.upon(Inputs.messages).loop()(lambda c, core, link, frames: core.deliver(frames))
        if idle is stopped:
            idle.upon(Inputs.replace).loop().returns(None)
            idle.upon(Inputs.params_changed).loop().returns(None)
        for stale in (Inputs.due, Inputs.responded, Inputs.refused, Inputs.alive, Inputs.ended,
                      Inputs.stalled, Inputs.healthy, Inputs.overlap_over):
            idle.upon(stale).loop().returns(None)

    @fatal_state.upon(Inputs.fail).loop()
    def fail_again(c: Inputs, core: Core, fatal: Fatal, request_line: str | None) -> None:
        core.fatal(fatal, request_line)

    # -- pending: a timer to the next attempt ------------------------------------------
    @pending.upon(Inputs.due).loop()
    def attempt(c: Inputs, core: Core, t: Timer) -> None:
        request = core.request()
        if request is None:
            c.no_params()
        else:
            c.dial(request, t.cause)

    def no_params(c: Inputs, core: Core, data: object) -> None:
        core.links = Links()
        core.waiting_for_params()

    pending.upon(Inputs.no_params).to(waiting)(no_params)
    connected.upon(Inputs.no_params).to(waiting)(no_params)

    pending.upon(Inputs.dial, nodata=True).to(connecting).returns(None)

    def restart_pending(c: Inputs, core: Core, t: Timer) -> None:
        _cancel(t.call)
        t.call, t.cause = core.schedule(c.due, 0.0, "restart", None), "restart"

    pending.upon(Inputs.replace).loop()(restart_pending)
    pending.upon(Inputs.params_changed).loop()(restart_pending)

    @pending.upon(Inputs.stop).to(stopped)
    def stop_pending(c: Inputs, core: Core, t: Timer, done: Deferred[None]) -> None:
        _cancel(t.call)
        core.stopped((), done)

    def drained(c: Inputs, core: Core, data: object, link: Link, frames: list[bytes]) -> None:
        core.deliver(frames)  # a link closed on purpose hands on what it had received

    pending.upon(Inputs.messages).loop()(drained)

    pending.upon(Inputs.start).loop().returns(None)
    for stale in (Inputs.responded, Inputs.refused, Inputs.alive, Inputs.ended, Inputs.stalled,
                  Inputs.healthy, Inputs.overlap_over):
        pending.upon(stale).loop().returns(None)

    # -- connecting / switching: one request, no answer yet ---------------------------
    def answered(c: Inputs, core: Core, d: Dialing, link: Link) -> None:
        c.settle(link, d.collected)

    def refused(c: Inputs, core: Core, d: Dialing, link: Link, verdict: Verdict) -> None:
        _end(c, verdict, link.request_line)

    def failed(c: Inputs, core: Core, data: object, fatal: Fatal,
               request_line: str | None) -> None:
        core.links = Links()
        core.fatal(fatal, request_line)

    def restart_connecting(c: Inputs, core: Core, d: Dialing) -> None:
        d.link.close()

    def stop_connecting(c: Inputs, core: Core, d: Dialing, done: Deferred[None]) -> None:
        core.stopped((d.link,), done)

    for dialing in (connecting, switching):
        dialing.upon(Inputs.responded).loop()(answered)
        dialing.upon(Inputs.settle, nodata=True).to(connected).returns(None)
        dialing.upon(Inputs.refused).loop()(refused)
        dialing.upon(Inputs.retry, nodata=True).to(pending).returns(None)
        dialing.upon(Inputs.fail).to(fatal_state)(failed)
        dialing.upon(Inputs.replace).to(pending)(restart_connecting)
        dialing.upon(Inputs.params_changed).to(pending)(restart_connecting)
        dialing.upon(Inputs.stop).to(stopped)(stop_connecting)
        dialing.upon(Inputs.messages).loop()(drained)
        dialing.upon(Inputs.start).loop().returns(None)
        for stale in (Inputs.due, Inputs.alive, Inputs.ended, Inputs.stalled, Inputs.healthy,
                      Inputs.overlap_over):
            dialing.upon(stale).loop().returns(None)

    connected.upon(Inputs.retry, nodata=True).to(pending).returns(None)
    connected.upon(Inputs.fail).to(fatal_state)(failed)
    replacing.upon(Inputs.fail).to(fatal_state)(failed)

    # -- connected: one live connection -------------------------------------------------
    @connected.upon(Inputs.alive).loop()
    def alive(c: Inputs, core: Core, live: Live, link: Link) -> None:
        if link is live.link:
            live.stall = core.rearm(live.stall, core.config.wader.stall_timeout, c.stalled, link)

    @connected.upon(Inputs.stalled).loop()
    def stalled(c: Inputs, core: Core, live: Live, link: Link) -> None:
        live.stall = None
        if link is live.link:
            core.stall(link)

    def healthy(c: Inputs, core: Core, data: object) -> None:
        core.healthy()

    connected.upon(Inputs.healthy).loop()(healthy)
    replacing.upon(Inputs.healthy).loop()(healthy)

    @connected.upon(Inputs.overlap_over).loop()
    def dedupe_over(c: Inputs, core: Core, live: Live) -> None:
        live.dedupe, live.dedupe_end = None, None
        core.links = Links(active=live.link)

    @connected.upon(Inputs.messages).loop()
    def messages(c: Inputs, core: Core, live: Live, link: Link, frames: list[bytes]) -> None:
        if link is live.link and live.dedupe is not None:
            frames = core.drop_repeats(live.dedupe, frames)
        core.deliver(frames)

    @connected.upon(Inputs.ended).loop()
    def ended(c: Inputs, core: Core, live: Live, link: Link, verdict: Verdict) -> None:
        if link is live.link:
            live.cancel()
            _end(c, verdict, link.request_line)

    @connected.upon(Inputs.replace).loop()
    def switch(c: Inputs, core: Core, live: Live) -> None:
        _cancel(live.replace_later)
        live.replace_later = None
        delay = core.min_interval_delay(0.0)
        if delay > 0:
            live.replace_later = core.clock.callLater(delay, c.replace)
            return
        request = core.request()
        if request is None:  # predicates removed: close the stream and wait
            live.cancel()
            live.link.close()
            c.no_params()
        else:
            _cancel(live.dedupe_end)
            live.dedupe, live.dedupe_end = None, None
            c.overlap(live, request)

    @connected.upon(Inputs.params_changed).loop()
    def params_changed(c: Inputs, core: Core, live: Live) -> None:
        if not core.applied_in_place(live.link):  # else: changed on the open connection
            switch(c, core, live)

    connected.upon(Inputs.overlap, nodata=True).to(replacing).returns(None)

    @connected.upon(Inputs.stop).to(stopped)
    def stop_connected(c: Inputs, core: Core, live: Live, done: Deferred[None]) -> None:
        live.cancel()
        core.stopped((live.link,), done)

    connected.upon(Inputs.start).loop().returns(None)
    for stale in (Inputs.due, Inputs.responded, Inputs.refused):
        connected.upon(stale).loop().returns(None)

    # -- replacing: the live connection and its candidate --------------------------------
    @replacing.upon(Inputs.alive).loop()
    def alive_old(c: Inputs, core: Core, s: Switch, link: Link) -> None:
        alive(c, core, s.live, link)

    @replacing.upon(Inputs.stalled).loop()
    def stalled_old(c: Inputs, core: Core, s: Switch, link: Link) -> None:
        stalled(c, core, s.live, link)

    @replacing.upon(Inputs.messages).loop()
    def collect(c: Inputs, core: Core, s: Switch, link: Link, frames: list[bytes]) -> None:
        if link is s.live.link:
            core.collect(s.collect, frames)  # ids the replacement may repeat
        core.deliver(frames)

    @replacing.upon(Inputs.responded).loop()
    def promote(c: Inputs, core: Core, s: Switch, link: Link) -> None:
        if link is not s.candidate:
            return
        _cancel(s.timeout)
        s.live.cancel()
        s.live.link.close()
        c.settle(link, s.collect)

    replacing.upon(Inputs.settle, nodata=True).to(connected).returns(None)

    @replacing.upon(Inputs.refused).loop()
    def candidate_failed(c: Inputs, core: Core, s: Switch, link: Link, verdict: Verdict) -> None:
        if link is not s.candidate:
            return
        _cancel(s.timeout)
        if isinstance(verdict, Fatal):  # the new params are refused: drop the old stream too
            s.live.cancel()
            s.live.link.close()
            c.fail(verdict, link.request_line)
            return
        delay = core.backoffs.next_delay(verdict.cause)
        core.log_replacement_failed(verdict, delay)
        s.live.replace_later = core.clock.callLater(core.min_interval_delay(delay), c.replace)
        c.settle(s.live)


    @replacing.upon(Inputs.ended).loop()
    def old_ended(c: Inputs, core: Core, s: Switch, link: Link, verdict: Verdict) -> None:
        if link is not s.live.link:
            return
        # The server dropping the old stream (v1.1 sends disconnect 7 to the oldest
        # connection of an account) is expected: the candidate's outcome decides.
        core.log.info("Old stream ended while its replacement connects ({message})",
                      message=verdict.message)
        _cancel(s.timeout)
        s.live.cancel()
        c.dialing(s.candidate, s.collect)

    replacing.upon(Inputs.dialing, nodata=True).to(switching).returns(None)

    @replacing.upon(Inputs.overlap_over).loop()
    def candidate_timeout(c: Inputs, core: Core, s: Switch) -> None:
        core.log.warn("Replacement stream gave no response in {t}s: keeping the current one",
                      t=core.config.wader.overlap_timeout)
        s.candidate.close()
        c.settle(s.live)

    @replacing.upon(Inputs.replace).loop()
    def switch_again(c: Inputs, core: Core, s: Switch) -> None:
        _cancel(s.timeout)
        s.candidate.close()
        c.settle(s.live)
        c.replace()

    @replacing.upon(Inputs.params_changed).loop()
    def params_again(c: Inputs, core: Core, s: Switch) -> None:
        _cancel(s.timeout)
        s.candidate.close()
        c.settle(s.live)
        c.params_changed()

    @replacing.upon(Inputs.stop).to(stopped)
    def stop_replacing(c: Inputs, core: Core, s: Switch, done: Deferred[None]) -> None:
        _cancel(s.timeout)
        s.live.cancel()
        core.stopped((s.candidate, s.live.link), done)

    replacing.upon(Inputs.start).loop().returns(None)
    replacing.upon(Inputs.due).loop().returns(None)

    return b.build()

