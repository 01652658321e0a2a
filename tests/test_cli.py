"""The `flamingo` command as a subprocess against a running daemon (REST + real Redis)."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.trial import unittest

from flamingo import cli
from flamingo.app import App, Started
from flamingo.config import from_mapping
from tests.support.parts import FakeWader, make_stats
from tests.support.processes import clean, keygen, run
from tests.support.redis import free_port, shared_redis


class Daemon(unittest.TestCase):
    """A daemon's control surfaces in this reactor: real Store, REST API, console."""

    timeout = 60
    token: str | None = "t0ken"

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.dir = Path(tempfile.mkdtemp(prefix="flamingo-cli-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.redis = shared_redis()
        self.ns = "cli" + uuid.uuid4().hex[:8]
        self.web_port = free_port()
        self.raw = {
            "username": "u", "password": "pw",
            "data_dir": str(self.dir / "data"),
            "redis": {"host": self.redis.address, "namespace": self.ns},
            "web": {"host": f"127.0.0.1:{self.web_port}"},
            "console": {"listen": "tcp:0:interface=127.0.0.1",
                        "authorized_keys": str(self.dir / "authorized_keys")},
        }
        if self.token:
            self.raw["web"]["token"] = self.token
        self.config = from_mapping(self.raw)
        self.config_file = self.dir / "flamingo.yml"
        self.config_file.write_text(yaml.safe_dump(self.raw))
        from flamingo.dispatch.store import Store
        from flamingo.web.server import make_site

        self.store = Store.from_config(self.config, reactor=reactor)
        yield self.store.start()
        self.addCleanup(self.store.stop)
        self.wader = FakeWader()
        self.app = App(self.config, reactor, store=self.store, stats=make_stats(),
                       wader=self.wader, started=Started(1.0))
        self.site = make_site(self.app)
        self.listening = reactor.listenTCP(self.web_port, self.site, interface="127.0.0.1")
        self.addCleanup(self.listening.stopListening)
        self.env = {"HOME": str(self.dir)}

    def flamingo(self, *args: str, env: dict[str, str] | None = None, stdin: bytes = b"") -> Any:
        return run(["-c", str(self.config_file), *args], {**self.env, **(env or {})}, stdin)

    def json_of(self, out: str) -> Any:
        return json.loads(out)


class Commands(Daemon):
    @defer.inlineCallbacks
    def test_stream_set_add_remove_clear_show(self) -> Any:
        code, out, err = yield self.flamingo("stream", "filter", "set", "track",
                                             "@cheaptweet", "austin", "#etsy")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out.strip(), "filter track: #etsy, @cheaptweet, austin")
        self.assertEqual(self.store.params("filter")["track"], ["#etsy", "@cheaptweet", "austin"])

        code, out, err = yield self.flamingo("stream", "filter", "add", "track", "big apple", "--json")
        self.assertEqual(code, 0, err)
        self.assertIn("big apple", self.json_of(out)["values"])

        code, out, err = yield self.flamingo("stream", "filter", "remove", "track", "austin")
        self.assertEqual(code, 0, err)
        self.assertNotIn("austin", out)

        code, out, err = yield self.flamingo("stream", "--json")  # the config's stream
        self.assertEqual(code, 0, err)
        doc = self.json_of(out)
        self.assertEqual(doc["name"], "filter")
        self.assertEqual(doc["params"]["track"], ["#etsy", "@cheaptweet", "big apple"])

        code, out, err = yield self.flamingo("stream", "filter")
        self.assertEqual(code, 0, err)
        self.assertIn("track  #etsy, @cheaptweet, big apple", out)

        code, out, err = yield self.flamingo("stream", "filter", "clear", "track")
        self.assertEqual(code, 0, err)
        self.assertEqual(out.strip(), "filter track: (none)")
        self.assertEqual(self.store.params("filter"), {})

    @defer.inlineCallbacks
    def test_subscriptions(self) -> Any:
        code, out, err = yield self.flamingo("subscribe", "example")
        self.assertEqual(code, 0, err)
        self.assertIn(f"{self.ns}:queue:example", out)
        code, out, err = yield self.flamingo(
            "subscribe", "jobs", "--format", "resque", "--types", "tweet,delete",
            "--filter", "austin", "#etsy", "--max-length", "100", "--json")
        self.assertEqual(code, 0, err)
        doc = self.json_of(out)
        self.assertEqual(doc["queue"], "resque:queue:jobs")
        self.assertEqual(doc["types"], ["delete", "tweet"])
        self.assertEqual(doc["filter"], ["austin", "#etsy"])
        self.assertEqual(doc["max_length"], 100)

        code, out, err = yield self.flamingo("subscriptions")
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        self.assertTrue(lines[0].startswith("NAME"))
        self.assertEqual([ln.split()[0] for ln in lines[1:]], ["example", "jobs"])
        code, out, err = yield self.flamingo("subscriptions", "--json")
        self.assertEqual([s["name"] for s in self.json_of(out)], ["example", "jobs"])

        code, out, err = yield self.flamingo("unsubscribe", "example")
        self.assertEqual(code, 0, err)
        self.assertIn("left for its consumers", out)
        self.assertEqual(sorted(self.store.subscriptions()), ["jobs"])

    @defer.inlineCallbacks
    def test_status_meta_restart(self) -> Any:
        code, out, err = yield self.flamingo("status")
        self.assertEqual(code, 0, err)
        self.assertIn("state", out)
        self.assertIn("connected", out)
        self.assertIn("reachable", out)
        code, out, err = yield self.flamingo("status", "--json")
        self.assertEqual(self.json_of(out)["wader"]["name"], "connected")

        code, out, err = yield self.flamingo("meta", "--json")
        self.assertEqual(code, 0, err)
        self.assertEqual(self.json_of(out)["events"]["by_type"]["tweet"], 40)
        code, out, err = yield self.flamingo("meta")
        self.assertIn("events.by_type.tweet", out)

        code, out, err = yield self.flamingo("restart")
        self.assertEqual(code, 0, err)
        self.assertIn("wader restarting (state: connecting)", out)
        self.assertEqual(self.wader.restarts, 1)

    @defer.inlineCallbacks
    def test_server_says_no_exit_1(self) -> Any:
        code, out, err = yield self.flamingo("unsubscribe", "ghost")
        self.assertEqual(code, 1)
        self.assertIn("404", err)
        code, out, err = yield self.flamingo("subscribe", "bad name!", "--json")
        self.assertEqual(code, 1)
        self.assertEqual(self.json_of(out)["detail"]["field"], "name")
        self.assertIn("422", err)
        code, out, err = yield self.flamingo("stream", "filter", "set", "track", "x" * 61)
        self.assertEqual(code, 1)
        self.assertIn("track", err)

    @defer.inlineCallbacks
    def test_token_from_config_env_and_refused(self) -> Any:
        # Without a config (so without web.token): 401, exit 1.
        url = f"http://127.0.0.1:{self.web_port}"
        (self.dir / "empty").mkdir()
        code, out, err = yield run(["--url", url, "status"], {"HOME": str(self.dir / "empty")})
        self.assertEqual(code, 1)
        self.assertIn("401", err)
        self.assertNotIn(self.token, err)
        # ~/flamingo.yml is read when there is no -c.
        code, out, err = yield run(["status", "--json"], {"HOME": str(self.dir)})
        self.assertEqual(code, 0, err)
        # Token and address from the environment.
        code, out, err = yield run(["status", "--json"], {
            "HOME": str(self.dir / "empty"), "FLAMINGO_URL": url, "FLAMINGO_WEB_TOKEN": self.token})
        self.assertEqual(code, 0, err)

    @defer.inlineCallbacks
    def test_unreachable_exit_3(self) -> Any:
        port = free_port()
        code, out, err = yield run(["--url", f"http://127.0.0.1:{port}", "status"],
                                   {"HOME": str(self.dir)})
        self.assertEqual(code, 3)
        self.assertIn(f"http://127.0.0.1:{port}", err)
        code, out, err = yield self.flamingo("tail", "x", "--redis", f"127.0.0.1:{port}")
        self.assertEqual(code, 3)
        self.assertIn(f"Redis at 127.0.0.1:{port}", err)

    @defer.inlineCallbacks
    def test_usage_exit_2(self) -> Any:
        for args in (["bogus"], ["subscribe"], ["stream", "filter", "explode"],
                     ["stream", "filter", "set", "track"], ["subscribe", "x", "--max-length", "many"],
                     []):
            code, out, err = yield self.flamingo(*args)
            self.assertEqual(code, 2, (args, err))
        code, out, err = yield run(["-c", str(self.dir / "missing.yml"), "status"], self.env)
        self.assertEqual(code, 2)
        self.assertIn("missing.yml", err)

    @defer.inlineCallbacks
    def test_help_for_every_subcommand(self) -> Any:
        names = ["status", "meta", "stream", "subscriptions", "subscribe", "unsubscribe",
                 "restart", "tail", "console"]
        for name in names:
            code, out, err = yield run([name, "--help"], self.env)
            self.assertEqual(code, 0, err)
            self.assertIn(f"usage: flamingo {name}", out)
        code, out, err = yield run(["--help"], self.env)
        self.assertEqual(code, 0)
        for name in names + ["emulator"]:
            self.assertIn(name, out)


class Tail(Daemon):
    @defer.inlineCallbacks
    def test_tail_consumes_and_peek_does_not(self) -> Any:
        yield self.store.save_subscription(_sub("example"))
        key = f"{self.ns}:queue:example"
        events = [b'{"id":%d,"text":"hello %d"}' % (i, i) for i in range(5)]
        self.redis.command("RPUSH", key, *events)

        code, out, err = yield self.flamingo("tail", "example", "--peek", "-n", "2")
        self.assertEqual(code, 0, err)
        self.assertEqual(out.splitlines(), [e.decode() for e in events[:2]])
        self.assertEqual(self.redis.command("LLEN", key), 5)

        code, out, err = yield self.flamingo("tail", "example", "-n", "3")
        self.assertEqual(code, 0, err)
        self.assertEqual([json.loads(x)["id"] for x in out.splitlines()], [0, 1, 2])
        self.assertEqual(self.redis.command("LLEN", key), 2)

        # Without the daemon: the queue is found from Redis alone.
        code, out, err = yield self.flamingo("tail", "example", "--redis", self.redis.address,
                                             "--namespace", self.ns, "--idle", "0.5")
        self.assertEqual(code, 0, err)
        self.assertEqual([json.loads(x)["id"] for x in out.splitlines()], [3, 4])

    @defer.inlineCallbacks
    def test_tail_resque_queue_and_unknown(self) -> Any:
        yield self.store.save_subscription(_sub("jobs", format="resque"))
        payload = b'{"class":"HandleFlamingoEvent","args":["tweet",{"id":1}]}'
        self.redis.command("RPUSH", "resque:queue:jobs", payload)
        code, out, err = yield self.flamingo("tail", "jobs", "-n", "1", "--json")
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out)["args"][0], "tweet")
        code, out, err = yield self.flamingo("tail", "nobody", "-n", "1")
        self.assertEqual(code, 1)
        self.assertIn("404", err)


class NoToken(Daemon):
    token = None

    @defer.inlineCallbacks
    def test_console_subcommand_and_original_form(self) -> Any:
        from flamingo.console import console_service

        key = keygen(self.dir, "id")
        (self.dir / "authorized_keys").write_bytes((self.dir / "id.pub").read_bytes())
        svc = console_service(self.app)
        yield svc.startService()
        self.addCleanup(svc.stopService)
        port = svc.port.getHost().port
        raw = dict(self.raw, console={**self.raw["console"],
                                      "listen": f"tcp:{port}:interface=127.0.0.1"})
        self.config_file.write_text(yaml.safe_dump(raw))
        ssh_opts = ["-tt", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
                    "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                    "-o", "IdentitiesOnly=yes"]
        code, out, err = yield self.flamingo("console", "-i", str(key), "--", *ssh_opts,
                                             stdin=b"6*7\r")
        self.assertEqual(code, 0, (out, err))
        self.assertIn("42", clean(out.encode()).split("6*7", 1)[1])
        code, out, err = yield run([str(self.config_file), "-i", str(key), "--", *ssh_opts],
                                   self.env, stdin=b"Stream.get('filter')\r")
        self.assertEqual(code, 0, err)
        self.assertIn("Stream('filter', params={})", clean(out.encode()))


def _sub(name: str, **kw: Any) -> Any:
    from flamingo.domain.subscription import Subscription

    return Subscription.create(name, **kw)


class Pure(unittest.SynchronousTestCase):
    def test_console_address(self) -> None:
        self.assertEqual(cli.console_address("tcp:4712:interface=127.0.0.1"), ("127.0.0.1", 4712))
        self.assertEqual(cli.console_address("tcp:port=22:interface=0.0.0.0"), ("127.0.0.1", 22))
        self.assertEqual(cli.console_address("tcp6:4712:interface=\\:\\:1"), ("::1", 4712))
        self.assertRaises(cli.UsageError, cli.console_address, "unix:/tmp/x")

    def test_url_resolution_order(self) -> None:
        config = from_mapping({"username": "u", "password": "p",
                               "web": {"host": "0.0.0.0:9000", "token": "c"}})
        args = cli.build_parser().parse_args(["status"])
        self.assertEqual(cli.resolve_url(args, None, {}), cli.DEFAULT_URL)
        self.assertEqual(cli.resolve_url(args, config, {}), "http://127.0.0.1:9000")
        self.assertEqual(cli.resolve_url(args, config, {"FLAMINGO_URL": "http://h:1/"}), "http://h:1")
        args = cli.build_parser().parse_args(["status", "--url", "http://x:2"])
        self.assertEqual(cli.resolve_url(args, config, {"FLAMINGO_URL": "http://h:1"}), "http://x:2")
        self.assertEqual(cli.resolve_token(config, {}), "c")
        self.assertEqual(cli.resolve_token(config, {"FLAMINGO_WEB_TOKEN": "e"}), "e")

    def test_lenient_config(self) -> None:
        d = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, d, True)
        f = d / "flamingo.yml"
        f.write_text("password: ${NOT_SET_HERE}\nusername: u\nweb:\n  host: 127.0.0.1:4800\n")
        self.assertEqual(cli.load_config(str(f)).web.port, 4800)
        f.write_text("web: [")
        self.assertRaises(cli.UsageError, cli.load_config, str(f))

    @given(st.lists(st.dictionaries(st.sampled_from(cli.SUB_COLUMNS),
                                    st.one_of(st.none(), st.text(max_size=8),
                                              st.lists(st.text(max_size=4), max_size=3))),
                    max_size=5))
    def test_table_aligns(self, rows: list[dict[str, Any]]) -> None:
        lines = cli.table(rows, cli.SUB_COLUMNS).splitlines()
        self.assertEqual(len(lines), len(rows) + 1)
        self.assertTrue(lines[0].startswith("NAME"))

    def test_flatten(self) -> None:
        self.assertEqual(cli.flatten({"a": {"b": 1, "c": []}, "d": {}}),
                         [("a.b", 1), ("a.c", []), ("d", {})])


class DocumentedCommandLines(unittest.SynchronousTestCase):
    """Every concrete `flamingo ...` line a user can copy from the docs and examples parses."""

    def test_documented_lines_parse(self) -> None:
        import re
        import shlex

        root = Path(__file__).resolve().parent.parent
        files = sorted(root.glob("docs/*.md")) + [root / "README.md"] + sorted(root.glob("examples/*"))
        parser = cli.build_parser()
        checked = 0
        for path in files:
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                m = re.match(r"^\s*(?:[#>]\s*)?(?:\$\s+)?flamingo\s+(.*)$", line)
                if not m:
                    continue
                text = re.sub(r"\s+#.*$", "", m.group(1))
                # Synopsis lines with placeholders are not meant to be typed as they are.
                if re.search(r"[|\[\]<─]|\.\.\.|NAME|TERM|SPEC|\bKEY\b|\bN\b", text):
                    continue
                argv = shlex.split(text)
                if not argv or argv[0] == "emulator" or argv[0].endswith(".yml"):
                    continue
                try:
                    parser.parse_args(argv)
                except SystemExit:
                    self.fail(f"{path.name}:{n}: `flamingo {text}` does not parse")
                checked += 1
        self.assertGreater(checked, 10)

    def test_negative_locations_are_values(self) -> None:
        parser = cli.build_parser()
        for argv, values in [
            (["stream", "filter", "set", "locations", "-122.75,36.8,-121.75,37.8", "--json"],
             ["-122.75,36.8,-121.75,37.8"]),
            (["stream", "filter", "add", "locations", "-74", "40", "-73", "41"], ["-74", "40", "-73", "41"]),
        ]:
            args = parser.parse_args(argv)
            self.assertEqual(args.values, values)
        self.assertTrue(parser.parse_args(["stream", "filter", "set", "track", "a", "--json"]).json)

    def test_tail_count_must_be_positive(self) -> None:
        parser = cli.build_parser()
        self.assertEqual(parser.parse_args(["tail", "example", "-n", "3"]).n, 3)
        for bad in ("0", "-1", "lots"):
            with self.assertRaises(SystemExit) as cm:
                parser.parse_args(["tail", "example", "-n", bad])
            self.assertEqual(cm.exception.code, 2)
