"""Secrets in the config: escapes, credentials in api.url, start warnings, private files, the console."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from flamingo.app import App
from flamingo.config import ConfigError, from_mapping, load, redact_url, start_warnings
from flamingo.console import build_namespace, load_or_create_host_key
from flamingo.dispatch.store import Store


class EscapeTests(SynchronousTestCase):
    def test_dollar_dollar_brace_is_a_literal(self) -> None:
        c = from_mapping({"username": "u", "password": "a$${HOME}b${PW}"}, environ={"PW": "x"})
        self.assertEqual(c.password, "a${HOME}bx")

    def test_unset_variable_still_refused(self) -> None:
        with self.assertRaises(ConfigError) as cm:
            from_mapping({"username": "u", "password": "${NOPE}"}, environ={})
        self.assertEqual(cm.exception.key, "password")


class UrlCredentialTests(SynchronousTestCase):
    def test_redact_url(self) -> None:
        self.assertEqual(redact_url("https://u:s3cret@h:1/x"), "https://***@h:1/x")
        self.assertEqual(redact_url("https://h/x@y"), "https://h/x@y")

    def test_credentials_move_out_of_the_url(self) -> None:
        c = from_mapping({"api": {"url": "https://bob:s%40xyzzy@stream.example/x"}}, environ={})
        self.assertEqual((c.username, c.password), ("bob", "s@xyzzy"))
        self.assertEqual(c.api.url, "https://stream.example/x")
        self.assertNotIn("xyzzy", repr(c))
        self.assertNotIn("xyzzy", repr(c.redacted()))

    def test_errors_never_echo_the_password(self) -> None:
        for data in ({"api": {"url": "ftp://bob:s3cret@h"}},
                     {"username": "u", "password": "other", "api": {"url": "https://bob:s3cret@h"}},
                     {"auth": "bearer", "bearer_token": "t", "api": {"url": "https://bob:s3cret@h"}}):
            with self.assertRaises(ConfigError) as cm:
                from_mapping(data, environ={})
            self.assertEqual(cm.exception.key, "api.url")
            self.assertNotIn("s3cret", str(cm.exception))
            self.assertIn("***@", str(cm.exception))


class StartWarningTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()

    def test_basic_over_plain_http_to_another_host(self) -> None:
        c = from_mapping({"username": "u", "password": "p", "api": {"url": "http://stream.example"}}, environ={})
        warned = start_warnings(c)
        self.assertEqual(len(warned), 1)
        self.assertIn("clear text", warned[0])
        self.assertNotIn("p ", warned[0])
        for url in ("http://127.0.0.1:8080", "http://[::1]:8080", "http://localhost", "https://stream.example"):
            c = from_mapping({"username": "u", "password": "p", "api": {"url": url}}, environ={})
            self.assertEqual(start_warnings(c), [], url)
        c = from_mapping({"auth": "bearer", "bearer_token": "t", "api": {"url": "http://h"}}, environ={})
        self.assertEqual(start_warnings(c), [])

    def write(self, text: str, mode: int) -> Path:
        path = self.dir / "flamingo.yml"
        path.write_text(text)
        path.chmod(mode)
        return path

    def test_config_readable_by_others_holding_secrets(self) -> None:
        path = self.write("username: u\npassword: hunter2\nredis: {password: r}\n", 0o644)
        warned = start_warnings(load(path, environ={}, check_dirs=False))
        self.assertEqual(len(warned), 1)
        self.assertIn("password, redis.password", warned[0])
        self.assertNotIn("hunter2", warned[0])
        path.chmod(0o600)
        self.assertEqual(start_warnings(load(path, environ={}, check_dirs=False)), [])

    def test_secrets_from_the_environment_are_fine(self) -> None:
        path = self.write("username: u\npassword: ${PW}\n", 0o644)
        self.assertEqual(start_warnings(load(path, environ={"PW": "x"}, check_dirs=False)), [])
        path = self.write("username: u\n", 0o644)
        self.assertEqual(start_warnings(load(path, environ={"FLAMINGO_PASSWORD": "x"}, check_dirs=False)), [])


class PrivateFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        old = os.umask(0o022)
        self.addCleanup(os.umask, old)

    def test_data_dir_is_created_0700(self) -> None:
        path = self.dir / "flamingo.yml"
        path.write_text(f"username: u\npassword: ${{PW}}\ndata_dir: {self.dir / 'state' / 'flamingo'}\n")
        c = load(path, environ={"PW": "x"})
        self.assertEqual(stat.S_IMODE(c.data_dir.stat().st_mode), 0o700)

    def test_host_key_private(self) -> None:
        key = self.dir / "data" / "console_host_key"
        load_or_create_host_key(key)
        self.assertEqual(stat.S_IMODE(key.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(key.parent.stat().st_mode), 0o700)


class ConsoleSecretTests(SynchronousTestCase):
    """The README says no secret reaches the console unless asked for."""

    def namespace(self) -> dict:
        config = from_mapping({"username": "u", "password": "pw-secret",
                               "redis": {"password": "redis-secret"}, "web": {"token": "web-secret"}},
                              environ={})
        store = Store.from_config(config, reactor=Clock())
        return build_namespace(App(config, Clock(), store=store), lambda d, label: None)

    def test_app_config_and_store_are_redacted(self) -> None:
        ns = self.namespace()
        shown = [ns["app"].config.password, ns["app"].config.redis["password"], ns["config"].password,
                 ns["store"].password, ns["app"].store.password, repr(ns["app"]), repr(ns["app"].config),
                 repr(ns["config"])]
        for value in shown:
            for secret in ("pw-secret", "redis-secret", "web-secret"):
                self.assertNotIn(secret, str(value))
        self.assertEqual(ns["app"].config.password, "***")
        self.assertEqual(ns["store"].password, "***")
        self.assertEqual(ns["app"].store.namespace, "flamingo")  # the rest reads through

    def test_secret_when_asked_by_name(self) -> None:
        ns = self.namespace()
        self.assertEqual(ns["config"].secret("password"), "pw-secret")
        self.assertEqual(ns["app"].config.secret("redis.password"), "redis-secret")
        self.assertRaises(KeyError, ns["config"].secret, "username")


class ServiceWarningTests(SynchronousTestCase):
    def test_start_warnings_are_logged_once(self) -> None:
        from twisted.logger import formatEvent, globalLogPublisher

        from flamingo.service import FlamingoService

        d = Path(self.mktemp())
        d.mkdir()
        config = from_mapping({"username": "u", "password": "pw-secret", "data_dir": str(d),
                               "api": {"url": "http://stream.example"}, "console": False,
                               "web": {"enabled": False}}, environ={})
        events: list = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        service = FlamingoService(config, reactor=Clock())
        service._announce()
        self.addCleanup(service.logs.stop)
        service._announce()  # privilegedStartService then startService: still one line
        warned = [formatEvent(e) for e in events if e.get("log_namespace") == "flamingo.service"
                  and e["log_level"].name == "warn"]
        self.assertEqual(len(warned), 1, warned)
        self.assertIn("clear text", warned[0])
        self.assertNotIn("pw-secret", warned[0])
