"""Flamingo's configuration: YAML in, a validated, immutable ``Config`` out.

Every mistake becomes one ``ConfigError`` whose message names the key
(``logging.event.size: expected an integer, got 'lots'``), so ``twistd``
can exit non-zero with a single line instead of a traceback.

Secrets may be written as ``${ENV_NAME}`` in any string value (``$${`` is a
literal ``${``), or supplied through ``FLAMINGO_*`` environment variables
(see ``ENV_OVERRIDES``). Credentials in ``api.url`` (``https://user:pass@host``)
are taken out of the URL into ``username``/``password``, so no URL Flamingo
prints or requests carries them. ``start_warnings`` lists what deserves one
WARN line at start (Basic credentials in clear text, a config file with
secrets that others can read).
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

import attrs
import yaml

from flamingo._types import JsonObject
from flamingo.config.sections import (
    ApiConfig,
    Backoff,
    BackoffConfig,
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
)
from flamingo.config.values import (
    LEVELS,
    SECRET_KEYS,
    ConfigError,
    Field,
    boolean,
    choice,
    expand_env_mapping,
    fields,
    host_names,
    host_port,
    integer,
    is_loopback_host,
    kind_of,
    names,
    namespace,
    number,
    optional_text,
    path,
    redact_url,
    section,
    sentinels,
    set_dotted,
    text,
    url,
)
from flamingo.domain import catalog

__all__ = ["Config", "ConfigError", "load", "from_mapping", "find_config_file", "SECRET_KEYS",
           "redact_url", "start_warnings", "is_loopback_host", "LEVELS",
           "EventLogConfig", "LoggingConfig", "JournalConfig", "OAuthConfig", "ApiConfig", "XConfig",
           "JetstreamConfig", "MastodonConfig", "RedisConfig", "WebConfig", "HealthConfig", "ConsoleConfig",
           "Backoff", "BackoffConfig", "WaderConfig"]


#: Environment variables that override config keys (for secrets kept out of files).
ENV_OVERRIDES = {
    "FLAMINGO_USERNAME": "username",
    "FLAMINGO_PASSWORD": "password",
    "FLAMINGO_BEARER_TOKEN": "bearer_token",
    "FLAMINGO_OAUTH_CONSUMER_KEY": "oauth.consumer_key",
    "FLAMINGO_OAUTH_CONSUMER_SECRET": "oauth.consumer_secret",
    "FLAMINGO_OAUTH_TOKEN": "oauth.token",
    "FLAMINGO_OAUTH_TOKEN_SECRET": "oauth.token_secret",
    "FLAMINGO_WEB_TOKEN": "web.token",
    "FLAMINGO_REDIS_PASSWORD": "redis.password",
}

STREAMS = catalog.spec_for("twitter").streams  # v1.1's; every source's: catalog.all_streams()
AUTHS = ("basic", "oauth1", "bearer", "none")
FSYNC = ("always", "everysec", "no")
JOURNAL_WRITERS = ("thread", "inline")


@attrs.frozen
class Config:
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    stream: str = "filter"
    api: ApiConfig = ApiConfig()
    auth: str = "basic"
    oauth: OAuthConfig = OAuthConfig()
    bearer_token: str | None = attrs.field(default=None, repr=False)
    data_dir: Path = Path("/var/lib/flamingo")
    pidfile: Path | None = None
    logging: LoggingConfig = LoggingConfig()
    journal: JournalConfig = JournalConfig()
    redis: RedisConfig = RedisConfig()
    web: WebConfig = WebConfig()
    health: HealthConfig = HealthConfig()
    console: ConsoleConfig = ConsoleConfig()
    wader: WaderConfig = WaderConfig()
    source: str = "twitter"  # twitter | x | jetstream | mastodon (catalog.py)
    x: XConfig = XConfig()
    jetstream: JetstreamConfig = JetstreamConfig()
    mastodon: MastodonConfig = MastodonConfig()
    file: Path | None = None  # the file it was loaded from
    file_secrets: tuple[str, ...] = ()  # secret keys written in that file (not ${ENV} or FLAMINGO_*)

    def redacted(self) -> JsonObject:
        """A plain dict of the whole config, secrets shown as '***'."""
        return _redact(_plain_mapping(self), "")

    def secret(self, dotted: str) -> str | None:
        """The value of one secret key (``"password"``, ``"redis.password"``): asked for by name."""
        if dotted not in SECRET_KEYS:
            raise KeyError(f"{dotted} is not a secret key (one of {', '.join(sorted(SECRET_KEYS))})")
        node: object = self
        for part in dotted.split("."):
            node = getattr(node, part)
        return None if node is None else str(node)


# --- loading --------------------------------------------------------------


def find_config_file(explicit: str | None = None) -> Path:
    """``-c FILE``, else ``./flamingo.yml``, else ``~/flamingo.yml`` (the original's order)."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError("", f"config file not found: {path}")
        return path
    for candidate in (Path("flamingo.yml"), Path("~/flamingo.yml").expanduser()):
        if candidate.is_file():
            return candidate
    raise ConfigError("", "no config file: pass -c FILE or create ./flamingo.yml or ~/flamingo.yml")


def load(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None,
         check_dirs: bool = True) -> Config:
    """Read, validate and return the config in ``path``."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError("", f"cannot read config file {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError("", f"{path}: invalid YAML{where}: {getattr(e, 'problem', e)}") from None
    if data is None:
        data = {}
    config = from_mapping(data, environ=environ, check_dirs=check_dirs)
    return attrs.evolve(config, file=path.resolve(), file_secrets=_written_secrets(data))


def _written_secrets(data: object) -> tuple[str, ...]:
    """The secret keys whose value is written in the file itself (not only ``${ENV}`` references)."""
    found = []
    for dotted in sorted(SECRET_KEYS):
        node: object = data
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, (str, int)) and not isinstance(node, bool) and str(node):
            if re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", "", str(node).replace("$${", "")):
                found.append(dotted)
    api = data.get("api") if isinstance(data, dict) else None
    url = api.get("url") if isinstance(api, dict) else None
    if isinstance(url, str) and "@" in urlsplit(url).netloc:
        found.append("api.url")
    return tuple(found)


def from_mapping(data: object, environ: Mapping[str, str] | None = None,
                 check_dirs: bool = False) -> Config:
    """Validate a mapping (as parsed from YAML) into a ``Config``."""
    env = os.environ if environ is None else environ
    if not isinstance(data, dict):
        raise ConfigError("", f"the config must be a mapping of keys, got {kind_of(data)}")
    expanded = expand_env_mapping(data, env, "")
    for var, dotted in ENV_OVERRIDES.items():
        if env.get(var):
            set_dotted(expanded, dotted, env[var])
    config = _build(expanded)
    _check_semantics(config)
    if check_dirs:
        _check_dirs(config)
    return config


def _backoff(key: str, v: object, default: Backoff) -> Backoff:
    kw = fields(key, v, {"initial": number, "step": number, "factor": lambda k, x: number(k, x, 1.0),
                          "cap": number})
    b = attrs.evolve(default, **kw)
    if b.cap < b.initial:
        raise ConfigError(f"{key}.cap", f"must be at least initial ({b.initial}), got {b.cap}")
    return b


def _build(data: JsonObject) -> Config:
    top = section("", data, {a.name for a in attrs.fields(Config)} - {"file", "file_secrets"})
    api = fields("api", top.get("api"), {"url": text, "version": text})
    spec = catalog.spec_for(_source(top.get("source"), api.get("version")))
    kw = fields("", {k: v for k, v in top.items() if k in {
        "username", "password", "stream", "auth", "bearer_token", "data_dir", "pidfile"}}, {
        "username": optional_text, "password": optional_text, "bearer_token": optional_text,
        "stream": lambda k, v: choice(k, v, spec.streams, f" for source: {spec.name}"),
        "auth": lambda k, v: choice(k, v, spec.auths, f" for source: {spec.name}"),
        "data_dir": path, "pidfile": path,
    })
    kw["source"] = spec.name
    kw.setdefault("stream", spec.default_stream)
    kw.setdefault("auth", spec.auths[0])
    if "url" in api:
        api["url"] = url("api.url", api["url"], spec.schemes)
    elif spec.default_url is None:
        raise ConfigError("api.url", f"required for source: {spec.name} (the instance, https://mastodon.example)")
    else:
        api["url"] = spec.default_url
    kw["api"] = ApiConfig(**api)
    _credentials_from_url(kw)
    kw["x"] = _x_section(top.get("x"), kw["stream"] if spec.name == "x" else None)
    kw["jetstream"] = JetstreamConfig(**fields("jetstream", top.get("jetstream"), {
        "compress": boolean, "rewind": lambda k, v: number(k, v, 0.0)}))
    mastodon = fields("mastodon", top.get("mastodon"), {
        "gap_fill": boolean, "streaming_url": lambda k, v: url(k, v, ("http", "https", "ws", "wss")),
        "transport": lambda k, v: choice(k, v, ("websocket", "sse")),
        "gap_max": lambda k, v: integer(k, v, 0)})
    kw["mastodon"] = MastodonConfig(**mastodon)
    kw["oauth"] = OAuthConfig(**fields("oauth", top.get("oauth"), {
        "consumer_key": optional_text, "consumer_secret": optional_text, "token": optional_text,
        "token_secret": optional_text}))

    log = section("logging", top.get("logging"), {"dest", "level", "event"})
    event = EventLogConfig(**fields("logging.event", log.get("event"), {
        "dir": path, "size": lambda k, v: integer(k, v, 1),
        "max_bytes": lambda k, v: integer(k, v, 1), "max_age": lambda k, v: number(k, v, 1.0),
        "gzip": boolean}))
    kw["logging"] = LoggingConfig(event=event, **fields("logging", {
        k: v for k, v in log.items() if k != "event"}, {
        "dest": optional_text, "level": lambda k, v: choice(k, v, LEVELS)}))

    kw["journal"] = JournalConfig(**fields("journal", top.get("journal"), {
        "fsync": lambda k, v: choice(k, v, FSYNC),
        "segment_bytes": lambda k, v: integer(k, v, 4096),
        "writer": lambda k, v: choice(k, v, JOURNAL_WRITERS)}))

    redis = fields("redis", top.get("redis"), {
        "host": lambda k, v: host_port(k, v, 6379), "namespace": namespace,
        "password": optional_text, "db": integer, "timeout": lambda k, v: number(k, v, 0.01),
        "batch_max": lambda k, v: integer(k, v, 1), "memory_max": lambda k, v: integer(k, v, 1 << 20),
        "sentinels": sentinels, "master_name": optional_text, "wait_replicas": integer, "cluster": boolean,
        "pace": boolean})
    if "host" in redis:
        redis["host"], redis["port"] = redis["host"]
    if redis.get("sentinels") and not redis.get("master_name"):
        raise ConfigError("redis.master_name", "required with redis.sentinels (the name the sentinels "
                          "monitor, as in `sentinel monitor <name> ...`)")
    if redis.get("cluster") and redis.get("db"):
        raise ConfigError("redis.db", "Redis Cluster has only database 0")
    if redis.get("sentinels") and redis.get("cluster"):
        raise ConfigError("redis.cluster", "Redis Cluster fails over by itself: use redis.sentinels or "
                          "redis.cluster, not both")
    kw["redis"] = RedisConfig(**redis)

    web = fields("web", top.get("web"), {
        "enabled": boolean, "host": lambda k, v: host_port(k, v, 4711), "token": optional_text,
        "max_body": lambda k, v: integer(k, v, 1), "allowed_hosts": host_names,
        "allow_unauthenticated": boolean})
    if "host" in web:
        web["host"], web["port"] = web["host"]
    kw["web"] = WebConfig(**web)
    _check_web_bind(kw["web"])
    kw["health"] = HealthConfig(**fields("health", top.get("health"), {
        "stuck_after": lambda k, v: number(k, v, 1.0)}))

    console = top.get("console")
    if console is False:
        console = {"enabled": False}
    kw["console"] = ConsoleConfig(**fields("console", console, {
        "enabled": boolean, "listen": text, "authorized_keys": path, "host_key": path}))

    wader_raw = section("wader", top.get("wader"), {a.name for a in attrs.fields(WaderConfig)})
    wader = fields("wader", {k: v for k, v in wader_raw.items() if k != "backoff"}, {
        "delimited": boolean, "gzip": boolean, "stall_warnings": boolean,
        "stall_timeout": lambda k, v: number(k, v, 0.1),
        "connect_timeout": lambda k, v: number(k, v, 0.1),
        "max_message_bytes": lambda k, v: integer(k, v, 1024),
        "debounce": number, "min_interval": number, "healthy_after": number,
        "overlap_timeout": lambda k, v: number(k, v, 0.1),
        "dedupe_window": lambda k, v: integer(k, v, 1)})
    wader.setdefault("stall_timeout", spec.stall_timeout)
    b = section("wader.backoff", wader_raw.get("backoff"), {"network", "http", "rate_limit"})
    d = BackoffConfig()
    wader["backoff"] = BackoffConfig(
        network=_backoff("wader.backoff.network", b.get("network"), d.network),
        http=_backoff("wader.backoff.http", b.get("http"), d.http),
        rate_limit=_backoff("wader.backoff.rate_limit", b.get("rate_limit"), d.rate_limit))
    kw["wader"] = WaderConfig(**wader)
    return Config(**kw)


def _check_web_bind(web: WebConfig) -> None:
    """Without a token, only loopback: any web page could drive a reachable API."""
    if web.enabled and not web.token and not web.allow_unauthenticated \
            and not is_loopback_host(web.host):
        raise ConfigError("web.token", f"required when web.host listens beyond loopback "
                          f"({web.host}); set web.token (or FLAMINGO_WEB_TOKEN), or "
                          f"web.allow_unauthenticated: true if something else guards the port")

#: api.version values of old files, and the source each means
_VERSIONS = {"1.1": "twitter", "1": "twitter", "2": "x"}


def _source(raw: object, version: object) -> str:
    """``source:``, or what an old ``api.version`` means; a contradiction names both keys."""
    if version is not None and str(version) not in _VERSIONS:
        raise ConfigError("api.version", f"unknown version {version!r}: use source: "
                          f"({' | '.join(catalog.SOURCE_NAMES)}) instead")
    implied = _VERSIONS[str(version)] if version is not None else None
    if raw is None:
        return implied or "twitter"
    source = choice("source", raw, catalog.SOURCE_NAMES)
    if implied is not None and implied != source:
        raise ConfigError("source", f"source: {source} contradicts api.version: {version} "
                          f"(which means source: {implied}); keep one of the two keys")
    return str(source)


#: the partitions each X stream takes (absent: none allowed)
X_PARTITIONS = {"sample10": (1, 2), "firehose": (1, 20), "tweets-compliance": (1, 4),
                "users-compliance": (1, 4)}


def _x_section(raw: object, stream: str | None) -> XConfig:
    lists: dict[str, Field] = {f: names for f in ("tweet_fields", "expansions", "user_fields",
                                                  "media_fields", "poll_fields", "place_fields")}
    x = fields("x", raw, {"partition": lambda k, v: integer(k, v, 1),
                          "backfill_minutes": lambda k, v: integer(k, v, 0),
                          "tier": lambda k, v: choice(k, v, ("pay-per-use", "enterprise")),
                          **lists})
    if x.get("backfill_minutes", 0) > 5:
        raise ConfigError("x.backfill_minutes", f"must be 0 to 5, got {x['backfill_minutes']}")
    if stream is not None:
        bounds = X_PARTITIONS.get(stream)
        part = x.get("partition")
        if bounds is None and part is not None:
            raise ConfigError("x.partition", f"stream {stream} takes no partition")
        if bounds is not None:
            if part is None:
                raise ConfigError("x.partition", f"required for stream {stream} ({bounds[0]}-{bounds[1]})")
            if not bounds[0] <= part <= bounds[1]:
                raise ConfigError("x.partition", f"must be {bounds[0]}-{bounds[1]} for stream {stream}, got {part}")
    return XConfig(**x)


def _credentials_from_url(kw: JsonObject) -> None:
    """Move ``user:pass@`` out of api.url into username/password (Basic auth)."""
    api: ApiConfig = kw["api"]
    parts = urlsplit(api.url)
    if "@" not in parts.netloc:
        return
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    user, password = unquote(user), unquote(password)
    if kw.get("auth", "basic") != "basic":
        raise ConfigError("api.url", f"credentials in {redact_url(api.url)!r} are for auth: basic only")
    for k, v in (("username", user), ("password", password)):
        if v and kw.get(k) not in (None, v):
            raise ConfigError("api.url", f"holds a {k} and the {k} key sets another: keep one "
                              f"(url {redact_url(api.url)!r})")
        if v:
            kw[k] = v
    kw["api"] = attrs.evolve(api, url=parts._replace(netloc=hostport).geturl())


def _check_semantics(c: Config) -> None:
    if c.auth == "basic":
        if not c.username:
            raise ConfigError("username", "required for auth: basic")
        if not c.password:
            raise ConfigError("password", "required for auth: basic (or set FLAMINGO_PASSWORD)")
    elif c.auth == "oauth1":
        for f in ("consumer_key", "consumer_secret", "token", "token_secret"):
            if not getattr(c.oauth, f):
                raise ConfigError(f"oauth.{f}", "required for auth: oauth1")
    elif c.auth == "bearer" and not c.bearer_token:
        raise ConfigError("bearer_token", "required for auth: bearer (or set FLAMINGO_BEARER_TOKEN)")


def _check_dirs(c: Config) -> None:
    """Directories the daemon writes must exist (or be creatable) and be writable."""
    dirs = [("data_dir", c.data_dir)]
    if c.logging.event.dir is not None:
        dirs.append(("logging.event.dir", c.logging.event.dir))
    if c.logging.dest and c.logging.dest not in ("stdout", "-"):
        dirs.append(("logging.dest", Path(c.logging.dest).expanduser().parent))
    for key, d in dirs:
        try:
            # data_dir holds state only Flamingo reads (store copy, checkpoints, host key)
            d.mkdir(mode=0o700 if key == "data_dir" else 0o777, parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(key, f"cannot create directory {d}: {e.strerror}") from None
        if not os.access(d, os.W_OK | os.X_OK):
            raise ConfigError(key, f"directory {d} is not writable")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def start_warnings(c: Config) -> list[str]:
    """What the daemon says once, as WARN, when it starts (secrets are named, never shown)."""
    out = []
    parts = urlsplit(c.api.url)
    if c.auth == "basic" and parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
        out.append(f"api.url is http:// to {parts.hostname}: the Basic credentials (username, password) "
                   "cross the network in clear text; use https://")
    if c.file is not None and c.file_secrets:
        try:
            mode = c.file.stat().st_mode
        except OSError:
            mode = 0
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            out.append(f"config file {c.file} holds secrets ({', '.join(c.file_secrets)}) and is "
                       f"readable by others (mode {stat.S_IMODE(mode):04o}): chmod 600 it, or move the "
                       "secrets to ${ENV} references or FLAMINGO_* variables")
    return out


def _plain_mapping(value: object) -> JsonObject:
    """An attrs section as the mapping a config file would hold."""
    cls = type(value)
    if not attrs.has(cls):
        raise TypeError(f"not a config section: {cls.__name__}")
    return {a.name: _to_plain(getattr(value, a.name)) for a in attrs.fields(cls)}


def _to_plain(value: object) -> object:
    if attrs.has(type(value)):
        return _plain_mapping(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _redact(d: JsonObject, prefix: str) -> JsonObject:
    out: JsonObject = {}
    for k, v in d.items():
        dotted = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out[k] = _redact(v, dotted)
        elif dotted in SECRET_KEYS and v:
            out[k] = "***"
        elif dotted == "api.url" and isinstance(v, str):
            out[k] = redact_url(v)
        else:
            out[k] = v
    return out
