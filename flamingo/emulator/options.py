"""The emulator's settings (one frozen value; the CLI builds it from flags)."""

from __future__ import annotations

import attrs

__all__ = ["EmulatorOptions"]


@attrs.frozen
class EmulatorOptions:
    """What the emulator sends and whom it accepts.

    ``rate`` is messages per second of the timeline every connection shares
    (each gets the messages matching its predicates; see ``timeline.py``);
    0 = as fast as each client reads, with a sequence per connection. With no credentials configured
    every request is accepted.
    ``delivery_cap`` limits statuses per second on a filter stream; matches
    above it are counted and reported in ``limit`` notices (with ``rate=0``
    the stream matches twice the cap). ``random_disconnects`` is the chance
    per message of a random disconnect message (off by default, so tests and
    benchmarks are deterministic).

    Exposure: ``header_timeout`` is how long a connection may take to send a
    complete request (a client that connects and sends nothing, or half a
    header, is answered 408 and dropped); ``max_connections`` caps the open
    connections, streams included (one more is answered 503 and closed).
    Listening beyond loopback needs credentials (``has_secret``).
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
    header_timeout: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    max_connections: int = attrs.field(default=100, validator=attrs.validators.ge(1))

    @property
    def auth_required(self) -> bool:
        return bool(self.user or self.bearer_token or self.oauth_consumer_key)

    @property
    def has_secret(self) -> bool:
        """Credentials a stranger cannot guess: a password, a bearer token or an OAuth secret."""
        return bool((self.user and self.password) or self.bearer_token
                    or (self.oauth_consumer_key and self.oauth_consumer_secret))
