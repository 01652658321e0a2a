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

    ``source`` picks the API: ``twitter`` (v1.1) or ``x`` (X API v2, see
    ``flamingo/emulator/x/``). For ``x``: ``tier`` sets the rule limits
    (``pay-per-use``: 1,000 rules of at most 1,024 characters, one
    connection per stream; ``enterprise``: 25,000 of 2,048, two
    connections) unless ``max_rules`` / ``max_rule_length`` /
    ``connections`` say otherwise; the filter stream answers 409 while the
    app has no rules, as X does (``allow_no_rules`` lets it connect and
    send keep-alives); ``stale_seconds`` is how long a connection whose
    client went away still counts against the allowance (X notices late;
    ``DELETE /2/connections/all`` ends it at once); ``post_cap`` posts
    delivered app-wide end every stream with X's ``UsageCapExceeded``
    (and 429 at connect) — X's monthly cap; ``rules_delay`` is how long a committed
    rule change takes to reach the live stream; ``rules_rate`` rules POSTs
    (and ``connect_rate`` stream connections) are allowed per
    ``rate_window`` seconds (X: 100 and 50 per 15 minutes). ``keepalive``
    defaults to 30 s for v1.1 and 20 s for X.
    """

    seed: int = 1
    rate: float = 0.0
    size: str = attrs.field(default="realistic", validator=attrs.validators.in_(("realistic", "small")))
    keepalive: float | None = None  # None: the source's own (30 s v1.1, 20 s X)
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
    source: str = attrs.field(default="twitter", validator=attrs.validators.in_(("twitter", "x")))
    tier: str = attrs.field(default="pay-per-use", validator=attrs.validators.in_(("pay-per-use", "enterprise")))
    rules_delay: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    rules_rate: int = attrs.field(default=100, validator=attrs.validators.ge(1))
    connect_rate: int = attrs.field(default=50, validator=attrs.validators.ge(1))
    rate_window: float = attrs.field(default=900.0, validator=attrs.validators.gt(0))
    connections: int | None = None
    max_rules: int | None = None
    max_rule_length: int | None = None
    allow_no_rules: bool = False
    stale_seconds: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    post_cap: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.source == "x" and self.replay:
            raise ValueError("--replay is for the v1.1 emulator; --source x generates its posts")

    @property
    def keepalive_seconds(self) -> float:
        """The keep-alive interval in effect (0 = never)."""
        if self.keepalive is not None:
            return self.keepalive
        return 20.0 if self.source == "x" else 30.0

    @property
    def auth_required(self) -> bool:
        return bool(self.user or self.bearer_token or self.oauth_consumer_key)

    @property
    def has_secret(self) -> bool:
        """Credentials a stranger cannot guess: a password, a bearer token or an OAuth secret."""
        return bool((self.user and self.password) or self.bearer_token
                    or (self.oauth_consumer_key and self.oauth_consumer_secret))
