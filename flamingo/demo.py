"""``python -m flamingo.demo`` (``make run``): the whole thing on one machine.

Starts a private redis-server, the bundled Streaming API emulator, then
flamingod itself (``twistd -n flamingo -c flamingo/demo.yml``, shipped in the
package) and prints one
short line per event as it reaches the event log. Stops on Ctrl-C, or by
itself after ``--seconds`` (default 20 s when ``CI`` is set or stdout is not
a terminal). Everything lives under ``./run/demo``.

``--source x`` (``make run SOURCE=x``) runs the same against the emulator's
X API v2: ``source: x``, a bearer token, two filter rules in Redis (tags
``love`` and ``py``) that the daemon reconciles with the emulator, and each
post shown with the tags of the rules it matched.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path
from urllib.parse import quote

import orjson

from flamingo._reactor import maybe_global_reactor
from flamingo._redis_server import RedisServer, RedisServerError, free_port, redis_server_binary
from flamingo._types import JsonObject

__all__ = ["RedisServer", "redis_server_binary", "free_port", "describe", "dashboard_url", "main"]

TRACK = ["#etsy", "austin", "cheaptweet"]
#: the X demo's rules (value -> tag), written to Redis as `flamingo rules add` would
X_RULES = {"love": "love", "#python OR python": "py"}
X_TOKEN = "demo-bearer-token"
DEMO_CONFIG = Path(__file__).resolve().with_name("demo.yml")
#: SOURCE=jetstream: Bluesky posts and graph events from the Jetstream emulator
JETSTREAM_CONFIG = Path(__file__).resolve().with_name("demo_jetstream.yml")
JETSTREAM_WANTED = ["app.bsky.feed.post", "app.bsky.graph.*"]
#: source: mastodon (``make run SOURCE=mastodon``): the hashtag stream, these tags
MASTODON_TAGS = ["fediverse", "python"]
DEMO_MASTODON_CONFIG = Path(__file__).resolve().with_name("demo-mastodon.yml")


def start_redis(directory: Path) -> RedisServer:
    """The demo's private redis-server (data in ``directory``); a plain exit if it cannot start."""
    try:
        return RedisServer(directory=directory).start()
    except RedisServerError as e:
        raise SystemExit(str(e)) from None


def describe(raw: bytes) -> str:
    """One short line for an event."""
    try:
        m = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return f"(not JSON) {raw[:60]!r}"
    if not isinstance(m, dict):
        return "(unexpected) " + raw[:60].decode("utf-8", "replace")
    if isinstance(m.get("event"), str) and isinstance(m.get("stream"), list):
        return _describe_mastodon(m)
    if "did" in m and "time_us" in m:  # Bluesky (Jetstream)
        c = m.get("commit")
        commit: JsonObject = c if isinstance(c, dict) else {}
        r = commit.get("record")
        record: JsonObject = r if isinstance(r, dict) else {}
        what = commit.get("collection") or m.get("kind", "?")
        return f"{what:22s} " + " ".join(str(record.get("text", record.get("subject", ""))).split())[:80]
    if isinstance(m.get("data"), dict) or "errors" in m:
        return _describe_x(m)
    if "text" in m or "full_text" in m:
        user = (m.get("user") or {}).get("screen_name", "?")
        text = (m.get("extended_tweet") or {}).get("full_text") or m.get("text") or ""
        kind = "retweet" if "retweeted_status" in m else "tweet  "
        return f"{kind} @{user}: " + " ".join(text.split())[:90]
    for key in ("delete", "limit", "scrub_geo", "status_withheld", "user_withheld",
                "disconnect", "warning"):
        if key in m:
            return f"{key:7s} " + orjson.dumps(m[key]).decode()[:90]
    return "event   " + raw[:90].decode("utf-8", "replace")


def _describe_mastodon(m: JsonObject) -> str:
    """``update  hashtag python @acct: text`` for a Mastodon event as queued."""
    import re

    where = " ".join(str(s) for s in m["stream"])
    payload = m.get("payload")
    if isinstance(payload, dict) and isinstance(payload.get("account"), dict):
        text = re.sub(r"<[^>]+>", " ", str(payload.get("content", "")))
        return f"{m['event']:<7} {where} @{payload['account'].get('acct', '?')}: " + " ".join(text.split())[:80]
    return f"{m['event']:<7} {where} " + orjson.dumps(payload).decode()[:80]


def _describe_x(m: JsonObject) -> str:
    """An X API v2 line: a post with its rule tags, a compliance event, an error line."""
    data = m.get("data")
    if not isinstance(data, dict):
        return "error   " + orjson.dumps(m.get("errors")).decode()[:90]
    if "text" in data:
        tags = ",".join(str(r.get("tag")) for r in m.get("matching_rules") or () if isinstance(r, dict))
        return f"post    [{tags}] " + " ".join(str(data["text"]).split())[:90]
    key = next(iter(data), "?")
    return f"{key:7s} " + orjson.dumps(data[key]).decode()[:90]


def x_config(base: Path) -> Path:
    """The demo's config turned to ``source: x`` (written under ``base``)."""
    import yaml

    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    for k in ("username", "password"):
        raw.pop(k, None)
    raw.update({"source": "x", "stream": "filter", "bearer_token": X_TOKEN})
    path = base / "flamingo-x.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


def seed_x_rules(redis: RedisServer, namespace: str = "flamingo") -> None:
    """The demo's rules in Redis, pending: the daemon adds them at the emulator."""
    for value, tag in X_RULES.items():
        rule = {"tag": tag, "id": None, "status": "pending", "error": None}
        redis.command("HSET", f"{namespace}:rules:filter", value, orjson.dumps(rule).decode())


class EventTail:
    """Follows the event log directory (rotation included), complete lines only."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.offsets: dict[Path, int] = {}
        self.count = 0

    def poll(self) -> list[bytes]:
        out: list[bytes] = []
        if not self.dir.is_dir():
            return out
        for path in sorted(self.dir.glob("event-*.log")):
            pos = self.offsets.get(path, 0)
            try:
                with open(path, "rb") as f:
                    f.seek(pos)
                    data = f.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1
            if end:
                out.extend(line for line in data[:end].split(b"\n") if line)
                self.offsets[path] = pos + end
        self.count += len(out)
        return out


def say(text: str = "") -> None:
    """print() that survives a closed stdout (``make run | head``)."""
    try:
        print(text, flush=True)
    except (BrokenPipeError, OSError):
        pass


def dashboard_url(port: int, token: str | None) -> str:
    """The live dashboard's address; with a token, the link that sets its cookie."""
    url = f"http://127.0.0.1:{port}/dashboard"
    return f"{url}?token={quote(token, safe='')}" if token else url


def _twistd_command(config: Path) -> list[str]:
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "flamingo", "-c", str(config)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flamingo.demo", description=__doc__.splitlines()[0])
    auto = bool(os.environ.get("CI")) or not sys.stdout.isatty()
    parser.add_argument("--seconds", type=float, default=20.0 if auto else None,
                        help="stop after this long (default: 20 s under CI or without a TTY, "
                             "else until Ctrl-C)")
    parser.add_argument("--rate", type=float, default=5.0, help="emulator messages per second")
    parser.add_argument("--source", choices=("twitter", "x", "jetstream", "mastodon"), default="twitter",
                        help="the API to demo (make run SOURCE=...): twitter (the v1.1 emulator, default), "
                             "x (X API v2: filter rules), "
                             "jetstream (Bluesky Jetstream over WebSocket) or mastodon (the Mastodon emulator: "
                             "#fediverse and #python over one WebSocket, gaps filled from REST)")
    parser.add_argument("--dir", default="run/demo", help="working directory (default run/demo)")
    args = parser.parse_args(argv)

    from twisted.internet import defer, reactor, task
    from twisted.internet.error import ProcessExitedAlready
    from twisted.internet.protocol import ProcessProtocol
    from twisted.python.failure import Failure

    from flamingo.emulator import Emulator, EmulatorOptions
    from flamingo.emulator.jet_server import JetOptions, JetstreamEmulator
    from flamingo.emulator.mastodon import MastodonEmulator, MastoOptions

    base = Path(args.dir).resolve()
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    config = {"mastodon": DEMO_MASTODON_CONFIG, "jetstream": JETSTREAM_CONFIG}.get(args.source, DEMO_CONFIG)
    if not config.is_file():
        raise SystemExit(f"{config} not found: the package is incomplete (reinstall flamingo)")

    redis = start_redis(base / "redis")
    say(f"redis-server     127.0.0.1:{redis.port} (private, data in {base / 'redis'})")
    source_env: dict[str, str] = {}
    emu: Emulator | MastodonEmulator | JetstreamEmulator
    if args.source == "x":
        seed_x_rules(redis)
        config = x_config(base)
        x = emu = Emulator(EmulatorOptions(seed=int(time.time()) % 1000, rate=args.rate, source="x",
                                           bearer_token=X_TOKEN), reactor=reactor)
        x.start("127.0.0.1", 0)
        rules = ", ".join(f"{v!r} (tag {t})" for v, t in X_RULES.items())
        say(f"emulator         {x.url}  (X API v2, rules {rules}, {args.rate:g} msg/s)")

        def made() -> str:
            return f"{sum(r.messages_sent for r in x.journal)} sent by the emulator"
    elif args.source == "jetstream":
        redis.command("SADD", "flamingo:streams:subscribe:wantedCollections", *JETSTREAM_WANTED)
        jet = emu = JetstreamEmulator(JetOptions(seed=int(time.time()) % 1000, rate=args.rate * 4),
                                      reactor=reactor)
        jet.start("127.0.0.1", 0)
        say(f"emulator         {jet.url}/subscribe  (Bluesky Jetstream, {args.rate * 4:g} events/s, "
            f"wantedCollections={','.join(JETSTREAM_WANTED)})")

        def made() -> str:
            return f"{sum(c.sent for c in jet.connections)} sent by the emulator"
    elif args.source == "mastodon":
        redis.command("SADD", "flamingo:streams:hashtag:tag", *MASTODON_TAGS)
        source_env["DEMO_MASTODON_TOKEN"] = secrets.token_urlsafe(18)
        masto = emu = MastodonEmulator(MastoOptions(access_token=source_env["DEMO_MASTODON_TOKEN"],
                                                    seed=int(time.time()) % 1000, rate=args.rate),
                                       reactor=reactor)
        masto.start("127.0.0.1", 0, 0)
        say(f"emulator         {masto.url}  (a Mastodon instance, {args.rate:g} statuses/s; "
            f"streaming server {masto.streaming_url})")

        def made() -> str:
            return f"{len(masto.timeline.made)} made by the emulator"
    else:
        redis.command("SADD", "flamingo:streams:filter:track", *TRACK)
        v11 = emu = Emulator(EmulatorOptions(seed=int(time.time()) % 1000, rate=args.rate,
                                             size="realistic", user="demo", password="demo-password"),
                             reactor=reactor)
        v11.start("127.0.0.1", 0)
        say(f"emulator         {v11.url}  (Streaming API v1.1, {args.rate:g} msg/s)")

        def made() -> str:
            return f"{sum(r.messages_sent for r in v11.journal)} sent by the emulator"
    web_port = free_port()
    # A fresh web.token for each run (FLAMINGO_WEB_TOKEN overrides the config):
    # the dashboard link below carries it once, then its cookie does.
    token = os.environ.get("FLAMINGO_WEB_TOKEN") or secrets.token_urlsafe(18)
    env = {**os.environ, "DEMO_API_URL": emu.url, "DEMO_DIR": str(base),
           "DEMO_REDIS_PORT": str(redis.port), "DEMO_WEB_PORT": str(web_port),
           "FLAMINGO_WEB_TOKEN": token, "PYTHONUNBUFFERED": "1", **source_env}

    out = open(base / "twistd.out", "wb")
    ended: defer.Deferred[int] = defer.Deferred()

    class Child(ProcessProtocol):
        def outReceived(self, data: bytes) -> None:
            out.write(data)

        errReceived = outReceived

        def processEnded(self, reason: Failure) -> None:
            out.close()
            ended.callback(getattr(reason.value, "exitCode", None) or 0)

    cmd = _twistd_command(config)
    say(f"flamingod        twistd -n flamingo -c {config}  (log: {base / 'flamingo.log'})")
    say(f"dashboard        {dashboard_url(web_port, token)}")
    say(f"                 (terminal: FLAMINGO_URL=http://127.0.0.1:{web_port} "
        f"FLAMINGO_WEB_TOKEN={token} flamingo top)")
    say(f"REST API         http://127.0.0.1:{web_port}/   e.g. curl -H 'Authorization: Bearer "
        f"{token}' http://127.0.0.1:{web_port}/meta.json")
    say("events           (one line each, from the event log; Ctrl-C stops)\n")
    proc = reactor.spawnProcess(Child(), sys.executable, cmd, env=env, path=os.getcwd())
    tail = EventTail(base / "events")
    shown_log: set[str] = set()
    status = {"code": 0}

    def show() -> None:
        log = base / "flamingo.log"
        if log.exists():
            for line in log.read_text(errors="replace").splitlines():
                for key in ("Loaded config file", "Flamingod starting", "Listening on stream"):
                    if key in line and line not in shown_log:
                        shown_log.add(line)
                        say(f"  log: {line}")
        for raw in tail.poll():
            say(f"{time.strftime('%H:%M:%S')}  {describe(raw)}")

    loop = task.LoopingCall(show)
    loop.start(0.25)

    def early_exit(code: int) -> int:
        if reactor.running and not stopping["now"]:
            say(f"\nflamingod exited early with status {code}; see {base / 'twistd.out'}")
            status["code"] = 1
            reactor.stop()
        return code

    ended.addCallback(early_exit)
    stopping = {"now": False}

    def kill() -> None:
        if not ended.called:
            proc.signalProcess("KILL")

    async def shutdown() -> None:
        stopping["now"] = True
        if loop.running:
            loop.stop()
        if not ended.called:
            try:
                proc.signalProcess("TERM")
            except (ProcessExitedAlready, OSError):
                pass  # it ended meanwhile: ``ended`` fires
            timer = reactor.callLater(15, kill)
            code = await ended
            if timer.active():
                timer.cancel()
            show()
            say(f"\nflamingod stopped (exit status {code}); {tail.count} events shown, {made()}")
        await emu.stop()
        redis.stop()

    # the reactor waits for the Deferred before it stops
    reactor.addSystemEventTrigger("before", "shutdown", lambda: defer.ensureDeferred(shutdown()))
    if args.seconds:
        reactor.callLater(args.seconds, reactor.stop)
    running = maybe_global_reactor(None)  # the same reactor, typed: it takes calls from threads
    signal.signal(signal.SIGTERM, lambda *a: running.callFromThread(running.stop))
    try:
        reactor.run()
    finally:
        redis.stop()
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
