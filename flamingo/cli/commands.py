"""The CLI's subcommands: one ``cmd_*`` function each, given a :class:`Context`.

Each returns an exit code or raises a :class:`~flamingo.cli.client.CliError`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TextIO, TypeVar

import attrs

from flamingo._types import JsonObject
from flamingo.cli.client import (
    OK,
    USAGE,
    Client,
    RespClient,
    ServerSaidNo,
    Unreachable,
    UsageError,
    blob,
    expect,
    items,
    quote,
    resolve_token,
    resolve_url,
)
from flamingo.cli.format import SUB_COLUMNS, flatten, key_values, show_params, show_status, table
from flamingo.cli.stream_tail import ensure_group, read_group

if TYPE_CHECKING:  # the config package is imported only when a file is read
    from flamingo.config import Config

__all__ = ["Context", "cmd_status", "cmd_top", "cmd_meta", "cmd_stream", "cmd_subscriptions",
           "cmd_subscribe", "cmd_unsubscribe", "cmd_rules", "cmd_restart", "cmd_tail", "cmd_console",
           "cmd_emulator", "console_address"]

_T = TypeVar("_T")


@attrs.define
class Context:
    args: argparse.Namespace
    config: Config | None
    env: dict[str, str]
    out: TextIO = attrs.field(factory=lambda: sys.stdout)
    err: TextIO = attrs.field(factory=lambda: sys.stderr)

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    def client(self) -> Client:
        return Client(resolve_url(self.args, self.config, self.env),
                      resolve_token(self.config, self.env),
                      timeout=float(getattr(self.args, "timeout", None) or 10.0))

    def emit(self, doc: _T, human: Callable[[_T], str]) -> int:
        if self.json:
            self.out.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        else:
            self.out.write(human(doc).rstrip("\n") + "\n")
        return OK

    def default_stream(self) -> str:
        return self.config.stream if self.config is not None else "filter"


def cmd_status(ctx: Context) -> int:
    if getattr(ctx.args, "watch", False):  # a plain refresh
        from flamingo.cli.top import watch

        client = ctx.client()
        try:
            return watch(lambda: client.document("GET", "/status.json"), show_status, ctx.out,
                         ctx.args.interval)
        except KeyboardInterrupt:
            return OK
    return ctx.emit(ctx.client().document("GET", "/status.json"), show_status)


def cmd_top(ctx: Context) -> int:
    """The live terminal view (flamingo/cli/top.py)."""
    from flamingo.cli.top import run_top

    client = ctx.client()
    client.get("/dashboard/data.json")  # a refusal (401) or no daemon at all: say so and exit
    try:
        return run_top(lambda: client.document("GET", "/dashboard/data.json"), ctx.args.interval)
    except KeyboardInterrupt:
        return OK


def cmd_meta(ctx: Context) -> int:
    return ctx.emit(ctx.client().document("GET", "/meta.json"), lambda d: key_values(flatten(d)))


def cmd_stream(ctx: Context) -> int:
    a = ctx.args
    name = a.name or ctx.default_stream()
    client = ctx.client()
    base = f"/streams/{quote(name)}"
    if a.action is None:
        doc = client.document("GET", base + ".json")
        return ctx.emit(doc, lambda d: show_params(d.get("name", name), d.get("params") or {},
                                                   d.get("resource")))
    if a.param is None:
        raise UsageError(f"stream {name} {a.action}: which param? e.g. "
                         f"`flamingo stream {name} {a.action} track ...`")
    path = f"{base}/{quote(a.param)}.json"
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
    values = [str(v) for v in expect(result, list, path)]  # the param's values, as the daemon has them now
    doc = {"stream": name, "param": a.param, "values": values}
    return ctx.emit(doc, lambda d: f"{name} {a.param}: " + (", ".join(values) or "(none)"))


def cmd_subscriptions(ctx: Context) -> int:
    subs = ctx.client().rows("GET", "/subscriptions.json")
    return ctx.emit(subs, lambda s: table(s, SUB_COLUMNS) if s else "(no subscriptions)")


def _csv(values: Iterable[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def cmd_subscribe(ctx: Context) -> int:
    a = ctx.args
    body: JsonObject = {"name": a.name}
    if a.format is not None:
        body["format"] = a.format
    if a.types is not None:
        body["types"] = _csv(a.types)
    if a.filter is not None:
        body["filter"] = list(a.filter)
    if a.max_length is not None:
        body["max_length"] = a.max_length
    if a.groups is not None:
        body["groups"] = _csv(a.groups)
    if a.rules is not None:
        body["rules"] = _csv(a.rules)
    sub = ctx.client().document("POST", "/subscriptions.json", body)
    return ctx.emit(sub, lambda s: table([s], SUB_COLUMNS))


def cmd_unsubscribe(ctx: Context) -> int:
    a = ctx.args
    path = f"/subscriptions/{quote(a.name)}.json" + ("?drop_queue=true" if a.drop_queue else "")
    doc = ctx.client().request("DELETE", path)

    def human(d: object) -> str:
        queue = d.get("queue") if isinstance(d, dict) else None
        if a.drop_queue:
            return f"unsubscribed {a.name}; queue {queue} dropped"
        return f"unsubscribed {a.name}; queue {queue} left for its consumers"
    return ctx.emit(doc, human)


RULES_PATH = "/streams/filter/rules.json"
RULE_COLUMNS = ("value", "tag", "status", "id", "error")


def cmd_rules(ctx: Context) -> int:
    """X filter rules: list, add VALUE [--tag TAG], remove (--value V | --tag T)."""
    a = ctx.args
    client = ctx.client()
    if a.action == "add":
        body: JsonObject = {"value": a.value}
        if a.tag is not None:
            body["tag"] = a.tag
        rule = client.document("POST", RULES_PATH, body)
        return ctx.emit(rule, lambda r: table([r], RULE_COLUMNS))
    if a.action == "remove":
        if (a.value is None) == (a.tag is None):
            raise UsageError("rules remove: give --value V or --tag T (one of the two)")
        query = f"?value={quote(a.value)}" if a.value is not None else f"?tag={quote(a.tag)}"
        left = client.rows("DELETE", RULES_PATH + query)
        return ctx.emit(left, lambda r: table(r, RULE_COLUMNS) if r else "(no rules left)")
    rules = client.rows("GET", RULES_PATH)
    return ctx.emit(rules, lambda r: table(r, RULE_COLUMNS) if r else "(no rules)")


def cmd_restart(ctx: Context) -> int:
    doc = ctx.client().document("POST", "/wader/restart.json")
    return ctx.emit(doc, lambda d: "wader restarting (state: "
                    + str(((d or {}).get("wader") or {}).get("name")) + ")")


# --- tail ------------------------------------------------------------------------------


def _redis_address(ctx: Context) -> tuple[str, int]:
    from flamingo.config.values import ConfigError, host_port

    if ctx.args.redis:
        try:
            return host_port("--redis", ctx.args.redis, 6379)
        except ConfigError as e:
            raise UsageError(str(e)) from None
    if ctx.config is not None:
        return ctx.config.redis.host, ctx.config.redis.port
    return "127.0.0.1", 6379


def _queue_key(ctx: Context, redis: RespClient, namespace: str) -> str:
    """Where the subscription's events are: asked of the daemon, else of Redis."""
    a = ctx.args
    if a.queue:
        return str(a.queue)
    if not a.redis:
        try:
            doc = ctx.client().get(f"/subscriptions/{quote(a.name)}.json")
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
    if fmt == b"stream":
        return f"{namespace}:stream:{a.name}"
    return f"{namespace}:queue:{a.name}"


def _open_redis(host: str, port: int, password: str | None, db: int = 0) -> RespClient:
    redis = RespClient(host, port)
    if password:
        redis.command("AUTH", password)
    if db:
        redis.command("SELECT", db)
    return redis


def _slot_owner(redis: RespClient, key: str, password: str | None) -> RespClient:
    """Redis Cluster: the node that serves ``key``'s slot (the namespace's keys share one)."""
    try:
        redis.command("TYPE", key)
        return redis
    except ServerSaidNo as e:
        moved = re.search(r"(?:MOVED|ASK) \d+ ([^\s:]*):(\d+)", str(e))
        if moved is None:
            raise
    redis.close()
    host = moved.group(1) or redis.address.rsplit(":", 1)[0]  # empty: the node that answered
    return _open_redis(host.strip("[]"), int(moved.group(2)), password)


def cmd_tail(ctx: Context) -> int:
    a = ctx.args
    host, port = _redis_address(ctx)
    namespace = a.namespace or (ctx.config.redis.namespace if ctx.config is not None else "flamingo")
    rc = ctx.config.redis if ctx.config is not None else None
    if rc is not None and rc.cluster:
        namespace = "{%s}" % namespace  # every key carries the hash tag
    password = ctx.env.get("FLAMINGO_REDIS_PASSWORD") or (rc.password if rc else None)
    redis = _open_redis(host, port, password, rc.db if rc is not None else 0)
    try:
        if rc is not None and rc.cluster:
            redis = _slot_owner(redis, f"{namespace}:subscriptions", password)
        key = _queue_key(ctx, redis, namespace)
        out = ctx.out.buffer if hasattr(ctx.out, "buffer") else None

        def show(value: bytes) -> None:
            if out is not None:
                out.write(value + b"\n")
                out.flush()
            else:
                ctx.out.write(value.decode("utf-8", "replace") + "\n")
                ctx.out.flush()

        if a.group is not None or a.consumer is not None:
            if a.group is None or a.consumer is None:
                raise UsageError("--group and --consumer go together (a consumer group member reads a stream)")
            if a.peek:
                raise UsageError("--peek reads without a group: drop --group/--consumer")
            if ensure_group(redis, key, a.group):
                print(f"flamingo: made consumer group {a.group} on {key} (new entries only)", file=sys.stderr)
            read_group(redis, key, a.group, a.consumer, show, count=a.n, idle=a.idle, claim_idle=a.claim_idle)
            return OK
        if redis.command("TYPE", key) == b"stream":
            if not a.peek:
                raise UsageError(f"{key} is a stream: read it with --group G --consumer C (or --peek)")
            count = a.n if a.n is not None else 10
            for entry in items(redis.command("XRANGE", key, "-", "+", "COUNT", max(count, 1))):
                _, fields = items(entry)
                show(_stream_event([blob(f) for f in items(fields)]))
            return OK
        if a.peek:
            count = a.n if a.n is not None else 10
            for value in items(redis.command("LRANGE", key, 0, count - 1 if count > 0 else -1)):
                show(blob(value))
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
            show(blob(items(reply)[1]))
            seen += 1
            idle_since = time.monotonic()
        return OK
    except KeyboardInterrupt:
        return OK
    finally:
        redis.close()


def _stream_event(fields: list[bytes]) -> bytes:
    pairs = dict(zip(fields[::2], fields[1::2]))
    return pairs.get(b"event", b"")


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
