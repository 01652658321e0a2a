"""The running daemon's parts, as one object handed to the REST API and the console."""

from __future__ import annotations

from typing import Any

import attrs

from flamingo.config import Config

__all__ = ["App"]


@attrs.define
class App:
    """What control surfaces need: read state, make changes through the store.

    ``store`` (flamingo.store.Store), ``stats`` (flamingo.stats.Stats),
    ``wader`` (flamingo.stream.wader.Wader) and ``delivery``
    (flamingo.dispatch: journal backlog, Redis status) are filled in by
    flamingo.service when the daemon is built.
    """

    config: Config
    reactor: Any
    store: Any = None
    stats: Any = None
    wader: Any = None
    delivery: Any = None
    started_at: float = 0.0
