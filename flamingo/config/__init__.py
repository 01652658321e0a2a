"""Flamingo's configuration: YAML in, a validated, immutable ``Config`` out.

``reading`` reads a file (or a mapping) and checks it as a whole;
``sections`` holds one attrs class per section; ``values`` the converters
every key goes through and ``ConfigError``.
"""

from flamingo.config.reading import (
    LEVELS,
    SECRET_KEYS,
    ApiConfig,
    Backoff,
    BackoffConfig,
    Config,
    ConfigError,
    ConsoleConfig,
    EventLogConfig,
    HealthConfig,
    JetstreamConfig,
    JournalConfig,
    LoggingConfig,
    MastodonConfig,
    OAuthConfig,
    RedisConfig,
    WaderConfig,
    WebConfig,
    XConfig,
    find_config_file,
    from_mapping,
    is_loopback_host,
    load,
    redact_url,
    start_warnings,
)

__all__ = ["Config", "ConfigError", "load", "from_mapping", "find_config_file", "SECRET_KEYS",
           "redact_url", "start_warnings", "is_loopback_host", "LEVELS",
           "EventLogConfig", "LoggingConfig", "JournalConfig", "OAuthConfig", "ApiConfig", "XConfig",
           "JetstreamConfig", "MastodonConfig", "RedisConfig", "WebConfig", "HealthConfig", "ConsoleConfig",
           "Backoff", "BackoffConfig", "WaderConfig"]
