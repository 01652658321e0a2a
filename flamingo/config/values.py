"""Config values: one converter per kind of value, each refusing a bad one in one line.

``ConfigError(key, message)`` is what every mistake becomes: the key, then
what was wrong, never a secret's value (``kind_of`` hides it). The converters
take the dotted key (for the message) and the raw YAML value, and return
the typed value; ``fields`` applies a table of them to one section.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from flamingo._types import JsonMapping, JsonObject

__all__ = ["ConfigError", "SECRET_KEYS", "LEVELS", "Field", "kind_of", "expand_env", "expand_env_mapping",
           "set_dotted", "text",
           "optional_text", "integer", "number", "boolean", "choice", "path", "host_port", "section",
           "fields", "sentinels", "host_names", "is_loopback_host", "redact_url", "url", "names", "namespace"]


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

LEVELS = ("DEBUG", "INFO", "WARN", "ERROR", "FATAL")


def kind_of(value: object, key: str = "") -> str:
    """The value for an error line: a secret's is hidden, a long one cut."""
    if value is None:
        return "nothing"
    if key in SECRET_KEYS:
        return f"{type(value).__name__} (value hidden)"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def expand_env(value: object, env: Mapping[str, str], key: str) -> object:
    """``${NAME}`` replaced by the variable's value in every string of ``value`` (``$${`` is a literal ``${``)."""
    if isinstance(value, dict):
        return expand_env_mapping(value, env, key)
    if isinstance(value, list):
        return [expand_env(v, env, key) for v in value]
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


def expand_env_mapping(value: JsonMapping, env: Mapping[str, str], key: str) -> JsonObject:
    """:func:`expand_env` over a whole mapping (a config file, a section)."""
    return {k: expand_env(v, env, f"{key}.{k}" if key else str(k)) for k, v in value.items()}


def set_dotted(data: JsonObject, dotted: str, value: str) -> None:
    *parents, last = dotted.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            return  # a type error that _build will report
    node[last] = value


def text(key: str, v: object) -> str:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise ConfigError(key, f"expected a string, got {kind_of(v, key)}")
    return str(v)


def optional_text(key: str, v: object) -> str | None:
    return None if v is None else text(key, v)


def integer(key: str, v: object, minimum: int | None = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v)
        else:
            raise ConfigError(key, f"expected an integer, got {kind_of(v)}")
    if minimum is not None and v < minimum:
        raise ConfigError(key, f"must be at least {minimum}, got {v}")
    return v


def number(key: str, v: object, minimum: float = 0.0) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(key, f"expected a number, got {kind_of(v)}")
    if v < minimum:
        raise ConfigError(key, f"must be at least {minimum}, got {v}")
    return float(v)


def boolean(key: str, v: object) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(key, f"expected true or false, got {kind_of(v)}")
    return v


def choice(key: str, v: object, choices: tuple[str, ...], where: str = "") -> str:
    s = text(key, v)
    norm = s.upper() if choices is LEVELS else s.lower()
    if norm == "WARNING" and choices is LEVELS:
        norm = "WARN"
    if norm not in choices:
        raise ConfigError(key, f"must be one of {', '.join(choices)}{where}, got {s!r}")
    return norm


def path(key: str, v: object) -> Path:
    return Path(text(key, v)).expanduser()


def host_port(key: str, v: object, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[::1]:port`` -> (host, port)."""
    s = text(key, v).strip()
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^:\[\]\s]+)(?::(\d+))?", s)
    if not m:
        raise ConfigError(key, f"expected host:port, got {s!r}")
    host = m.group(1) or m.group(3)
    port_s = m.group(2) or m.group(4)
    port = int(port_s) if port_s else default_port
    if not 0 <= port <= 65535:
        raise ConfigError(key, f"port must be 0..65535, got {port}")
    return host, port


def section(key: str, v: object, allowed: set[str]) -> JsonObject:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ConfigError(key, f"expected a mapping, got {kind_of(v)}")
    for k in v:
        if k not in allowed:
            where = f"{key}.{k}" if key else str(k)
            raise ConfigError(where, f"unknown key (allowed here: {', '.join(sorted(allowed))})")
    return v


#: A key's converter: (dotted key, raw value) -> the validated value, or ConfigError.
Field = Callable[[str, object], object]


def fields(prefix: str, raw: object, spec: dict[str, Field]) -> JsonObject:
    """Validate the keys of one section with per-key converters: keyword arguments for its attrs class."""
    given = section(prefix, raw, set(spec))
    out: JsonObject = {}
    for k, conv in spec.items():
        if k in given and given[k] is not None:  # null = the default
            out[k] = conv(f"{prefix}.{k}" if prefix else k, given[k])
    return out


def sentinels(key: str, v: object) -> tuple[tuple[str, int], ...]:
    """``redis.sentinels``: a list of ``host:port`` (port 26379 when left out)."""
    if isinstance(v, str):
        v = [p for p in (x.strip() for x in v.split(",")) if p]
    if not isinstance(v, list):
        raise ConfigError(key, f"expected a list of host:port, got {kind_of(v)}")
    return tuple(host_port(f"{key}[{i}]", x, 26379) for i, x in enumerate(v))


def host_names(key: str, v: object) -> tuple[str, ...]:
    """``web.allowed_hosts``: host names or IPs without a port (``*`` = any), lowercased."""
    items = v.split(",") if isinstance(v, str) else v
    if not isinstance(items, list):
        raise ConfigError(key, f"expected a list of host names, got {kind_of(v)}")
    out = []
    for item in items:
        name = text(key, item).strip().lower()
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1]
        if name != "*" and not (re.fullmatch(r"[a-z0-9_.-]+", name) or _is_ipv6(name)):
            raise ConfigError(key, f"expected a host name or IP without a port, got {item!r}")
        out.append(name.rstrip(".") if name != "*" else name)
    return tuple(out)


def _is_ipv6(name: str) -> bool:
    try:
        ipaddress.IPv6Address(name)
    except ValueError:
        return False
    return True


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP literal (127.0.0.0/8, ::1, ::ffff:127.x)."""
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


def redact_url(url: str) -> str:
    """``https://user:pass@host/x`` -> ``https://***@host/x`` (anything printed goes through here)."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@", r"\1***@", url)


def url(key: str, v: object, schemes: tuple[str, ...] = ("http", "https")) -> str:
    s = text(key, v).rstrip("/")
    m = re.fullmatch(r"([A-Za-z][A-Za-z0-9+.-]*)://[^/\s]+(/\S*)?", s)
    if not m or m.group(1).lower() not in schemes:
        wanted = " or ".join(f"{x}://" for x in schemes)
        raise ConfigError(key, f"expected a {wanted} URL, got {redact_url(s)!r}")
    return s


def names(key: str, v: object) -> tuple[str, ...]:
    """A list of field names (``[a, b]`` or ``"a,b"``)."""
    items = v.split(",") if isinstance(v, str) else v
    if not isinstance(items, list):
        raise ConfigError(key, f"expected a list of names, got {kind_of(v)}")
    out = tuple(text(key, i).strip() for i in items)
    for name in out:
        if not re.fullmatch(r"[A-Za-z0-9_.]+", name):
            raise ConfigError(key, f"not a field name: {name!r}")
    return out


def namespace(key: str, v: object) -> str:
    s = text(key, v)
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", s):
        raise ConfigError(key, f"must match [A-Za-z0-9_.:-]{{1,64}}, got {s!r}")
    return s


