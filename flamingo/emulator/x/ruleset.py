"""The app's filtered-stream rule set, and which rules each post of the corpus matches.

X keeps one rule set per app; a change is committed at once (the rules
API answers with the new ids) and reaches the live stream a little later
(X says within about 20 seconds; here ``delay`` seconds on the emulator's
clock, 0 by default so tests see it at once) without a reconnect.

Matching is per corpus template: a post's facts do not depend on its id,
so ``suffix(i)`` — the ``"matching_rules"`` tail of template ``i``'s line,
or None when no rule matches — is computed once per rule-set version and
cached. A post that matches several rules is therefore one line with all
of them, never one line per rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
import orjson
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from flamingo.emulator.x.rules import Node, PostFacts, matches

__all__ = ["Rule", "RuleBook"]

_RULE_ID_BASE = 1_950_000_000_000_000_000


@attrs.frozen
class Rule:
    id: str
    value: str
    tag: str | None
    node: Node = attrs.field(eq=False, repr=False)

    def to_json(self) -> dict[str, str]:
        out = {"id": self.id, "value": self.value}
        if self.tag is not None:
            out["tag"] = self.tag
        return out


class RuleBook:
    """Committed rules (``rules``, creation order) and the ones the stream applies (``effective``)."""

    def __init__(self, facts: Sequence[PostFacts], clock: IReactorTime, delay: float = 0.0):
        self.facts = facts
        self.clock = clock
        self.delay = delay
        self.rules: dict[str, Rule] = {}
        self.effective: tuple[Rule, ...] = ()
        self.version = 0
        self._serial = 0
        self._cache: dict[int, bytes | None] = {}
        self._pending: list[IDelayedCall] = []
        #: called after the effective rules changed (streams waiting for a match wake up)
        self.listeners: list[Callable[[], None]] = []

    # -- the committed set ------------------------------------------------------
    def by_value(self, value: str) -> Rule | None:
        for rule in self.rules.values():
            if rule.value == value:
                return rule
        return None

    def new_id(self) -> str:
        self._serial += 1
        return str(_RULE_ID_BASE + self._serial * 4099)

    def commit(self, added: Sequence[Rule] = (), deleted: Sequence[str] = ()) -> None:
        """Change the committed set; the stream follows after ``delay``."""
        for rule_id in deleted:
            self.rules.pop(rule_id, None)
        for rule in added:
            self.rules[rule.id] = rule
        snapshot = tuple(self.rules.values())
        if self.delay > 0:
            self._pending.append(self.clock.callLater(self.delay, self._apply, snapshot))
        else:
            self._apply(snapshot)

    def cancel(self) -> None:
        """Forget changes not yet applied (the emulator is stopping)."""
        for call in self._pending:
            if call.active():
                call.cancel()
        self._pending.clear()

    def _apply(self, snapshot: tuple[Rule, ...]) -> None:
        self._pending = [c for c in self._pending if c.active()]
        self.effective = snapshot
        self.version += 1
        self._cache.clear()
        for listener in list(self.listeners):
            listener()

    # -- matching -----------------------------------------------------------------
    def matching(self, index: int) -> list[Rule]:
        """The effective rules template ``index`` matches."""
        facts = self.facts[index]
        return [r for r in self.effective if matches(r.node, facts)]

    def suffix(self, index: int) -> bytes | None:
        """``,"matching_rules":[...]}`` for template ``index``, or None if no rule matches."""
        try:
            return self._cache[index]
        except KeyError:
            pass
        hits = self.matching(index)
        out = None
        if hits:
            out = (b',"matching_rules":'
                   + orjson.dumps([{"id": r.id, "tag": r.tag} if r.tag is not None else {"id": r.id} for r in hits])
                   + b"}")
        self._cache[index] = out
        return out
