"""Config validation: every kind of mistake gives one line naming the key."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from flamingo.config import ConfigError, find_config_file, from_mapping, load

BASIC = {"username": "u", "password": "p"}


class ValidationTests(SynchronousTestCase):
    def error(self, data: Any, environ: dict[str, str] | None = None, **kw: Any) -> ConfigError:
        with self.assertRaises(ConfigError) as cm:
            from_mapping(data, environ=environ or {}, **kw)
        msg = str(cm.exception)
        self.assertEqual(len(msg.splitlines()), 1, msg)
        return cm.exception

    def test_defaults(self) -> None:
        c = from_mapping(BASIC, environ={})
        self.assertEqual(c.stream, "filter")
        self.assertEqual(c.api.url, "https://stream.twitter.com")
        self.assertEqual(c.wader.max_message_bytes, 1024 * 1024)
        self.assertEqual(c.wader.backoff.rate_limit.cap, 960.0)
        self.assertEqual((c.redis.host, c.redis.port), ("127.0.0.1", 6379))

    def test_original_example_keys_accepted(self) -> None:
        c = from_mapping({**BASIC, "stream": "filter",
                          "logging": {"dest": "/tmp/flamingo.log", "level": "DEBUG",
                                      "event": {"dir": "/tmp/flamingo_events", "size": 100000}},
                          "redis": {"host": "0.0.0.0:6379", "namespace": "flamingo"},
                          "web": {"host": "0.0.0.0:4711", "token": "t"}}, environ={})
        self.assertEqual((c.web.host, c.web.port), ("0.0.0.0", 4711))
        self.assertEqual(c.logging.level, "DEBUG")

    def test_unknown_top_key(self) -> None:
        e = self.error({**BASIC, "colour": "pink"})
        self.assertEqual(e.key, "colour")
        self.assertIn("unknown key", str(e))

    def test_unknown_nested_key(self) -> None:
        e = self.error({**BASIC, "wader": {"backoff": {"http": {"intial": 3}}}})
        self.assertEqual(e.key, "wader.backoff.http.intial")

    def test_wrong_types(self) -> None:
        cases = [
            ({"logging": {"event": {"size": "lots"}}}, "logging.event.size", "integer"),
            ({"wader": {"stall_timeout": "soon"}}, "wader.stall_timeout", "number"),
            ({"wader": {"gzip": "yes"}}, "wader.gzip", "true or false"),
            ({"redis": "localhost"}, "redis", "mapping"),
            ({"username": ["a"]}, "username", "string"),
        ]
        for extra, key, words in cases:
            e = self.error({**BASIC, **extra})
            self.assertEqual(e.key, key)
            self.assertIn(words, str(e))

    def test_bad_choices(self) -> None:
        self.assertEqual(self.error({**BASIC, "stream": "rivers"}).key, "stream")
        self.assertEqual(self.error({**BASIC, "auth": "kerberos"}).key, "auth")
        self.assertEqual(self.error({**BASIC, "logging": {"level": "LOUD"}}).key, "logging.level")

    def test_level_names(self) -> None:
        for name, norm in (("debug", "DEBUG"), ("warning", "WARN"), ("Fatal", "FATAL")):
            c = from_mapping({**BASIC, "logging": {"level": name}}, environ={})
            self.assertEqual(c.logging.level, norm)

    def test_bad_host_port(self) -> None:
        for bad in ("local host:1", "host:99999", "host:port", ":::"):
            e = self.error({**BASIC, "redis": {"host": bad}})
            self.assertEqual(e.key, "redis.host")
        self.assertEqual(self.error({**BASIC, "web": {"host": "a:b:c"}}).key, "web.host")
        c = from_mapping({**BASIC, "web": {"host": "[::1]:8000"}, "redis": {"host": "redis"}},
                         environ={})
        self.assertEqual((c.web.host, c.web.port, c.redis.port), ("::1", 8000, 6379))

    def test_bad_url(self) -> None:
        self.assertEqual(self.error({**BASIC, "api": {"url": "ftp://x"}}).key, "api.url")

    def test_out_of_range(self) -> None:
        self.assertEqual(self.error({**BASIC, "wader": {"max_message_bytes": 10}}).key,
                         "wader.max_message_bytes")
        e = self.error({**BASIC, "wader": {"backoff": {"rate_limit": {"cap": 10}}}})
        self.assertEqual(e.key, "wader.backoff.rate_limit.cap")

    def test_missing_credentials_per_auth(self) -> None:
        self.assertEqual(self.error({"password": "p"}).key, "username")
        self.assertEqual(self.error({"username": "u"}).key, "password")
        e = self.error({"auth": "oauth1", "oauth": {"consumer_key": "k", "consumer_secret": "s",
                                                    "token": "t"}})
        self.assertEqual(e.key, "oauth.token_secret")
        self.assertEqual(self.error({"auth": "oauth1"}).key, "oauth.consumer_key")
        self.assertEqual(self.error({"auth": "bearer"}).key, "bearer_token")

    def test_secrets_from_environment(self) -> None:
        c = from_mapping({"username": "u", "password": "${MY_PW}"}, environ={"MY_PW": "s3cret"})
        self.assertEqual(c.password, "s3cret")
        c = from_mapping({"auth": "bearer"}, environ={"FLAMINGO_BEARER_TOKEN": "tok"})
        self.assertEqual(c.bearer_token, "tok")
        e = self.error({"username": "u", "password": "${NOT_SET_ANYWHERE}"})
        self.assertEqual(e.key, "password")
        self.assertIn("NOT_SET_ANYWHERE", str(e))

    def test_secrets_absent_from_redacted(self) -> None:
        c = from_mapping({"username": "u", "password": "pw-1", "auth": "oauth1",
                          "oauth": {"consumer_key": "ck", "consumer_secret": "cs-2",
                                    "token": "tk-3", "token_secret": "ts-4"},
                          "bearer_token": "bt-5", "web": {"token": "wt-6"},
                          "redis": {"password": "rp-7"}}, environ={})
        text = repr(c.redacted()) + repr(c)
        for secret in ("pw-1", "cs-2", "tk-3", "ts-4", "bt-5", "wt-6", "rp-7"):
            self.assertNotIn(secret, text)
        self.assertEqual(c.redacted()["password"], "***")
        self.assertEqual(c.redacted()["username"], "u")

    def test_not_a_mapping(self) -> None:
        self.error(["a", "b"])
        # A file that is not YAML mappings (say /etc/passwd) is cut, not echoed whole.
        e = self.error("root:x:0:0:root:/root:/bin/bash " * 40)
        self.assertLess(len(str(e)), 160)

    def test_secret_of_wrong_type_not_echoed(self) -> None:
        e = self.error({"username": "u", "password": ["pw-1"]})
        self.assertEqual(e.key, "password")
        self.assertNotIn("pw-1", str(e))
        e = self.error({"username": "u", "password": "p", "web": {"token": {"a": "wt-6"}}})
        self.assertNotIn("wt-6", str(e))


class FileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="flamingo-config-"))

    def write(self, text: str) -> Path:
        p = self.dir / "flamingo.yml"
        p.write_text(text)
        return p

    def test_invalid_yaml_one_line(self) -> None:
        with self.assertRaises(ConfigError) as cm:
            load(self.write("username: [unclosed\n"))
        self.assertIn("invalid YAML at line", str(cm.exception))
        self.assertEqual(len(str(cm.exception).splitlines()), 1)

    def test_unwritable_directory(self) -> None:
        if os.geteuid() == 0:
            blocker = self.dir / "file"
            blocker.write_text("x")  # a file where a directory should be: fails even as root
            target = blocker / "sub"
        else:
            ro = self.dir / "ro"
            ro.mkdir(mode=0o500)
            target = ro / "sub"
        p = self.write(f"username: u\npassword: p\ndata_dir: {self.dir}\n"
                       f"logging: {{event: {{dir: {target}}}}}\n")
        with self.assertRaises(ConfigError) as cm:
            load(p)
        self.assertEqual(cm.exception.key, "logging.event.dir")

    def test_source_recorded_and_dirs_created(self) -> None:
        p = self.write(f"username: u\npassword: p\ndata_dir: {self.dir / 'data'}\n")
        c = load(p)
        self.assertEqual(c.file, p.resolve())
        self.assertTrue((self.dir / "data").is_dir())

    def test_find_order(self) -> None:
        old_cwd, old_home = os.getcwd(), os.environ.get("HOME")
        home = self.dir / "home"
        home.mkdir()
        work = self.dir / "work"
        work.mkdir()
        try:
            os.chdir(work)
            os.environ["HOME"] = str(home)
            with self.assertRaises(ConfigError):
                find_config_file(None)
            (home / "flamingo.yml").write_text("{}")
            self.assertEqual(find_config_file(None), home / "flamingo.yml")
            (work / "flamingo.yml").write_text("{}")
            self.assertEqual(find_config_file(None).resolve(), (work / "flamingo.yml").resolve())
            self.assertEqual(find_config_file(str(home / "flamingo.yml")), home / "flamingo.yml")
        finally:
            os.chdir(old_cwd)
            if old_home is None:
                os.environ.pop("HOME", None)
            else:
                os.environ["HOME"] = old_home


class ExampleFileTests(SynchronousTestCase):
    """etc/flamingo.yml and docs/configuration.md keep up with the Config class."""

    root = Path(__file__).resolve().parent.parent

    def keys(self) -> list[str]:
        import attrs

        from flamingo.config import Config

        out: list[str] = []

        def walk(cls: Any, prefix: str) -> None:
            for a in attrs.fields(cls):
                if a.name in ("file", "file_secrets"):  # where it came from, not keys
                    continue
                key = f"{prefix}{a.name}"
                if attrs.has(a.type if isinstance(a.type, type) else type(a.default)) \
                        and a.name not in ("network", "http", "rate_limit"):
                    walk(type(a.default), key + ".")
                else:
                    out.append(key)

        walk(Config, "")
        return out

    def test_example_loads(self) -> None:
        c = load(self.root / "etc" / "flamingo.yml", environ={}, check_dirs=False)
        self.assertEqual(c.stream, "filter")

    def test_every_key_in_example_and_docs(self) -> None:
        import yaml

        data = yaml.safe_load((self.root / "etc" / "flamingo.yml").read_text())
        docs = (self.root / "docs" / "configuration.md").read_text()
        keys = self.keys()
        self.assertIn("wader.backoff.rate_limit", keys)
        self.assertIn("logging.event.max_age", keys)
        for key in keys:
            if key in ("redis.port", "web.port"):  # written as host:port
                continue
            node: Any = data
            for part in key.split("."):
                self.assertIn(part, node, f"{key} missing from etc/flamingo.yml")
                node = node[part]
            self.assertIn(f"`{key}`", docs, f"{key} missing from docs/configuration.md")

    def test_demo_config_loads(self) -> None:
        import yaml

        data = yaml.safe_load((self.root / "flamingo" / "demo.yml").read_text())
        c = from_mapping(data, environ={"DEMO_API_URL": "http://127.0.0.1:1", "DEMO_DIR": "/tmp/d",
                                        "DEMO_REDIS_PORT": "6390", "DEMO_WEB_PORT": "4790"})
        self.assertEqual((c.redis.port, c.web.port), (6390, 4790))
