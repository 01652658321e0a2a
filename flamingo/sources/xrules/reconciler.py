"""Makes X's filter rules equal to Flamingo's: at start, on every change, and periodically.

One pass: read the book (Redis), list X's rules (paged GETs), then only the
calls the plan needs — one POST deleting what X holds that Flamingo does not
(each logged), one dry-run POST validating what is missing, one POST adding
the valid ones — and record X's verdicts (active with X's id, rejected with
X's message). A pass with nothing to change costs one GET.

Failures back off by cause with the wader's schedules (``wader.backoff``):
X unreachable or timing out ``network``, 5xx ``http``, 429 ``rate_limit``
(or until X's reset time, if later); 401/403 wait for the next periodic
pass. The rules API allows 100 POSTs per 15 minutes: a local budget keeps
Flamingo under it. Changes arriving during a pass start one more pass after
it, debounced, so a burst of edits costs one pass. Time only through the
injected ``IReactorTime``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from flamingo._types import JsonObject
from flamingo.config import BackoffConfig
from flamingo.errors import StoreUnavailable
from flamingo.logs import logger
from flamingo.sources.xrules.book import RuleBook
from flamingo.sources.xrules.client import RulesApi, RulesApiError
from flamingo.sources.xrules.model import Outcome, Rule, apply_outcome, plan
from flamingo.stream.backoff import Backoffs

__all__ = ["Reconciler", "PostBudget", "POSTS_PER_WINDOW", "WINDOW"]

log = logger("flamingo.rules")

POSTS_PER_WINDOW = 100
WINDOW = 15 * 60.0


@attrs.define
class PostBudget:
    """X's rules POST limit (100 per 15 minutes), counted on our side."""

    limit: int = POSTS_PER_WINDOW
    window: float = WINDOW
    sent: deque[float] = attrs.Factory(deque)

    def wait(self, now: float, n: int) -> float:
        """Seconds until ``n`` more POSTs fit in the window (0: now)."""
        while self.sent and self.sent[0] <= now - self.window:
            self.sent.popleft()
        over = len(self.sent) + n - self.limit
        if over <= 0:
            return 0.0
        return self.sent[over - 1] + self.window - now

    def spend(self, now: float) -> None:
        self.sent.append(now)


class Reconciler:
    """Keeps X's rule set equal to ``book``'s through ``api``."""

    def __init__(self, book: RuleBook, api: RulesApi, clock: IReactorTime,
                 backoff: BackoffConfig | None = None, interval: float = 300.0, debounce: float = 1.0,
                 now: Callable[[], float] | None = None) -> None:
        self.book = book
        self.api = api
        self.clock = clock
        self.interval = interval
        self.debounce = debounce
        self.now = now if now is not None else clock.seconds
        self.backoffs = Backoffs(backoff if backoff is not None else BackoffConfig())
        self.budget = PostBudget()
        self.running = False
        self.syncing: defer.Deferred[None] | None = None
        self.dirty = False  # changed during a pass: one more after it
        self.in_pass = False
        self.timer: IDelayedCall | None = None
        self.next_at: float | None = None
        self.last_sync: float | None = None
        self.last_attempt: float | None = None
        self.error: str | None = None
        self.cause: str | None = None
        self.passes = 0
        self.deleted_at_x = 0
        #: called after a pass that added rules at X (a filter stream refused for lack of rules retries)
        self.on_added: list[Callable[[], None]] = []

    # -- life --------------------------------------------------------------------------

    def start(self) -> None:
        self.running = True
        self._schedule(0.0)

    def stop(self, wait: float = 5.0) -> defer.Deferred[None]:
        """No more passes; the one under way may finish for ``wait`` seconds, then is cancelled."""
        self.running = False
        self._cancel()
        syncing = self.syncing
        if syncing is None:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        timer = self.clock.callLater(wait, syncing.cancel)

        def gone(_: object) -> None:
            if timer.active():
                timer.cancel()
            d.callback(None)
        syncing.addBoth(gone)
        return d

    def kick(self) -> None:
        """The rules changed: a pass soon (after the one running, if any)."""
        if not self.running:
            return
        if self.in_pass:
            self.dirty = True
            return
        if self.timer is None or not self.timer.active() or self.timer.getTime() > self.clock.seconds() + self.debounce:
            self._schedule(self.debounce)

    def _cancel(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self.next_at = None

    def _schedule(self, delay: float) -> None:
        self._cancel()
        self.timer = self.clock.callLater(delay, self._due)
        self.next_at = self.now() + delay

    def _due(self) -> None:
        self.timer = None
        self.next_at = None
        d = self.sync()
        if not d.called:
            self.syncing = d
            d.addBoth(self._over)

    def _over(self, _: object) -> None:
        self.syncing = None

    # -- one pass --------------------------------------------------------------------------

    def sync(self) -> defer.Deferred[None]:
        """One reconciliation; schedules the next (retry or periodic) itself."""
        return defer.Deferred.fromCoroutine(self._sync())

    async def _sync(self) -> None:
        self.last_attempt = self.now()
        self.dirty = False
        self.in_pass = True
        try:
            await self._pass()
        except RulesApiError as e:
            self._failed(e.cause, e.message, e.reset_at)
            return
        except StoreUnavailable as e:
            self._failed("network", f"Redis: {e}", None)
            return
        except defer.CancelledError:  # stopped while X or Redis had not answered
            return
        except Exception as e:  # a bug must not stop the rule sync for good
            log.failure("X rules sync failed")
            self._failed("http", f"internal error: {e}", None)
            return
        finally:
            self.in_pass = False
        self.passes += 1
        self.last_sync = self.now()
        self.error = self.cause = None
        self.backoffs.reset()
        if self.running:
            self._schedule(self.debounce if self.dirty else self.interval)

    def _failed(self, cause: str, message: str, reset_at: float | None) -> None:
        if cause == "fatal":
            delay = self.interval
        else:
            delay = self.backoffs.next_delay(cause)
            if reset_at is not None:
                delay = max(delay, reset_at - self.now())
        if (self.cause, self.error) != (cause, message):
            log.warn("X rules sync failed ({cause}): {message}; next try in {delay:.0f}s",
                     cause=cause, message=message, delay=delay)
        self.error, self.cause = message, cause
        if self.running:
            self._schedule(delay)  # a change meanwhile is in the next pass anyway

    async def _pass(self) -> None:
        await self.book.load()
        if not self.book.trusted:
            raise RulesApiError("network", "Redis lost the store's marker: rules are not synced until it is back")
        rules = self.book.rules()
        remote = await self.api.list()
        p = plan(rules, remote)
        if not p.empty:
            posts = (1 if p.delete else 0) + (2 if p.add else 0)
            wait = self.budget.wait(self.now(), posts)
            if wait > 0:
                raise RulesApiError("rate_limit", f"rules POST budget ({POSTS_PER_WINDOW} per 15 minutes) "
                                    "used up", self.now() + wait)
        if p.delete:
            self.budget.spend(self.now())
            await self.api.delete([r.id for r in p.delete])
            self.deleted_at_x += len(p.delete)
            for r in p.delete:
                log.info("Deleted X rule {id} {value!r} (tag {tag!r}): not in Flamingo's rules",
                         id=r.id, value=r.value, tag=r.tag)
        ids = dict(p.active)
        rejected: dict[str, str] = {}
        if p.add:
            self.budget.spend(self.now())
            checked = await self.api.add(p.add, True)
            rejected.update(checked.rejected)
            valid = [r for r in p.add if r.value not in checked.rejected]
            if valid:
                self.budget.spend(self.now())
                added = await self.api.add(valid, False)
                ids.update({v: i for v, i in added.ids.items() if i})
                rejected.update(added.rejected)
            for value, why in rejected.items():
                log.warn("X rejected rule {value!r}: {why}", value=value, why=why)
            if ids.keys() - p.active.keys():
                log.info("Added {n} X rule(s)", n=len(ids.keys() - p.active.keys()))
        changes = apply_outcome(rules, Outcome(ids=ids, rejected=rejected))
        await self.book.record({v: (_tag_of(rules, v), r) for v, r in changes.items()})
        if ids.keys() - p.active.keys():
            for cb in list(self.on_added):
                cb()

    # -- what status shows -------------------------------------------------------------------

    def status(self) -> JsonObject:
        rules = self.book.rules()
        count = {s: sum(1 for r in rules if r.status == s) for s in ("pending", "active", "rejected")}
        return {"rules": len(rules), **count, "last_sync": self.last_sync, "last_attempt": self.last_attempt,
                "next_sync_at": self.next_at, "error": self.error, "cause": self.cause,
                "syncing": self.syncing is not None, "passes": self.passes, "deleted_at_x": self.deleted_at_x}


def _tag_of(rules: list[Rule], value: str) -> str | None:
    for r in rules:
        if r.value == value:
            return r.tag
    return None
