"""The ``flamingo`` command: REST client, queue tail, console and emulator.

Built on argparse: it is in the standard library (no dependency to install
or keep current), its sub-parsers give each subcommand its own ``--help``
and usage errors, and nothing here needs more than that.  HTTP goes through
``urllib`` and ``tail`` speaks RESP over a plain socket, for the same
reason: the command starts fast and needs nothing beyond Python.

Exit codes: 0 ok, 1 the server said no (its error is printed), 2 usage,
3 the daemon (or Redis, for ``tail``) cannot be reached (the address is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import attrs

__all__ = ["main", "Client", "ServerSaidNo", "Unreachable", "RespClient", "console_address"]

OK, REFUSED, USAGE, UNREACHABLE = 0, 1, 2, 3
DEFAULT_URL = "http://127.0.0.1:4711"


# --- errors ---------------------------------------------------------------------


class CliError(Exception):
    """Ends the command with ``code`` after printing ``str(self)`` to stderr."""

    code = REFUSED


@attrs.define(eq=False)
class ServerSaidNo(CliError):
    status: int
    error: str
    detail: Any = None
    body: Any = None
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


def load_config(path: str | None) -> Any:
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
        try:
            import yaml

            data = yaml.safe_load(found.read_text()) or {}
            part = {k: data[k] for k in ("web", "redis", "console", "stream", "data_dir")
                    if isinstance(data, dict) and k in data}
            part.update(username="-", password="-", auth="basic")
            return cfg.from_mapping(part)
        except Exception:
            raise UsageError(f"{found}: {first}") from None


def _http_host(host: str) -> str:
    if host in ("0.0.0.0", "", "*"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def resolve_url(args: argparse.Namespace, config: Any, env: dict[str, str]) -> str:
    if getattr(args, "url", None):
        return args.url.rstrip("/")
    if env.get("FLAMINGO_URL"):
        return env["FLAMINGO_URL"].rstrip("/")
    if config is not None:
        return f"http://{_http_host(config.web.host)}:{config.web.port}"
    return DEFAULT_URL


def resolve_token(config: Any, env: dict[str, str]) -> str | None:
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

    def request(self, method: str, path: str, body: Any = None) -> Any:
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
        except (OSError, socket.timeout) as e:
            raise Unreachable(self.url, getattr(e, "strerror", None) or str(e) or "timed out") from None

    def get(self, path: str) -> Any:
        return self.request("GET", path)


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", "replace")


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


# --- output ---------------------------------------------------------------------------


def _when(t: Any) -> str:
    if not isinstance(t, (int, float)) or isinstance(t, bool):
        return "-" if t is None else str(t)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, (list, tuple)):
        text = ",".join(str(x) for x in v) if v else "-"
    else:
        text = str(v)
    # One line per row whatever the values hold.
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[c.upper() for c in columns]] + [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)


def flatten(doc: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(doc, dict) and doc:
        out: list[tuple[str, Any]] = []
        for k, v in doc.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return [(prefix, doc)]


def key_values(pairs: Iterable[tuple[str, Any]]) -> str:
    pairs = list(pairs)
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k.ljust(width)}  {_cell(v) if not isinstance(v, dict) else '-'}"
                     for k, v in pairs)


def show_params(name: str, params: dict[str, list[str]], resource: str | None = None) -> str:
    head = f"{name}" + (f" ({resource})" if resource else "")
    if not params:
        return head + "\n  (no params)"
    width = max(len(k) for k in params)
    return head + "\n" + "\n".join(f"  {k.ljust(width)}  {', '.join(v)}"
                                   for k, v in sorted(params.items()))


def show_status(doc: dict[str, Any]) -> str:
    wader = doc.get("wader") or {}
    lines = [("state", wader.get("name") or doc.get("state")),
             ("request", doc.get("request_line") or wader.get("request_line")),
             ("connected since", _when(doc.get("connected_since") or wader.get("connected_since")))]
    if wader.get("cause"):
        lines.append(("cause", wader.get("cause")))
    if wader.get("attempt"):
        lines.append(("attempt", wader.get("attempt")))
    if wader.get("next_attempt_at"):
        lines.append(("next attempt", _when(wader.get("next_attempt_at"))))
    if wader.get("message"):
        lines.append(("message", wader.get("message")))
    stream = doc.get("stream") or {}
    if stream:
        params = stream.get("params") or {}
        lines.append(("stream", stream.get("name")))
        for k, v in sorted(params.items()):
            lines.append((f"  {k}", ", ".join(v)))
    lines.append(("journal backlog", doc.get("journal_backlog")))
    redis = doc.get("redis") or {}
    lines.append(("redis", "reachable" if redis.get("available") else "UNREACHABLE"))
    return key_values(lines)


SUB_COLUMNS = ("name", "format", "types", "filter", "max_length", "queue")


# --- commands ---------------------------------------------------------------------------


@attrs.define
class Context:
    args: argparse.Namespace
    config: Any
    env: dict[str, str]
    out: Any = attrs.field(factory=lambda: sys.stdout)
    err: Any = attrs.field(factory=lambda: sys.stderr)

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    def client(self) -> Client:
        return Client(resolve_url(self.args, self.config, self.env),
                      resolve_token(self.config, self.env),
                      timeout=float(getattr(self.args, "timeout", None) or 10.0))

    def emit(self, doc: Any, human: Callable[[Any], str]) -> int:
        if self.json:
            self.out.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        else:
            self.out.write(human(doc).rstrip("\n") + "\n")
        return OK

    def default_stream(self) -> str:
        return self.config.stream if self.config is not None else "filter"


def cmd_status(ctx: Context) -> int:
    if getattr(ctx.args, "watch", False):  # issue 14: a plain refresh
        from flamingo.top import watch

        client = ctx.client()
        try:
            return watch(lambda: client.get("/status.json"), show_status, ctx.out,
                         ctx.args.interval)
        except KeyboardInterrupt:
            return OK
    return ctx.emit(ctx.client().get("/status.json"), show_status)


def cmd_top(ctx: Context) -> int:
    """Issue 14: the live terminal view (flamingo/top.py)."""
    from flamingo.top import run_top

    client = ctx.client()
    client.get("/dashboard/data.json")  # a refusal (401) or no daemon at all: say so and exit
    try:
        return run_top(lambda: client.get("/dashboard/data.json"), ctx.args.interval)
    except KeyboardInterrupt:
        return OK


def cmd_meta(ctx: Context) -> int:
    return ctx.emit(ctx.client().get("/meta.json"), lambda d: key_values(flatten(d)))


def cmd_stream(ctx: Context) -> int:
    a = ctx.args
    name = a.name or ctx.default_stream()
    client = ctx.client()
    base = f"/streams/{_q(name)}"
    if a.action is None:
        doc = client.get(base + ".json")
        return ctx.emit(doc, lambda d: show_params(d.get("name", name), d.get("params") or {},
                                                   d.get("resource")))
    if a.param is None:
        raise UsageError(f"stream {name} {a.action}: which param? e.g. "
                         f"`flamingo stream {name} {a.action} track ...`")
    path = f"{base}/{_q(a.param)}.json"
    values = list(a.values)
    if a.action in ("set", "add", "remove") and not values:
        raise UsageError(f"stream {name} {a.action} {a.param}: give at least one value")
    if a.action == "clear" and values:
        raise UsageError("clear takes no values (use remove)")
    if a.action == "set":
        result = client.request("PUT", path, {"values": values})
    elif a.action == "add":
        result = client.request("POST", path, {"add": values})
    elif a.action == "remove":
        result = client.request("POST", path, {"remove": values})
    else:
        result = client.request("DELETE", path)
    doc = {"stream": name, "param": a.param, "values": result}
    return ctx.emit(doc, lambda d: f"{name} {a.param}: " + (", ".join(result) or "(none)"))


def cmd_subscriptions(ctx: Context) -> int:
    subs = ctx.client().get("/subscriptions.json")
    return ctx.emit(subs, lambda s: table(s, SUB_COLUMNS) if s else "(no subscriptions)")


def _csv(values: Iterable[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def cmd_subscribe(ctx: Context) -> int:
    a = ctx.args
    body: dict[str, Any] = {"name": a.name}
    if a.format is not None:
        body["format"] = a.format
    if a.types is not None:
        body["types"] = _csv(a.types)
    if a.filter is not None:
        body["filter"] = list(a.filter)
    if a.max_length is not None:
        body["max_length"] = a.max_length
    sub = ctx.client().request("POST", "/subscriptions.json", body)
    return ctx.emit(sub, lambda s: table([s], SUB_COLUMNS))


def cmd_unsubscribe(ctx: Context) -> int:
    a = ctx.args
    path = f"/subscriptions/{_q(a.name)}.json" + ("?drop_queue=true" if a.drop_queue else "")
    doc = ctx.client().request("DELETE", path)

    def human(d: Any) -> str:
        queue = d.get("queue") if isinstance(d, dict) else None
        if a.drop_queue:
            return f"unsubscribed {a.name}; queue {queue} dropped"
        return f"unsubscribed {a.name}; queue {queue} left for its consumers"
    return ctx.emit(doc, human)


def cmd_restart(ctx: Context) -> int:
    doc = ctx.client().request("POST", "/wader/restart.json")
    return ctx.emit(doc, lambda d: "wader restarting (state: "
                    + str(((d or {}).get("wader") or {}).get("name")) + ")")


# --- tail: a tiny blocking Redis client ------------------------------------------------


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

    def command(self, *args: Any, timeout: float | None = None) -> Any:
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

    def _reply(self) -> Any:
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


def _redis_address(ctx: Context) -> tuple[str, int]:
    from flamingo.config import ConfigError, _host_port

    if ctx.args.redis:
        try:
            return _host_port("--redis", ctx.args.redis, 6379)
        except ConfigError as e:
            raise UsageError(str(e)) from None
    if ctx.config is not None:
        return ctx.config.redis.host, ctx.config.redis.port
    return "127.0.0.1", 6379


def _queue_key(ctx: Context, redis: RespClient, namespace: str) -> str:
    """Where the subscription's events are: asked of the daemon, else of Redis."""
    a = ctx.args
    if a.queue:
        return a.queue
    if not a.redis:
        try:
            doc = ctx.client().get(f"/subscriptions/{_q(a.name)}.json")
            if isinstance(doc, dict) and doc.get("queue"):
                return str(doc["queue"])
        except Unreachable:
            pass  # no daemon running: Redis knows the subscription too
    fmt = redis.command("HGET", f"{namespace}:subscription:{a.name}", "format")
    if fmt is None:
        if not redis.command("SISMEMBER", f"{namespace}:subscriptions", a.name):
            raise ServerSaidNo(404, f"no subscription {a.name!r} in namespace {namespace!r}")
        fmt = b"raw"
    if fmt == b"resque":
        return f"resque:queue:{a.name}"
    return f"{namespace}:queue:{a.name}"


def cmd_tail(ctx: Context) -> int:
    a = ctx.args
    host, port = _redis_address(ctx)
    namespace = a.namespace or (ctx.config.redis.namespace if ctx.config is not None else "flamingo")
    redis = RespClient(host, port)
    try:
        rc = ctx.config.redis if ctx.config is not None else None
        password = ctx.env.get("FLAMINGO_REDIS_PASSWORD") or (rc.password if rc else None)
        if password:
            redis.command("AUTH", password)
        if rc is not None and rc.db:
            redis.command("SELECT", rc.db)
        key = _queue_key(ctx, redis, namespace)
        out = ctx.out.buffer if hasattr(ctx.out, "buffer") else None

        def show(value: bytes) -> None:
            if out is not None:
                out.write(value + b"\n")
                out.flush()
            else:
                ctx.out.write(value.decode("utf-8", "replace") + "\n")
                ctx.out.flush()

        if a.peek:
            count = a.n if a.n is not None else 10
            for value in redis.command("LRANGE", key, 0, count - 1 if count > 0 else -1) or []:
                show(value)
            return OK
        seen = 0
        idle_since = time.monotonic()
        while a.n is None or seen < a.n:
            wait = 1.0
            if a.idle is not None:
                left = a.idle - (time.monotonic() - idle_since)
                if left <= 0:
                    break
                wait = max(0.1, min(wait, left))
            reply = redis.command("BLPOP", key, f"{wait:.1f}", timeout=wait + 10)
            if reply is None:
                continue
            show(reply[1])
            seen += 1
            idle_since = time.monotonic()
        return OK
    except KeyboardInterrupt:
        return OK
    finally:
        redis.close()


# --- console ------------------------------------------------------------------------------


def console_address(listen: str) -> tuple[str, int]:
    """(host, port) to connect to, from a strports description like ``tcp:4712:interface=127.0.0.1``."""
    parts = listen.split(":")
    kind = parts[0].lower() if parts else ""
    if kind not in ("tcp", "tcp6") or len(parts) < 2:
        raise UsageError(f"console.listen {listen!r}: only tcp: addresses can be opened from here")
    host, port = "127.0.0.1", None
    for p in parts[1:]:
        if "=" in p:
            k, v = p.split("=", 1)
            if k == "port":
                port = int(v)
            elif k == "interface":
                host = v.replace("\\", "")
        elif port is None:
            port = int(p)
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1" if kind == "tcp" else "::1"
    if port is None:
        raise UsageError(f"console.listen {listen!r}: no port")
    return host, port


def cmd_console(ctx: Context) -> int:
    a = ctx.args
    listen = (ctx.config.console.listen if ctx.config is not None
              else "tcp:4712:interface=127.0.0.1")
    if ctx.config is not None and not ctx.config.console.enabled:
        raise UsageError("the console is disabled in this config (console.enabled: false)")
    host, port = console_address(listen)
    ssh = a.ssh or shutil.which("ssh")
    if not ssh:
        raise UsageError("no `ssh` client found: install OpenSSH or pass --ssh PATH")
    extra = list(a.ssh_args)
    if extra and extra[0] == "--":
        extra = extra[1:]
    # ssh's -t flags toggle (a third -t undoes -tt): add ours only if none given.
    tty = [] if any(x.startswith("-t") and set(x[1:]) == {"t"} for x in extra) else ["-t"]
    argv = [ssh, *tty, "-p", str(port)]
    if a.identity:
        argv += ["-i", a.identity]
    argv += extra
    argv.append(f"{a.user}@{host}" if a.user else host)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        raise Unreachable(f"{host}:{port}", f"cannot run {argv[0]}: {e.strerror}",
                          what="the console") from None
    return OK  # not reached


def cmd_emulator(argv: Sequence[str]) -> int:
    try:
        from flamingo.emulator.cli import main as emulator_main
    except ImportError as e:
        print(f"flamingo: the emulator is not available here: {e}", file=sys.stderr)
        return USAGE
    return emulator_main(list(argv))


# --- the parser -------------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    """Options every subcommand takes, before or after its name."""
    p = argparse.ArgumentParser(add_help=False)
    s = argparse.SUPPRESS
    p.add_argument("-c", "--config", metavar="FILE", default=s,
                   help="flamingo.yml to read web.host/port/token, redis and console from "
                        "(default ./flamingo.yml, then ~/flamingo.yml)")
    p.add_argument("--url", default=s, help="the daemon's REST address, e.g. http://127.0.0.1:4711 "
                                            "(or FLAMINGO_URL; the token comes from "
                                            "FLAMINGO_WEB_TOKEN or web.token)")
    p.add_argument("--json", action="store_true", default=s, help="print JSON for scripts")
    p.add_argument("--timeout", type=float, default=s, metavar="SECONDS",
                   help="HTTP timeout (default 10)")
    return p


def _count(text: str) -> int:
    """``-n``: a whole number of events, at least 1 (0 or less would print nothing, silently)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="flamingo", parents=[common],
        description="Control a running Flamingo daemon, read its queues, open its console.",
        epilog="exit codes: 0 ok, 1 the server said no, 2 usage, 3 cannot reach the daemon. "
               "`flamingo path/to/flamingo.yml` opens the console, as the original did.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_: str, func: Callable[[Context], int], **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, parents=[common], **kw)
        p.set_defaults(func=func)
        return p

    p = add("status", "the wader's connection state, journal backlog, Redis reachability",
            cmd_status)
    p.add_argument("--watch", action="store_true", help="show it again every second, until Ctrl-C")
    p.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                   help="refresh interval for --watch (default 1)")
    p = add("top", "a live view: state, rates with a sparkline, backlog, subscriptions (q quits)",
            cmd_top)
    p.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                   help="refresh interval (default 1)")
    add("meta", "stats and process info (what /meta.json shows)", cmd_meta)

    p = add("stream", "show a stream's params, or set/add/remove/clear one",
            cmd_stream, epilog="examples: flamingo stream filter; "
                               "flamingo stream filter set track @cheaptweet austin '#etsy'; "
                               "flamingo stream filter add track x; "
                               "flamingo stream filter remove track x; "
                               "flamingo stream filter clear track")
    p.add_argument("name", nargs="?", help="filter, sample or firehose (default: the config's stream)")
    p.add_argument("action", nargs="?", choices=("set", "add", "remove", "clear"))
    p.add_argument("param", nargs="?", help="track, follow, locations, ...")
    p.add_argument("values", nargs="*", help="values (one argument each; phrases in quotes)")
    # Locations are negative numbers, often comma-joined (-122.75,36.8,-121.75,37.8): values,
    # not options. argparse only knows plain negative numbers; widen its (private) test.
    p._negative_number_matcher = re.compile(r"^-\.?\d[\d.,-]*$")

    add("subscriptions", "list subscriptions and their queues", cmd_subscriptions)

    p = add("subscribe", "create (or replace) a subscription", cmd_subscribe)
    p.add_argument("name")
    p.add_argument("--format", choices=("raw", "envelope", "resque"))
    p.add_argument("--types", action="append", metavar="TYPE[,TYPE]",
                   help="event types to deliver, e.g. tweet,delete (default all)")
    p.add_argument("--filter", nargs="+", metavar="TERM",
                   help="deliver only events matching any of these terms")
    p.add_argument("--max-length", type=int, metavar="N", help="keep at most N events queued")

    p = add("unsubscribe", "delete a subscription (its queue is left for consumers)", cmd_unsubscribe)
    p.add_argument("name")
    p.add_argument("--drop-queue", action="store_true", help="delete the queue as well")

    add("restart", "restart the wader gracefully (what USR1 does)", cmd_restart)

    p = add("tail", "print a subscription's queued events one a line, consuming them (BLPOP)",
            cmd_tail)
    p.add_argument("name", help="the subscription")
    p.add_argument("-n", type=_count, metavar="N", help="stop after N events (--peek: show N, default 10)")
    p.add_argument("--peek", action="store_true", help="read without removing (LRANGE)")
    p.add_argument("--idle", type=float, metavar="SECONDS",
                   help="stop after this long without an event")
    p.add_argument("--redis", metavar="HOST:PORT", help="Redis address (default from the config)")
    p.add_argument("--namespace", help="key namespace (default from the config, else flamingo)")
    p.add_argument("--queue", metavar="KEY", help="read this Redis list instead")

    p = add("console", "open the live console in the daemon (runs ssh)", cmd_console)
    p.add_argument("--user", "-l", help="user name to send (any; the key decides)")
    p.add_argument("-i", dest="identity", metavar="KEY", help="private key file for ssh")
    p.add_argument("--ssh", metavar="PATH", help="ssh client to run (default: ssh on PATH)")
    p.add_argument("ssh_args", nargs=argparse.REMAINDER,
                   help="after --, more ssh options (e.g. -- -o StrictHostKeyChecking=no)")

    sub.add_parser("emulator", help="run the Streaming API emulator (see flamingo emulator --help)",
                   add_help=False)
    return parser


def _looks_like_config(arg: str) -> bool:
    return arg.endswith((".yml", ".yaml")) and Path(arg).expanduser().is_file()


def main(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ if env is None else env)
    if argv and argv[0] == "emulator":
        return cmd_emulator(argv[1:])
    if argv and _looks_like_config(argv[0]):  # the original's `flamingo path/to/flamingo.yml`
        argv = ["console", "-c", argv[0], *argv[1:]]
    parser = build_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return USAGE
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return USAGE
    try:
        config = load_config(getattr(args, "config", None))
        return int(args.func(Context(args, config, env)))
    except ServerSaidNo as e:
        if getattr(args, "json", False):
            body = e.body if e.body is not None else {"error": e.error, "detail": e.detail}
            sys.stdout.write(json.dumps(body, sort_keys=True) + "\n")
        print(f"flamingo: {e}", file=sys.stderr)
        return e.code
    except CliError as e:
        print(f"flamingo: {e}", file=sys.stderr)
        return e.code
    except BrokenPipeError:
        return OK


if __name__ == "__main__":
    sys.exit(main())
