"""The CLI's connections: the daemon's REST API over urllib, Redis over one socket.

Blocking and dependency-free on purpose: the command starts fast and needs
nothing beyond Python.  Errors are :class:`CliError` subclasses that carry
the exit code ``main`` returns.
"""

from __future__ import annotations

import argparse
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, TypeVar

import attrs

from flamingo._types import JsonObject, RespReply

if TYPE_CHECKING:  # the config package is imported only when a file is read
    from flamingo.config import Config

__all__ = ["OK", "REFUSED", "USAGE", "UNREACHABLE", "DEFAULT_URL", "CliError", "ServerSaidNo",
           "Unreachable", "UsageError", "load_config", "resolve_url", "resolve_token", "Client",
           "RespClient", "Reply", "items", "blob", "quote", "expect"]

OK, REFUSED, USAGE, UNREACHABLE = 0, 1, 2, 3
DEFAULT_URL = "http://127.0.0.1:4711"

_T = TypeVar("_T")

#: A RESP reply: a bulk or simple string, an integer, nil, or an array of replies.
Reply = RespReply


# --- errors ---------------------------------------------------------------------


class CliError(Exception):
    """Ends the command with ``code`` after printing ``str(self)`` to stderr."""

    code = REFUSED


@attrs.define(eq=False)
class ServerSaidNo(CliError):
    status: int
    error: str
    detail: object = None
    body: object = None
    code = REFUSED

    def __str__(self) -> str:
        detail = ""
        if self.detail not in (None, "", {}, []):
            detail = " (" + (self.detail if isinstance(self.detail, str)
                             else json.dumps(self.detail, sort_keys=True)) + ")"
        return f"server said no: {self.status} {self.error}{detail}"


@attrs.define(eq=False)
class Unreachable(CliError):
    address: str
    reason: str
    what: str = "the daemon"
    code = UNREACHABLE

    def __str__(self) -> str:
        return f"cannot reach {self.what} at {self.address}: {self.reason}"


class UsageError(CliError):
    code = USAGE


# --- configuration ----------------------------------------------------------------


def load_config(path: str | None) -> Config | None:
    """The config from ``-c`` (or ./flamingo.yml, ~/flamingo.yml); None when there is none.

    A client needs only web/redis/console: when the whole file does not
    validate here (say its secrets come from variables only the daemon has),
    those sections are read on their own.
    """
    from flamingo import config as cfg

    try:
        found = cfg.find_config_file(path)
    except cfg.ConfigError as e:
        if path:
            raise UsageError(str(e)) from None
        return None
    try:
        return cfg.load(found, check_dirs=False)
    except cfg.ConfigError as first:
        import yaml

        try:
            data = yaml.safe_load(found.read_text()) or {}
            part = {k: data[k] for k in ("web", "redis", "console", "stream", "data_dir")
                    if isinstance(data, dict) and k in data}
            part.update(username="-", password="-", auth="basic")
            return cfg.from_mapping(part)
        except (OSError, ValueError, yaml.YAMLError, cfg.ConfigError):
            raise UsageError(f"{found}: {first}") from None


def _http_host(host: str) -> str:
    if host in ("0.0.0.0", "", "*"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def resolve_url(args: argparse.Namespace, config: Config | None, env: dict[str, str]) -> str:
    if getattr(args, "url", None):
        return str(args.url).rstrip("/")
    if env.get("FLAMINGO_URL"):
        return env["FLAMINGO_URL"].rstrip("/")
    if config is not None:
        return f"http://{_http_host(config.web.host)}:{config.web.port}"
    return DEFAULT_URL


def resolve_token(config: Config | None, env: dict[str, str]) -> str | None:
    if env.get("FLAMINGO_WEB_TOKEN"):
        return env["FLAMINGO_WEB_TOKEN"]
    return config.web.token if config is not None else None


# --- HTTP -----------------------------------------------------------------------------


@attrs.define
class Client:
    """A small JSON client for the daemon's REST API."""

    url: str
    token: str | None = attrs.field(default=None, repr=False)
    timeout: float = 10.0

    def request(self, method: str, path: str, body: object = None) -> object:
        """The decoded JSON reply (or its text, when it is not JSON)."""
        data = None
        headers = {"Accept": "application/json", "User-Agent": "flamingo-cli"}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return _decode(resp.read())
        except urllib.error.HTTPError as e:
            raw = e.read()
            parsed = _decode(raw)
            if isinstance(parsed, dict) and "error" in parsed:
                raise ServerSaidNo(e.code, str(parsed["error"]), parsed.get("detail"),
                                   parsed) from None
            raise ServerSaidNo(e.code, e.reason or "error",
                               raw.decode("utf-8", "replace")[:200] or None) from None
        except urllib.error.URLError as e:
            reason = e.reason
            raise Unreachable(self.url, getattr(reason, "strerror", None) or str(reason)) from None
        except (TimeoutError, OSError) as e:
            raise Unreachable(self.url, getattr(e, "strerror", None) or str(e) or "timed out") from None

    def get(self, path: str) -> object:
        return self.request("GET", path)

    def document(self, method: str, path: str, body: object = None) -> JsonObject:
        """A reply that is a JSON object (every route but the lists and a param's values)."""
        return expect(self.request(method, path, body), dict, f"{method} {path}")

    def rows(self, method: str, path: str, body: object = None) -> list[JsonObject]:
        """A reply that is a JSON list of objects (subscriptions, rules)."""
        rows = expect(self.request(method, path, body), list, f"{method} {path}")
        return [expect(r, dict, f"{method} {path}") for r in rows]


def expect(value: object, kind: type[_T], what: str) -> _T:
    """``value`` as the JSON ``kind`` a route answers with; a CliError when it is not."""
    if not isinstance(value, kind):
        raise CliError(f"{what}: expected a JSON {kind.__name__}, got {type(value).__name__}")
    return value


def _decode(raw: bytes) -> object:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", "replace")


def items(reply: Reply) -> list[Reply]:
    """An array reply's elements (nil, or anything but an array: none)."""
    return reply if isinstance(reply, list) else []


def blob(reply: Reply) -> bytes:
    """A string reply's bytes (an integer as its digits, nil as empty)."""
    if isinstance(reply, bytes):
        return reply
    return b"" if reply is None or isinstance(reply, list) else str(reply).encode()


def quote(name: str) -> str:
    """A name as one path segment."""
    return urllib.parse.quote(name, safe="")


# --- Redis -----------------------------------------------------------------------------


class RespClient:
    """Blocking RESP over one socket: enough for BLPOP, LRANGE, HGET, AUTH, SELECT."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.address = f"{host}:{port}"
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise Unreachable(self.address, e.strerror or str(e), what="Redis") from None
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def command(self, *args: str | bytes | int | float, timeout: float | None = None) -> Reply:
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        try:
            if timeout is not None:
                self.sock.settimeout(timeout)
            self.sock.sendall(b"".join(parts))
            return self._reply()
        except (OSError, EOFError) as e:
            raise Unreachable(self.address, getattr(e, "strerror", None) or str(e) or "closed",
                              what="Redis") from None

    def _reply(self) -> Reply:
        line = self.file.readline()
        if not line:
            raise EOFError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise ServerSaidNo(0, "redis: " + rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.file.read(n + 2)[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise EOFError(f"unexpected reply {line[:40]!r}")
