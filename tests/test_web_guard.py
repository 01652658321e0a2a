"""A browser must not be able to drive the API: the Host and Origin rules
over real HTTP on loopback (IPv4 and IPv6), the bind refusal in config
validation, and the pure rules under Hypothesis."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest

from flamingo.config import ConfigError, from_mapping
from flamingo.web.guard import HostRule, parse_host, same_origin
from tests.support.http import Server
from tests.support.parts import SECRET_PASSWORD, SECRET_TOKEN, make_app, make_config, make_store

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
EVIL = "http://evil.example"
#: The CSRF of the issue: trims another application's resque list on every batch.
CSRF = "/subscriptions.json?name=jobs&format=resque&max_length=1"


class _Collect(protocol.Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(self.data)


@defer.inlineCallbacks
def raw_request(port: int, head: bytes) -> Any:
    """Send exactly these request bytes (a client library would fix the Host)."""
    proto = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), _Collect())
    proto.transport.write(head)
    data = yield proto.done
    status = int(data.split(b" ", 2)[1])
    return status, data


class GuardTestCase(unittest.TestCase):
    timeout = 30
    token: str | None = None
    web: dict[str, Any] = {}

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.config = from_mapping({"username": "u", "password": SECRET_PASSWORD,
                                    "web": {**self.web, **({"token": self.token}
                                                           if self.token else {})}},
                                   environ={})
        self.store = yield make_store(self)
        self.app = make_app(self.config, self.store)
        self.server = Server(self, self.app)
        self.port = self.server.port.getHost().port
        self.own = f"127.0.0.1:{self.port}"

    @defer.inlineCallbacks
    def call(self, method: str, path: str, status: int, headers: dict[str, str] | None = None,
             **kw: Any) -> Any:
        h = dict(headers or {})
        if self.token:
            h.setdefault("Authorization", f"Bearer {self.token}")
        response, body, parsed = yield self.server.request(method, path, headers=h, **kw)
        self.assertEqual(response.code, status, f"{method} {path} {headers}: {body!r}")
        for name, _ in response.headers.getAllRawHeaders():
            self.assertFalse(name.lower().startswith(b"access-control-"), name)  # no CORS
        if status >= 400:
            self.assertLessEqual({"error", "detail"}, set(parsed), parsed)
        return parsed


class OriginTests(GuardTestCase):
    @defer.inlineCallbacks
    def test_foreign_origin_gets_403_on_reads_and_writes(self) -> Any:
        for origin in (EVIL, "null", f"http://127.0.0.1:{self.port + 1}",
                       f"http://localhost:{self.port}", f"http://127.0.0.1:{self.port}/x",
                       f"http://u@127.0.0.1:{self.port}", "garbage"):
            e = yield self.call("GET", "/meta.json", 403, {"Origin": origin})
            self.assertEqual(e["detail"]["origin"], origin)
            yield self.call("POST", CSRF, 403, {"Origin": origin, **FORM})
            yield self.call("PUT", "/streams/filter.json?track=a", 403, {"Origin": origin})
            yield self.call("POST", "/wader/restart.json", 403, {"Origin": origin})
            yield self.call("GET", "/no/such/route", 403, {"Origin": origin})
        yield self.call("OPTIONS", CSRF, 403, {"Origin": EVIL,
                                               "Access-Control-Request-Method": "POST"})
        self.assertEqual(self.store.subscriptions(), {})
        self.assertEqual(self.store.params("filter"), {})
        self.assertEqual(self.app.wader.restarts, 0)

    @defer.inlineCallbacks
    def test_own_origin_and_no_origin_pass(self) -> Any:
        doc = yield self.call("POST", "/subscriptions.json?name=mine", 200,
                              {"Origin": f"http://{self.own}"})
        self.assertEqual(doc["name"], "mine")
        yield self.call("GET", "/meta.json", 200, {"Origin": f"HTTP://{self.own}"})
        # a TLS proxy in front: same host and port, https
        yield self.call("GET", "/meta.json", 200, {"Origin": f"https://{self.own}"})
        yield self.call("GET", "/meta.json", 200, {"Origin": f"http://localhost:{self.port}",
                                                   "Host": f"localhost:{self.port}"})
        yield self.call("GET", "/meta.json", 200)  # curl, the CLI: no Origin
        self.assertEqual(list(self.store.subscriptions()), ["mine"])


class HostTests(GuardTestCase):
    @defer.inlineCallbacks
    def test_foreign_host_gets_421(self) -> Any:
        for host in (f"evil.example:{self.port}", "evil.example", f"127.0.0.1.evil.example:{self.port}",
                     f"evil.example@127.0.0.1:{self.port}", "0.0.0.0", f"10.1.2.3:{self.port}",
                     f"127.0.0.1:{self.port}/x", ""):
            e = yield self.call("GET", "/meta.json", 421, {"Host": host})
            self.assertEqual(e["error"], "misdirected request")
            yield self.call("POST", CSRF, 421, {"Host": host, **FORM})
        self.assertEqual(self.store.subscriptions(), {})

    @defer.inlineCallbacks
    def test_loopback_names_pass(self) -> Any:
        for host in (self.own, f"localhost:{self.port}", "LOCALHOST", f"localhost.:{self.port}",
                     f"127.9.9.9:{self.port}", f"[::1]:{self.port}", "[::ffff:127.0.0.1]"):
            yield self.call("GET", "/meta.json", 200, {"Host": host})

    @defer.inlineCallbacks
    def test_two_host_headers_421_and_no_host_passes(self) -> Any:
        status, body = yield raw_request(self.port, (
            b"GET /meta.json HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n"
            b"Connection: close\r\n\r\n"))
        self.assertEqual(status, 421, body)
        status, body = yield raw_request(self.port, b"GET /meta.json HTTP/1.0\r\n\r\n")
        self.assertEqual(status, 200, body)  # HTTP/1.0 tools; a browser always sends Host


class AllowedHostsTests(GuardTestCase):
    web = {"allowed_hosts": ["Flamingo.Internal", "[fd00::7]"]}

    @defer.inlineCallbacks
    def test_allowed_hosts_extend_loopback(self) -> Any:
        self.assertEqual(self.config.web.allowed_hosts, ("flamingo.internal", "fd00::7"))
        for host in (f"flamingo.internal:{self.port}", "FLAMINGO.INTERNAL", "[fd00::7]:80",
                     self.own):
            yield self.call("GET", "/meta.json", 200, {"Host": host})
        doc = yield self.call("POST", "/subscriptions.json?name=a", 200, {
            "Host": "flamingo.internal:8080", "Origin": "https://flamingo.internal:8080"})
        self.assertEqual(doc["name"], "a")
        yield self.call("GET", "/meta.json", 421, {"Host": "other.internal"})
        # the allowed name's origin is only its own when it is the Host asked for
        yield self.call("GET", "/meta.json", 403, {"Host": self.own,
                                                   "Origin": "http://flamingo.internal"})


class AnyHostTests(GuardTestCase):
    web = {"allowed_hosts": ["*"]}

    @defer.inlineCallbacks
    def test_star_accepts_any_host_but_origin_still_checked(self) -> Any:
        yield self.call("GET", "/meta.json", 200, {"Host": "whatever.example"})
        yield self.call("GET", "/meta.json", 403, {"Host": "whatever.example", "Origin": EVIL})


class TokenOrderTests(GuardTestCase):
    token = SECRET_TOKEN

    @defer.inlineCallbacks
    def test_host_and_origin_before_token_and_the_credential_hook(self) -> Any:
        e = yield self.call("GET", "/meta.json", 421, {"Host": "evil.example",
                                                       "Authorization": ""})
        yield self.call("GET", "/meta.json", 403, {"Origin": EVIL, "Authorization": ""})
        e = yield self.call("GET", "/meta.json", 401, {"Authorization": ""})
        self.assertEqual(e["error"], "unauthorized")
        # one more credential source (what a dashboard session cookie does)
        guard = self.server.site.api.guard
        guard.add_credential(lambda request: request.getCookie(b"session") == b"good")
        yield self.call("GET", "/meta.json", 200, {"Authorization": "", "Cookie": "session=good"})
        yield self.call("GET", "/meta.json", 401, {"Authorization": "", "Cookie": "session=bad"})
        yield self.call("POST", CSRF, 403, {"Authorization": "", "Cookie": "session=good",
                                            "Origin": EVIL, **FORM})
        self.assertEqual(self.store.subscriptions(), {})


class Ipv6LoopbackTests(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_served_on_ipv6_loopback(self) -> Any:
        import treq
        from twisted.web.client import Agent, HTTPConnectionPool
        from twisted.web.http_headers import Headers

        from flamingo.web import make_site

        store = yield make_store(self)
        app = make_app(make_config(), store)
        try:
            port = reactor.listenTCP(0, make_site(app), interface="::1")
        except Exception as e:  # pragma: no cover - a host without IPv6
            raise unittest.SkipTest(f"no IPv6 loopback: {e}") from e
        self.addCleanup(port.stopListening)
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        agent = Agent(reactor, pool=pool)  # sends Host: [::1]:port
        base = f"http://[::1]:{port.getHost().port}"
        response = yield agent.request(b"POST", (base + "/subscriptions.json?name=v6").encode(),
                                       Headers({"Origin": [base]}))
        body = yield treq.content(response)
        self.assertEqual(response.code, 200, body)
        self.assertEqual(json.loads(body)["name"], "v6")
        response = yield agent.request(b"GET", (base + "/meta.json").encode(),
                                       Headers({"Origin": [EVIL]}))
        body = yield treq.content(response)
        self.assertEqual(response.code, 403, body)


class BindTests(unittest.SynchronousTestCase):
    def load(self, web: dict[str, Any], environ: dict[str, str] | None = None) -> Any:
        return from_mapping({"username": "u", "password": "p", "web": web},
                            environ=environ or {})

    def test_beyond_loopback_without_token_refused(self) -> None:
        for host in ("0.0.0.0:4711", "[::]:4711", "192.0.2.7:4711", "flamingo.example:80"):
            with self.assertRaises(ConfigError) as caught:
                self.load({"host": host})
            self.assertEqual(caught.exception.key, "web.token")
            text = str(caught.exception)
            self.assertNotIn("\n", text)
            self.assertTrue(text.startswith("web.token: required"), text)
            self.assertIn("web.allow_unauthenticated", text)

    def test_loopback_token_opt_out_or_disabled_accepted(self) -> None:
        for host in ("127.0.0.1:4711", "[::1]:4711", "localhost:4711", "127.0.0.2:1"):
            self.load({"host": host})
        self.assertEqual(self.load({"host": "0.0.0.0:1", "token": "t"}).web.host, "0.0.0.0")
        self.load({"host": "0.0.0.0:1"}, {"FLAMINGO_WEB_TOKEN": "t"})
        self.load({"host": "0.0.0.0:1", "allow_unauthenticated": True})
        self.load({"host": "0.0.0.0:1", "enabled": False})

    def test_allowed_hosts_validated(self) -> None:
        self.assertEqual(self.load({"allowed_hosts": "a.example, B.example"}).web.allowed_hosts,
                         ("a.example", "b.example"))
        for bad in (["a.example:80"], ["http://a.example"], [""], 5, [["x"]]):
            with self.assertRaises(ConfigError) as caught:
                self.load({"allowed_hosts": bad})
            self.assertEqual(caught.exception.key, "web.allowed_hosts")

    def test_daemon_refuses_to_start(self) -> None:
        """``twistd flamingo -c`` stops with the one line, as on every config error."""
        import tempfile
        from pathlib import Path

        from flamingo.tap import Options

        d = Path(tempfile.mkdtemp(prefix="flamingo-bind-"))
        path = d / "flamingo.yml"
        path.write_text(f"username: u\npassword: p\ndata_dir: {d}\nweb:\n  host: 0.0.0.0:4711\n")
        with self.assertRaises(SystemExit) as caught:
            Options().parseOptions(["-c", str(path)])
        lines = str(caught.exception.code).splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith("flamingo: config error: web.token: required when "
                                            "web.host listens beyond loopback (0.0.0.0)"), lines)


_NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True)
_PORTS = st.integers(1, 65535)


class PureRuleTests(unittest.SynchronousTestCase):
    @given(_NAMES, _PORTS, st.sampled_from(["http", "https"]))
    def test_own_origin_is_same(self, name: str, port: int, scheme: str) -> None:
        self.assertTrue(same_origin(f"{scheme}://{name}:{port}", f"{name}:{port}"))
        self.assertTrue(same_origin(f"{scheme}://{name.upper()}:{port}", f"{name}:{port}"))
        self.assertFalse(same_origin(f"{scheme}://{name}:{port}", f"x{name}:{port}"))
        self.assertFalse(same_origin(f"{scheme}://{name}:{port % 65535 + 1}", f"{name}:{port}"))
        self.assertFalse(same_origin(f"{scheme}://{name}.evil:{port}", f"{name}:{port}"))

    def test_default_ports(self) -> None:
        self.assertTrue(same_origin("http://a.example", "a.example"))
        self.assertTrue(same_origin("http://a.example", "a.example:80"))
        self.assertTrue(same_origin("https://a.example", "a.example:443"))
        self.assertFalse(same_origin("https://a.example", "a.example:80"))
        self.assertTrue(same_origin("http://[::1]:4711", "[::1]:4711"))
        self.assertFalse(same_origin("ftp://a.example", "a.example"))

    @given(_NAMES, st.one_of(st.none(), _PORTS))
    def test_parse_host(self, name: str, port: int | None) -> None:
        text = name if port is None else f"{name}:{port}"
        self.assertEqual(parse_host(text), (name, port))
        self.assertIsNone(parse_host(f"evil@{text}"))
        self.assertIsNone(parse_host(f"{text}/"))
        if name != "localhost":
            self.assertFalse(HostRule(frozenset()).allows(text))
        self.assertTrue(HostRule(frozenset({name})).allows(text))

    def test_parse_host_ipv6_and_junk(self) -> None:
        self.assertEqual(parse_host("[::1]:4711"), ("::1", 4711))
        self.assertEqual(parse_host("[::1]"), ("::1", None))
        for junk in ("::1", "a b", "a:0", "a:65536", "a:", "[::1", ""):
            self.assertIsNone(parse_host(junk), junk)
