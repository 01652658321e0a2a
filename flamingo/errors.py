"""Errors shared by the store, the REST API, the console and the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from twisted.python.failure import Failure

__all__ = ["FlamingoError", "ValidationError", "NotFound", "StoreUnavailable", "failure_text"]


def failure_text(failure: Failure) -> str:
    """A failure in words for a log line or a status: its message, else its type's name."""
    return failure.getErrorMessage() or type(failure.value).__name__


class FlamingoError(Exception):
    """Base of Flamingo's own errors."""


@attrs.define(eq=False)
class ValidationError(FlamingoError):
    """A value the Streaming API (or Flamingo) would refuse.

    ``field`` names the offending parameter, ``limit`` the rule broken
    (e.g. ``"track: at most 400 phrases"``); REST maps this to 422.
    """

    field: str
    message: str
    limit: str | None = None

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@attrs.define(eq=False)
class NotFound(FlamingoError):
    """An unknown stream, parameter or subscription (REST: 404)."""

    what: str
    name: str

    def __str__(self) -> str:
        return f"unknown {self.what} {self.name!r}"


class StoreUnavailable(FlamingoError):
    """Redis cannot be reached: a write could not be made (REST: 503)."""
