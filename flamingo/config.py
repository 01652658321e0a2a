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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs
import yaml

from flamingo import catalog
from flamingo._types import JsonObject

__all__ = ["Config", "ConfigError", "load", "from_mapping", "find_config_file", "SECRET_KEYS",
           "redact_url", "start_warnings"]


class ConfigError(Exception):
    """A configuration mistake; ``str()`` is one line naming the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


#: Keys (dotted) whose values are secrets: shown as '***' everywhere.
SECRET_KEYS = frozenset(
    {
        "password",
        "bearer_token",
        "oauth.consumer_secret",
        "oauth.token_secret",
        "oauth.token",
        "web.token",
        "redis.password",
    }
)

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

LEVELS = ("DEBUG", "INFO", "WARN", "ERROR", "FATAL")
STREAMS = catalog.spec_for("twitter").streams  # v1.1's; every source's: catalog.all_streams()
AUTHS = ("basic", "oauth1", "bearer", "none")
FSYNC = ("always", "everysec", "no")
JOURNAL_WRITERS = ("thread", "inline")


# --- sections -------------------------------------------------------------


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
        return _redact(_to_plain(self), "")

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


def _written_secrets(data: Any) -> tuple[str, ...]:
    """The secret keys whose value is written in the file itself (not only ``${ENV}`` references)."""
    found = []
    for dotted in sorted(SECRET_KEYS):
        node = data
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, (str, int)) and not isinstance(node, bool) and str(node):
            if re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", "", str(node).replace("$${", "")):
                found.append(dotted)
    url = data.get("api", {}).get("url") if isinstance(data.get("api"), dict) else None
    if isinstance(url, str) and "@" in urlsplit(url).netloc:
        found.append("api.url")
    return tuple(found)


def from_mapping(data: Any, environ: Mapping[str, str] | None = None,
                 check_dirs: bool = False) -> Config:
    """Validate a mapping (as parsed from YAML) into a ``Config``."""
    env = os.environ if environ is None else environ
    if not isinstance(data, dict):
        raise ConfigError("", f"the config must be a mapping of keys, got {_kind(data)}")
    data = _expand_env(data, env, "")
    for var, dotted in ENV_OVERRIDES.items():
        if env.get(var):
            _set_dotted(data, dotted, env[var])
    config = _build(data)
    _check_semantics(config)
    if check_dirs:
        _check_dirs(config)
    return config


# --- validation helpers ---------------------------------------------------


def _kind(value: object, key: str = "") -> str:
    """The value for an error line: a secret's is hidden, a long one cut."""
    if value is None:
        return "nothing"
    if key in SECRET_KEYS:
        return f"{type(value).__name__} (value hidden)"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _expand_env(value: Any, env: Mapping[str, str], key: str) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, env, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, env, key) for v in value]
    if isinstance(value, str) and "${" in value:
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name is None:  # "$${": a literal "${"
                return "${"
            if name not in env:
                raise ConfigError(key, f"environment variable {name} is not set")
            return env[name]
        return re.sub(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, value)
    return value


def _set_dotted(data: JsonObject, dotted: str, value: str) -> None:
    *parents, last = dotted.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            return  # a type error that _build will report
    node[last] = value


def _str(key: str, v: object) -> str:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise ConfigError(key, f"expected a string, got {_kind(v, key)}")
    return str(v)


def _opt_str(key: str, v: object) -> str | None:
    return None if v is None else _str(key, v)


def _int(key: str, v: object, minimum: int | None = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v)
        else:
            raise ConfigError(key, f"expected an integer, got {_kind(v)}")
    if minimum is not None and v < minimum:
        raise ConfigError(key, f"must be at least {minimum}, got {v}")
    return v


def _num(key: str, v: object, minimum: float = 0.0) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(key, f"expected a number, got {_kind(v)}")
    if v < minimum:
        raise ConfigError(key, f"must be at least {minimum}, got {v}")
    return float(v)


def _bool(key: str, v: object) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(key, f"expected true or false, got {_kind(v)}")
    return v


def _choice(key: str, v: object, choices: tuple[str, ...], where: str = "") -> str:
    s = _str(key, v)
    norm = s.upper() if choices is LEVELS else s.lower()
    if norm == "WARNING" and choices is LEVELS:
        norm = "WARN"
    if norm not in choices:
        raise ConfigError(key, f"must be one of {', '.join(choices)}{where}, got {s!r}")
    return norm


def _path(key: str, v: object) -> Path:
    return Path(_str(key, v)).expanduser()


def _host_port(key: str, v: object, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[::1]:port`` -> (host, port)."""
    s = _str(key, v).strip()
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^:\[\]\s]+)(?::(\d+))?", s)
    if not m:
        raise ConfigError(key, f"expected host:port, got {s!r}")
    host = m.group(1) or m.group(3)
    port_s = m.group(2) or m.group(4)
    port = int(port_s) if port_s else default_port
    if not 0 <= port <= 65535:
        raise ConfigError(key, f"port must be 0..65535, got {port}")
    return host, port


def _section(key: str, v: object, allowed: set[str]) -> JsonObject:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ConfigError(key, f"expected a mapping, got {_kind(v)}")
    for k in v:
        if k not in allowed:
            where = f"{key}.{k}" if key else str(k)
            raise ConfigError(where, f"unknown key (allowed here: {', '.join(sorted(allowed))})")
    return v


Field = Callable[[str, object], Any]


def _fields(prefix: str, raw: object, spec: dict[str, Field]) -> dict[str, Any]:
    """Validate the keys of one section with per-key converters."""
    section = _section(prefix, raw, set(spec))
    out = {}
    for k, conv in spec.items():
        if k in section and section[k] is not None:  # null = the default
            out[k] = conv(f"{prefix}.{k}" if prefix else k, section[k])
    return out


def _backoff(key: str, v: object, default: Backoff) -> Backoff:
    kw = _fields(key, v, {"initial": _num, "step": _num, "factor": lambda k, x: _num(k, x, 1.0),
                          "cap": _num})
    b = attrs.evolve(default, **kw)
    if b.cap < b.initial:
        raise ConfigError(f"{key}.cap", f"must be at least initial ({b.initial}), got {b.cap}")
    return b


def _build(data: dict[str, Any]) -> Config:
    top = _section("", data, {a.name for a in attrs.fields(Config)} - {"file", "file_secrets"})
    api = _fields("api", top.get("api"), {"url": _str, "version": _str})
    spec = catalog.spec_for(_source(top.get("source"), api.get("version")))
    kw: dict[str, Any] = _fields("", {k: v for k, v in top.items() if k in {
        "username", "password", "stream", "auth", "bearer_token", "data_dir", "pidfile"}}, {
        "username": _opt_str, "password": _opt_str, "bearer_token": _opt_str,
        "stream": lambda k, v: _choice(k, v, spec.streams, f" for source: {spec.name}"),
        "auth": lambda k, v: _choice(k, v, spec.auths, f" for source: {spec.name}"),
        "data_dir": _path, "pidfile": _path,
    })
    kw["source"] = spec.name
    kw.setdefault("stream", spec.default_stream)
    kw.setdefault("auth", spec.auths[0])
    if "url" in api:
        api["url"] = _url("api.url", api["url"], spec.schemes)
    elif spec.default_url is None:
        raise ConfigError("api.url", f"required for source: {spec.name} (the instance, https://mastodon.example)")
    else:
        api["url"] = spec.default_url
    kw["api"] = ApiConfig(**api)
    _credentials_from_url(kw)
    kw["x"] = _x_section(top.get("x"), kw["stream"] if spec.name == "x" else None)
    kw["jetstream"] = JetstreamConfig(**_fields("jetstream", top.get("jetstream"), {
        "compress": _bool, "rewind": lambda k, v: _num(k, v, 0.0)}))
    mastodon = _fields("mastodon", top.get("mastodon"), {
        "gap_fill": _bool, "streaming_url": lambda k, v: _url(k, v, ("http", "https", "ws", "wss")),
        "transport": lambda k, v: _choice(k, v, ("websocket", "sse")),
        "gap_max": lambda k, v: _int(k, v, 0)})
    kw["mastodon"] = MastodonConfig(**mastodon)
    kw["oauth"] = OAuthConfig(**_fields("oauth", top.get("oauth"), {
        "consumer_key": _opt_str, "consumer_secret": _opt_str, "token": _opt_str,
        "token_secret": _opt_str}))

    log = _section("logging", top.get("logging"), {"dest", "level", "event"})
    event = EventLogConfig(**_fields("logging.event", log.get("event"), {
        "dir": _path, "size": lambda k, v: _int(k, v, 1),
        "max_bytes": lambda k, v: _int(k, v, 1), "max_age": lambda k, v: _num(k, v, 1.0),
        "gzip": _bool}))
    kw["logging"] = LoggingConfig(event=event, **_fields("logging", {
        k: v for k, v in log.items() if k != "event"}, {
        "dest": _opt_str, "level": lambda k, v: _choice(k, v, LEVELS)}))

    kw["journal"] = JournalConfig(**_fields("journal", top.get("journal"), {
        "fsync": lambda k, v: _choice(k, v, FSYNC),
        "segment_bytes": lambda k, v: _int(k, v, 4096),
        "writer": lambda k, v: _choice(k, v, JOURNAL_WRITERS)}))

    redis = _fields("redis", top.get("redis"), {
        "host": lambda k, v: _host_port(k, v, 6379), "namespace": _namespace,
        "password": _opt_str, "db": _int, "timeout": lambda k, v: _num(k, v, 0.01),
        "batch_max": lambda k, v: _int(k, v, 1), "memory_max": lambda k, v: _int(k, v, 1 << 20)})
    if "host" in redis:
        redis["host"], redis["port"] = redis["host"]
    kw["redis"] = RedisConfig(**redis)

    web = _fields("web", top.get("web"), {
        "enabled": _bool, "host": lambda k, v: _host_port(k, v, 4711), "token": _opt_str,
        "max_body": lambda k, v: _int(k, v, 1), "allowed_hosts": _host_names,
        "allow_unauthenticated": _bool})
    if "host" in web:
        web["host"], web["port"] = web["host"]
    kw["web"] = WebConfig(**web)
    _check_web_bind(kw["web"])
    kw["health"] = HealthConfig(**_fields("health", top.get("health"), {
        "stuck_after": lambda k, v: _num(k, v, 1.0)}))

    console = top.get("console")
    if console is False:
        console = {"enabled": False}
    kw["console"] = ConsoleConfig(**_fields("console", console, {
        "enabled": _bool, "listen": _str, "authorized_keys": _path, "host_key": _path}))

    wader_raw = _section("wader", top.get("wader"), {a.name for a in attrs.fields(WaderConfig)})
    wader = _fields("wader", {k: v for k, v in wader_raw.items() if k != "backoff"}, {
        "delimited": _bool, "gzip": _bool, "stall_warnings": _bool,
        "stall_timeout": lambda k, v: _num(k, v, 0.1),
        "connect_timeout": lambda k, v: _num(k, v, 0.1),
        "max_message_bytes": lambda k, v: _int(k, v, 1024),
        "debounce": _num, "min_interval": _num, "healthy_after": _num,
        "overlap_timeout": lambda k, v: _num(k, v, 0.1),
        "dedupe_window": lambda k, v: _int(k, v, 1)})
    wader.setdefault("stall_timeout", spec.stall_timeout)
    b = _section("wader.backoff", wader_raw.get("backoff"), {"network", "http", "rate_limit"})
    d = BackoffConfig()
    wader["backoff"] = BackoffConfig(
        network=_backoff("wader.backoff.network", b.get("network"), d.network),
        http=_backoff("wader.backoff.http", b.get("http"), d.http),
        rate_limit=_backoff("wader.backoff.rate_limit", b.get("rate_limit"), d.rate_limit))
    kw["wader"] = WaderConfig(**wader)
    return Config(**kw)


def _host_names(key: str, v: object) -> tuple[str, ...]:
    """``web.allowed_hosts``: host names or IPs without a port (``*`` = any), lowercased."""
    items = v.split(",") if isinstance(v, str) else v
    if not isinstance(items, list):
        raise ConfigError(key, f"expected a list of host names, got {_kind(v)}")
    out = []
    for item in items:
        name = _str(key, item).strip().lower()
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1]
        if name != "*" and not (re.fullmatch(r"[a-z0-9_.-]+", name) or _is_ipv6(name)):
            raise ConfigError(key, f"expected a host name or IP without a port, got {item!r}")
        out.append(name.rstrip(".") if name != "*" else name)
    return tuple(out)


def _is_ipv6(name: str) -> bool:
    import ipaddress

    try:
        ipaddress.IPv6Address(name)
    except ValueError:
        return False
    return True


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP literal (127.0.0.0/8, ::1, ::ffff:127.x)."""
    import ipaddress

    name = host.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped is not None and mapped.is_loopback)


def _check_web_bind(web: WebConfig) -> None:
    """Without a token, only loopback: any web page could drive a reachable API."""
    if web.enabled and not web.token and not web.allow_unauthenticated \
            and not is_loopback_host(web.host):
        raise ConfigError("web.token", f"required when web.host listens beyond loopback "
                          f"({web.host}); set web.token (or FLAMINGO_WEB_TOKEN), or "
                          f"web.allow_unauthenticated: true if something else guards the port")

def redact_url(url: str) -> str:
    """``https://user:pass@host/x`` -> ``https://***@host/x`` (anything printed goes through here)."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@", r"\1***@", url)


def _url(key: str, v: object, schemes: tuple[str, ...] = ("http", "https")) -> str:
    s = _str(key, v).rstrip("/")
    m = re.fullmatch(r"([A-Za-z][A-Za-z0-9+.-]*)://[^/\s]+(/\S*)?", s)
    if not m or m.group(1).lower() not in schemes:
        wanted = " or ".join(f"{x}://" for x in schemes)
        raise ConfigError(key, f"expected a {wanted} URL, got {redact_url(s)!r}")
    return s


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
    source = _choice("source", raw, catalog.SOURCE_NAMES)
    if implied is not None and implied != source:
        raise ConfigError("source", f"source: {source} contradicts api.version: {version} "
                          f"(which means source: {implied}); keep one of the two keys")
    return str(source)


def _names(key: str, v: object) -> tuple[str, ...]:
    """A list of field names (``[a, b]`` or ``"a,b"``)."""
    items = v.split(",") if isinstance(v, str) else v
    if not isinstance(items, list):
        raise ConfigError(key, f"expected a list of names, got {_kind(v)}")
    out = tuple(_str(key, i).strip() for i in items)
    for name in out:
        if not re.fullmatch(r"[A-Za-z0-9_.]+", name):
            raise ConfigError(key, f"not a field name: {name!r}")
    return out


#: the partitions each X stream takes (absent: none allowed)
X_PARTITIONS = {"sample10": (1, 2), "firehose": (1, 20), "tweets-compliance": (1, 4),
                "users-compliance": (1, 4)}


def _x_section(raw: object, stream: str | None) -> XConfig:
    fields = {f: _names for f in ("tweet_fields", "expansions", "user_fields", "media_fields",
                                  "poll_fields", "place_fields")}
    x = _fields("x", raw, {"partition": lambda k, v: _int(k, v, 1),
                           "backfill_minutes": lambda k, v: _int(k, v, 0),
                           "tier": lambda k, v: _choice(k, v, ("pay-per-use", "enterprise")),
                           **fields})
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


def _credentials_from_url(kw: dict[str, Any]) -> None:
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


def _namespace(key: str, v: object) -> str:
    s = _str(key, v)
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", s):
        raise ConfigError(key, f"must match [A-Za-z0-9_.:-]{{1,64}}, got {s!r}")
    return s


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


def _to_plain(value: Any) -> Any:
    if attrs.has(type(value)):
        return {a.name: _to_plain(getattr(value, a.name)) for a in attrs.fields(type(value))}
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
