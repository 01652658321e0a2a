"""The console through a real OpenSSH client, against the real Store on a real Redis."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from flamingo.app import App
from flamingo.config import from_mapping
from flamingo.console import (
    AuthorizedKeysFile,
    ConfigView,
    build_namespace,
    console_service,
    describe_error,
    load_or_create_host_key,
    parse_authorized_keys,
)
from flamingo.errors import NotFound, ValidationError
from flamingo.web.openapi import SCHEMAS
from tests.support.parts import FakeWader, make_stats
from tests.support.processes import SSH, Collect, clean, keygen, run_ssh
from tests.support.redis import shared_redis

STATUS_KEYS = SCHEMAS["Status"]["required"]  # what /status.json answers


class ConsoleOverSSH(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        if not os.path.exists(SSH):
            raise unittest.SkipTest("no OpenSSH client")
        self.dir = Path(tempfile.mkdtemp(prefix="flamingo-console-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.key = keygen(self.dir, "good")
        self.wrong = keygen(self.dir, "wrong")
        self.authorized = self.dir / "authorized_keys"
        self.authorized.write_bytes(b"# test keys\n" + (self.dir / "good.pub").read_bytes())
        self.redis = shared_redis()
        self.ns = "console" + uuid.uuid4().hex[:8]
        config = from_mapping({
            "username": "u", "password": "pw",
            "data_dir": str(self.dir / "data"),
            "web": {"token": "s3cret-token"},
            "redis": {"host": self.redis.address, "namespace": self.ns},
            "console": {"listen": "tcp:0:interface=127.0.0.1",
                        "authorized_keys": str(self.authorized)},
        })
        from flamingo.dispatch.store import Store

        self.store = Store.from_config(config, reactor=reactor)
        yield self.store.start()
        self.addCleanup(self.store.stop)
        self.wader = FakeWader()
        self.app = App(config, reactor, store=self.store, stats=make_stats(), wader=self.wader)
        self.service = console_service(self.app)
        yield self.service.startService()
        self.addCleanup(self.service.stopService)
        self.port = self.service.port.getHost().port

    def ssh(self, lines: str, key: Path | None = None, **kw: Any) -> Any:
        data = "".join(line + "\r" for line in lines.splitlines()).encode()
        return run_ssh(self.port, key or self.key, data, **kw)

    @defer.inlineCallbacks
    def test_right_key_logs_in(self) -> Any:
        code, out, err = yield self.ssh("1+41")
        self.assertIn("42", out.split("1+41", 1)[1])
        self.assertIn("Flamingo console", out)
        self.assertEqual(code, 0, err)

    def test_host_key_generated_0600(self) -> None:
        path = self.dir / "data" / "console_host_key"
        self.assertTrue(path.exists())
        self.assertEqual(path.stat().st_mode & 0o777, 0o600)
        # Second start reuses it.
        key = load_or_create_host_key(path)
        self.assertEqual(key.public(), self.service.factory.publicKeys[key.sshType()])

    @defer.inlineCallbacks
    def test_wrong_key_refused(self) -> Any:
        code, out, err = yield self.ssh("1+41", key=self.wrong, tty=True)
        self.assertEqual(code, 255)
        self.assertIn("Permission denied", err)
        self.assertNotIn("42", out)

    @defer.inlineCallbacks
    def test_password_refused(self) -> Any:
        # No key at all, password and keyboard-interactive only: the server
        # offers publickey only, so this cannot even be attempted.
        args = [SSH, "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                "-o", "PubkeyAuthentication=no",
                "-o", "PreferredAuthentications=password,keyboard-interactive",
                "-o", "NumberOfPasswordPrompts=1", "-p", str(self.port), "-tt",
                "someone@127.0.0.1"]
        p = Collect(b"hunter2\r1+41\r")
        reactor.spawnProcess(p, SSH, args, env={"PATH": "/usr/bin"})
        code = yield p.done
        self.assertEqual(code, 255)
        self.assertIn("Permission denied (publickey)", clean(p.err))

    @defer.inlineCallbacks
    def test_key_removed_takes_effect_at_next_login(self) -> Any:
        self.authorized.write_bytes(b"")
        code, out, err = yield self.ssh("1+41")
        self.assertEqual(code, 255)
        self.assertIn("Permission denied", err)

    @defer.inlineCallbacks
    def test_readme_lines(self) -> Any:
        code, out, err = yield self.ssh(
            "s = Stream.get('filter')\n"
            "s.params['track'] = ['@cheaptweet', 'austin', '#etsy']\n"
            "s.params['track']\n"
            "Subscription('example').save()\n"
            "Subscription('jobs', format='resque', types=['tweet']).save()\n"
            "[s.name for s in Subscription.all()]\n"
            "meta()['events']\n"
            "wader.state.name\n"
            "wader.restart()\n"
            "wader.state.name\n"
            "config.web['token']\n"
            + "print('status keys', sorted(status()) == %r)\n" % sorted(STATUS_KEYS) +
            "help()\n")
        self.assertEqual(code, 0, err)
        after = out.split("#etsy']", 1)[1]
        self.assertIn("filter.track = ['#etsy', '@cheaptweet', 'austin']", after)
        self.assertIn("['#etsy', '@cheaptweet', 'austin']", after)
        self.assertIn("['example', 'jobs']", out)
        self.assertIn("'by_type': {'tweet': 40, 'delete': 2, 'limit': 1}", out)
        self.assertIn("'connected'", out)
        self.assertIn("'connecting'", out)
        self.assertEqual(self.wader.restarts, 1)
        self.assertIn("'***'", out)
        self.assertNotIn("s3cret-token", out)
        self.assertIn("status keys True", out)  # status() has the keys /status.json has
        self.assertIn("Subscription('example').save()", out)  # the banner from help()
        # Written through to Redis, where REST and other daemons read.
        members = self.redis.command("SMEMBERS", f"{self.ns}:streams:filter:track")
        self.assertEqual(sorted(members), [b"#etsy", b"@cheaptweet", b"austin"])
        self.assertEqual(sorted(self.redis.command("SMEMBERS", f"{self.ns}:subscriptions")),
                         [b"example", b"jobs"])
        fields = self.redis.command("HGETALL", f"{self.ns}:subscription:jobs")
        self.assertIn(b"resque", fields)

    @defer.inlineCallbacks
    def test_errors_print_one_line_and_session_goes_on(self) -> Any:
        code, out, err = yield self.ssh(
            "1/0\n"
            "Subscription('bad name!').save()\n"
            "Stream.get('filter').params['track'] = ['x' * 61]\n"
            "Subscription('ghost').delete()\n"
            "Stream.get('nope')\n"
            "undefined_name\n"
            "6*7\n")
        self.assertEqual(code, 0, err)
        self.assertIn("ZeroDivisionError", out)
        self.assertIn("ValidationError: name: must match", out)
        self.assertIn("ValidationError: track", out)
        self.assertIn("NotFound: unknown subscription 'ghost'", out)
        # as REST's 404, in one line (no traceback)
        self.assertTrue(out.split("Stream.get('nope')\n", 1)[1].startswith(
            "NotFound: unknown stream 'nope'\n>>> "), out)
        self.assertIn("NameError", out)
        self.assertIn("42", out.split("6*7", 1)[1])
        # ... and the daemon still serves.
        code, out, err = yield self.ssh("2+2")
        self.assertIn("4", out.split("2+2", 1)[1])

    @defer.inlineCallbacks
    def test_no_pty_gets_a_message(self) -> Any:
        code, out, err = yield self.ssh("1+41", tty=False)
        self.assertEqual(code, 1)
        self.assertIn("a terminal is needed", out + err)

    @defer.inlineCallbacks
    def test_exec_gets_a_message(self) -> Any:
        data = b""
        args = [SSH, "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "IdentitiesOnly=yes", "-i", str(self.key), "-p", str(self.port),
                "someone@127.0.0.1", "print(1)"]
        p = Collect(data)
        reactor.spawnProcess(p, SSH, args, env={"PATH": "/usr/bin"})
        code = yield p.done
        self.assertEqual(code, 1)
        self.assertIn("commands are not run here", clean(p.out + p.err))


class Pieces(unittest.SynchronousTestCase):
    def test_disabled(self) -> None:
        config = from_mapping({"username": "u", "password": "p", "console": {"enabled": False}})
        self.assertIsNone(console_service(App(config, Clock())))

    def test_authorized_keys_parsing(self) -> None:
        d = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, d, True)
        pub = (keygen(d, "k").with_suffix(".pub")).read_bytes().strip()
        lines = [b"", b"# comment", pub, b'from="10.0.0.1" ' + pub, b"ssh-ed25519 garbage", b"junk"]
        found = list(parse_authorized_keys(lines))
        self.assertEqual(len(found), 1)
        self.assertEqual(list(AuthorizedKeysFile(d / "missing").getAuthorizedKeys(b"x")), [])

    def test_config_view_hides_secrets(self) -> None:
        view = ConfigView(from_mapping({"username": "u", "password": "pw", "web": {"token": "tok"}}))
        self.assertEqual(view.password, "***")
        self.assertEqual(view["web"]["token"], "***")
        self.assertNotIn("tok'", repr(view))

    def test_unknown_stream_is_not_found(self) -> None:
        class Streams:
            def stream_names(self) -> list[str]:
                return ["filter", "extra"]

        config = from_mapping({"username": "u", "password": "p"})
        ns = build_namespace(App(config, Clock(), store=Streams()), lambda d, label: None)
        self.assertEqual(ns["Stream"].get("sample").name, "sample")
        self.assertEqual(ns["Stream"].get("extra").name, "extra")  # known to the store
        with self.assertRaises(NotFound) as cm:
            ns["Stream"].get("nope")
        self.assertEqual(describe_error(cm.exception), "NotFound: unknown stream 'nope'")

    def test_describe_error(self) -> None:
        self.assertEqual(describe_error(ValidationError("track", "too long")),
                         "ValidationError: track: too long")


class PendingStore:
    """A store whose writes fire only when the test says so."""

    def __init__(self) -> None:
        self.pending: list[defer.Deferred] = []

    def params(self, stream: str) -> dict[str, list[str]]:
        return {}

    def set_param(self, stream: str, param: str, values: list[str]) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.pending.append(d)
        return d


class Waiting(unittest.SynchronousTestCase):
    """The prompt waits for a write's result, holding typed keys, at most WAIT_LIMIT."""

    def setUp(self) -> None:
        from twisted.conch.insults import insults
        from twisted.internet.testing import StringTransport

        from flamingo.console import FlamingoManhole

        self.clock = Clock()
        self.store = PendingStore()
        config = from_mapping({"username": "u", "password": "p"})
        app = App(config, self.clock, store=self.store)
        self.proto = insults.ServerProtocol(FlamingoManhole, app, self.clock)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)
        self.proto.terminalProtocol.terminalSize(80, 24)

    def output(self) -> str:
        return clean(self.transport.value())

    def test_waits_then_prints_then_runs_held_keys(self) -> None:
        self.proto.dataReceived(b"Stream.get('filter').params['track'] = ['a']\r6*7\r")
        self.assertNotIn("42", self.output())
        self.store.pending[0].callback({"track": ["a"]})
        out = self.output()
        self.assertIn("filter.track = ['a']", out)
        self.assertLess(out.index("filter.track ="), out.index("42"))

    def test_gives_the_prompt_back_after_the_limit(self) -> None:
        from flamingo.console import WAIT_LIMIT

        self.proto.dataReceived(b"Stream.get('filter').params['track'] = ['a']\r6*7\r")
        self.clock.advance(WAIT_LIMIT)
        self.assertIn("still waiting", self.output())
        self.assertIn("42", self.output())
        self.store.pending[0].errback(ValidationError("track", "too long"))
        self.assertIn("ValidationError: track: too long", self.output())

    def test_ctrl_c_stops_waiting(self) -> None:
        self.proto.dataReceived(b"Stream.get('filter').params['track'] = ['a']\r\x03")
        self.assertIn("still waiting", self.output())
        self.assertEqual(self.clock.getDelayedCalls(), [])
