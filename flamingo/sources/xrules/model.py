"""X filter rules without I/O: what a rule is, what may be added, and what to change at X.

Flamingo's rule set (kept in Redis) is the desired state; X's is made equal
to it by the reconciler. ``plan(desired, remote)`` says which calls do that
and nothing more: rules X already has with the same value and tag are kept;
a rule whose tag differs is deleted and added again (X cannot edit a tag);
a rule X rejected before is not sent again until it is changed; whatever X
holds that Flamingo does not is deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import attrs

from flamingo._types import JsonObject
from flamingo.errors import ValidationError

__all__ = ["Rule", "RemoteRule", "Plan", "Limits", "TIERS", "STATUSES", "plan", "check_new",
           "select_removed", "apply_outcome", "Outcome"]

STATUSES = ("pending", "active", "rejected")


@attrs.frozen
class Limits:
    """What X accepts per tier (its docs, 2026)."""

    max_length: int
    max_rules: int


TIERS: Mapping[str, Limits] = {"pay-per-use": Limits(1024, 1000), "enterprise": Limits(2048, 25_000)}


@attrs.frozen
class Rule:
    """One rule as Flamingo holds it: the wish (value, tag) and what X made of it."""

    value: str
    tag: str | None = None
    id: str | None = None  # X's id once active
    status: str = "pending"
    error: str | None = None  # X's message when rejected

    def to_dict(self) -> JsonObject:
        return {"value": self.value, "tag": self.tag, "id": self.id, "status": self.status,
                "error": self.error}

    @classmethod
    def from_dict(cls, value: str, doc: Mapping[str, object]) -> Rule:
        """A stored rule (unknown or wrong-typed fields fall back to pending)."""
        def text(k: str) -> str | None:
            v = doc.get(k)
            return v if isinstance(v, str) else None
        status = text("status") or "pending"
        return cls(value=value, tag=text("tag"), id=text("id"),
                   status=status if status in STATUSES else "pending", error=text("error"))


@attrs.frozen
class RemoteRule:
    """A rule as X lists it."""

    id: str
    value: str
    tag: str | None = None


@attrs.frozen
class Plan:
    """The calls that make X's rule set equal to Flamingo's."""

    delete: tuple[RemoteRule, ...] = ()  # by id, in one POST
    add: tuple[Rule, ...] = ()  # validated with dry_run, then one POST
    active: Mapping[str, str] = attrs.Factory(dict)  # value -> X's id, already in place

    @property
    def empty(self) -> bool:
        return not self.delete and not self.add


def plan(desired: Iterable[Rule], remote: Iterable[RemoteRule]) -> Plan:
    """What to delete and add at X so that it holds exactly ``desired`` (rejected ones aside)."""
    want = {r.value: r for r in desired}
    delete: list[RemoteRule] = []
    active: dict[str, str] = {}
    for r in remote:
        mine = want.get(r.value)
        if mine is not None and mine.tag == r.tag and r.value not in active:
            active[r.value] = r.id
        else:
            delete.append(r)  # not ours, a changed tag, or a second copy
    add = tuple(r for v, r in want.items() if v not in active and r.status != "rejected")
    return Plan(delete=tuple(delete), add=add, active=active)


def check_new(rules: Sequence[Rule], value: object, tag: object, limits: Limits) -> Rule | None:
    """The rule to add; None when a rule with this value exists (unchanged).

    Raises ValidationError (REST: 422) for what X would refuse outright.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("value", "a rule needs a non-empty value")
    value = value.strip()
    if tag is not None and not isinstance(tag, str):
        raise ValidationError("tag", f"expected a string, got {type(tag).__name__}")
    tag = tag.strip() or None if isinstance(tag, str) else None
    if len(value) > limits.max_length:
        raise ValidationError("value", f"{len(value)} characters: over this tier's {limits.max_length}",
                              limit=f"value: at most {limits.max_length} characters")
    if any(r.value == value for r in rules):
        return None
    if len(rules) >= limits.max_rules:
        raise ValidationError("rules", f"this tier allows {limits.max_rules} rules, {len(rules)} are set",
                              limit=f"rules: at most {limits.max_rules}")
    return Rule(value=value, tag=tag)


def select_removed(rules: Sequence[Rule], value: object = None, tag: object = None) -> list[Rule]:
    """The rules a remove names (by value, or every rule with a tag); exactly one of the two."""
    if (value is None) == (tag is None):
        raise ValidationError("value", "give a value or a tag (one of the two)")
    if value is not None:
        if not isinstance(value, str) or not value.strip():
            raise ValidationError("value", "a non-empty value is needed")
        return [r for r in rules if r.value == value.strip()]
    if not isinstance(tag, str) or not tag.strip():
        raise ValidationError("tag", "a non-empty tag is needed")
    return [r for r in rules if r.tag == tag.strip()]


@attrs.frozen
class Outcome:
    """What X answered for the rules of one reconciliation."""

    ids: Mapping[str, str] = attrs.Factory(dict)  # value -> id of the rules now at X
    rejected: Mapping[str, str] = attrs.Factory(dict)  # value -> X's message


def apply_outcome(rules: Iterable[Rule], outcome: Outcome) -> dict[str, Rule]:
    """The rules whose status changes (value -> new rule); rules X did not answer for keep theirs."""
    changed: dict[str, Rule] = {}
    for r in rules:
        if r.value in outcome.ids:
            new = attrs.evolve(r, id=outcome.ids[r.value], status="active", error=None)
        elif r.value in outcome.rejected:
            new = attrs.evolve(r, id=None, status="rejected", error=outcome.rejected[r.value])
        elif r.status == "active":
            new = attrs.evolve(r, id=None, status="pending")  # no longer at X: to be added again
        else:
            continue
        if new != r:
            changed[r.value] = new
    return changed
