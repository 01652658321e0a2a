"""The emulator's settings (one frozen value; the CLI builds it from flags)."""

from __future__ import annotations

import attrs

__all__ = ["EmulatorOptions"]


@attrs.frozen
class EmulatorOptions:
    """What the emulator sends and whom it accepts.

    ``rate`` is messages per second of the timeline every connection shares
    (each gets the messages matching its predicates; see ``timeline.py``);
    0 = as fast as each client reads, with a sequence per connection. With no credentials configured every request is accepted.
    ``delivery_cap`` limits statuses per second on a filter stream; matches
    above it are counted and reported in ``limit`` notices (with ``rate=0``
    the stream matches twice the cap). ``random_disconnects`` is the chance
    per message of a random disconnect message (off by default, so tests and
    benchmarks are deterministic).
    """

    seed: int = 1
    rate: float = 0.0
    size: str = attrs.field(default="realistic", validator=attrs.validators.in_(("realistic", "small")))
    keepalive: float = 30.0
    user: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    bearer_token: str | None = attrs.field(default=None, repr=False)
    oauth_consumer_key: str | None = None
    oauth_consumer_secret: str | None = attrs.field(default=None, repr=False)
    oauth_token: str | None = None
    oauth_token_secret: str | None = attrs.field(default=None, repr=False)
    oauth_max_skew: float = 300.0
    delivery_cap: int | None = None
    replay: str | None = None
    record: bool = False
    allow_count: bool = False
    one_connection_per_account: bool = True
    random_disconnects: float = 0.0
    stall_queue: int = 1000
    stall_warning_percent: int = 60
    journal: str | None = None
    pool_size: int | None = None

    @property
    def auth_required(self) -> bool:
        return bool(self.user or self.bearer_token or self.oauth_consumer_key)
