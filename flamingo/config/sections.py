"""The sections of a Flamingo config: what each holds and its defaults (frozen attrs).

``flamingo.config`` reads a YAML file into these (validating every key) and
re-exports them; ``docs/configuration.md`` and ``etc/flamingo.yml`` describe
every field (a test keeps the three in step).
"""

from __future__ import annotations

from pathlib import Path

import attrs

__all__ = ["EventLogConfig", "LoggingConfig", "JournalConfig", "OAuthConfig", "ApiConfig", "XConfig",
           "JetstreamConfig", "MastodonConfig", "RedisConfig", "WebConfig", "HealthConfig", "ConsoleConfig",
           "Backoff", "BackoffConfig", "WaderConfig"]


@attrs.frozen
class EventLogConfig:
    """The kept journal (the original's rotating event log)."""

    dir: Path | None = None
    size: int = 100_000  # events per file, the original's rule
    max_bytes: int | None = None  # rotate also after this many bytes
    max_age: float | None = None  # ... or seconds
    gzip: bool = False  # gzip closed files


@attrs.frozen
class LoggingConfig:
    dest: str | None = None  # file path; None or "stdout" = standard output
    level: str = "INFO"
    event: EventLogConfig = EventLogConfig()


@attrs.frozen
class JournalConfig:
    fsync: str = "everysec"  # always | everysec | no, like Redis' appendfsync
    segment_bytes: int = 64 * 1024 * 1024  # internal spool segment size
    writer: str = "thread"  # thread | inline: who runs the journal's writes (journal_writer.py)


@attrs.frozen
class OAuthConfig:
    consumer_key: str | None = None
    consumer_secret: str | None = attrs.field(default=None, repr=False)
    token: str | None = attrs.field(default=None, repr=False)
    token_secret: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class ApiConfig:
    url: str = "https://stream.twitter.com"  # the source's default when absent (catalog.py)
    version: str = "1.1"  # kept for old files: "1.1" is source: twitter


@attrs.frozen
class XConfig:
    """``x:`` (source: x): the stream's partition, backfill and the fields asked for."""

    partition: int | None = None  # sample10 1-2, firehose 1-20, compliance 1-4 (required there)
    backfill_minutes: int = 0  # 0-5, Enterprise: re-sent on every reconnect, repeats dropped by id
    tier: str = "pay-per-use"  # pay-per-use | enterprise: rule length and count limits
    tweet_fields: tuple[str, ...] = ()
    expansions: tuple[str, ...] = ()
    user_fields: tuple[str, ...] = ()
    media_fields: tuple[str, ...] = ()
    poll_fields: tuple[str, ...] = ()
    place_fields: tuple[str, ...] = ()


@attrs.frozen
class JetstreamConfig:
    """``jetstream:`` (source: jetstream)."""

    compress: bool = True  # zstd with Jetstream's dictionary
    rewind: float = 5.0  # seconds re-read before the last journaled time_us on resume


@attrs.frozen
class MastodonConfig:
    """``mastodon:`` (source: mastodon)."""

    gap_fill: bool = True  # fill reconnect gaps from the REST timelines
    streaming_url: str | None = None  # override /api/v2/instance discovery
    transport: str = "websocket"  # websocket | sse
    gap_max: int = 2000  # statuses fetched per stream per gap, at most


@attrs.frozen
class RedisConfig:
    host: str = "127.0.0.1"
    port: int = 6379
    namespace: str = "flamingo"
    password: str | None = attrs.field(default=None, repr=False)
    db: int = 0
    timeout: float = 5.0  # seconds per command before Redis counts as unreachable
    batch_max: int = 5000  # events per MULTI/EXEC
    memory_max: int = 16 << 20  # bytes of events the sink holds in memory; beyond, read back from disk
    pace: bool = True  # pause reading the stream while Redis takes batches slower than they come
    #: Sentinel (host, port) pairs: the master of ``master_name`` is found through them
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str | None = None
    wait_replicas: int = 0  # WAIT for this many replicas after each batch (0: don't)
    cluster: bool = False  # Redis Cluster: every key carries the hash tag {<namespace>}

    @property
    def prefix(self) -> str:
        """What every key of the namespace starts with: ``{ns}`` in cluster mode (one hash slot)."""
        return "{%s}" % self.namespace if self.cluster else self.namespace


@attrs.frozen
class WebConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 4711
    token: str | None = attrs.field(default=None, repr=False)
    max_body: int = 1024 * 1024
    #: Host header names accepted besides loopback, localhost and web.host ("*": any).
    allowed_hosts: tuple[str, ...] = ()
    #: Listen beyond loopback without web.token (something else must guard the port).
    allow_unauthenticated: bool = False


@attrs.frozen
class HealthConfig:
    stuck_after: float = 60.0  # backlog unmoved this long with Redis up -> /ready 503


@attrs.frozen
class ConsoleConfig:
    enabled: bool = True
    listen: str = "tcp:4712:interface=127.0.0.1"
    authorized_keys: Path = Path("~/.ssh/authorized_keys")
    host_key: Path | None = None  # default: <data_dir>/console_host_key


@attrs.frozen
class Backoff:
    """One reconnect schedule: ``initial``, then ``+step`` or ``*factor``, up to ``cap``."""

    initial: float
    cap: float
    step: float = 0.0
    factor: float = 1.0


@attrs.frozen
class BackoffConfig:
    network: Backoff = Backoff(initial=0.25, step=0.25, cap=16.0)
    http: Backoff = Backoff(initial=5.0, factor=2.0, cap=320.0)
    rate_limit: Backoff = Backoff(initial=60.0, factor=2.0, cap=960.0)


@attrs.frozen
class WaderConfig:
    delimited: bool = True  # request delimited=length, as hbc did
    gzip: bool = True  # Accept-Encoding: gzip
    stall_warnings: bool = True
    stall_timeout: float = 90.0  # no byte at all for this long -> reconnect
    connect_timeout: float = 30.0  # to response headers
    max_message_bytes: int = 1024 * 1024
    debounce: float = 5.0  # params edits within this window -> one reconnect
    min_interval: float = 1.0  # between connection attempts, whatever the cause
    healthy_after: float = 60.0  # connected this long -> backoff counters reset
    overlap_timeout: float = 30.0  # give up on a replacement connection after this
    dedupe_window: int = 50_000  # recent ids remembered during an overlap
    backoff: BackoffConfig = BackoffConfig()
