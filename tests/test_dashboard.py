"""The dashboard through the real API resource (StubTreq, no browser): the page, its files and its
snapshot; the token rules (401, ``?token=`` sets an HttpOnly SameSite=Strict
cookie that then authenticates API calls); the CSP that forbids inline
scripts; the 1 s poll logged at DEBUG. The browser tests are test_dashboard_browser.py."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie
from pathlib import Path

from twisted.internet import defer, task
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial import unittest

from flamingo import logs
from flamingo.dispatch.stats import Stats
from flamingo.domain.subscription import Subscription
from flamingo.web import dashboard
from tests.support.parts import SECRET_TOKEN
from tests.test_web_api import ApiTestCase

STATIC = Path(dashboard.__file__).with_name("static")


def cookie_header(response) -> SimpleCookie:
    jar = SimpleCookie()
    for raw in response.headers.getRawHeaders("set-cookie", []):
        jar.load(raw)
    return jar


class PageTests(ApiTestCase):
    """``web.token`` unset: the page and its files are open, like the API."""

    @defer.inlineCallbacks
    def test_page_files_and_csp(self):
        response, body, _ = yield self.call("GET", "/dashboard")
        headers = response.headers
        self.assertTrue(headers.getRawHeaders("content-type")[0].startswith("text/html"))
        csp = headers.getRawHeaders("content-security-policy")[0]
        self.assertIn("script-src 'self'", csp)
        self.assertNotIn("unsafe-inline", csp)
        self.assertNotIn("unsafe-eval", csp)
        self.assertEqual(headers.getRawHeaders("referrer-policy"), ["no-referrer"])
        self.assertEqual(cookie_header(response), SimpleCookie())  # no token, no cookie
        html = body.decode()
        for hook in ("wader-state", "events-total", "rate-10s", "subscriptions", "param-form",
                     "subscription-form"):
            self.assertIn(f'data-testid="{hook}"', html)
        # Every script is a file; no inline handler or style attribute.
        scripts = re.findall(r"<script\b[^>]*>", html)
        self.assertTrue(scripts)
        self.assertTrue(all(" src=" in s for s in scripts), scripts)
        self.assertIsNone(re.search(r"\son[a-z]+=", html))
        self.assertNotIn(" style=", html)
        self.assertNotIn("<style", html)
        for src in re.findall(r'(?:src|href)="(/dashboard/static/[^"]+)"', html):
            response, body, _ = yield self.call("GET", src)
            self.assertTrue(body)
            self.assertIn("script-src 'self'",
                          response.headers.getRawHeaders("content-security-policy")[0])
        response, body, _ = yield self.call("GET", "/dashboard/static/vendor/uplot/LICENSE")
        self.assertIn(b"MIT License", body)
        response, _, _ = yield self.call("GET", "/dashboard/static/dashboard.js")
        self.assertTrue(response.headers.getRawHeaders("content-type")[0].startswith(
            "text/javascript"))

    @defer.inlineCallbacks
    def test_static_files_stay_in_their_folder(self):
        for bad in ("/dashboard/static/../api.py", "/dashboard/static/%2e%2e/api.py",
                    "/dashboard/static/..%2fapi.py", "/dashboard/static/nope.js",
                    "/dashboard/static/vendor", "/dashboard/static/dashboard.html"):
            _, body, _ = yield self.call("GET", bad, 404)
            self.assertNotIn(b"import", body)

    @defer.inlineCallbacks
    def test_snapshot(self):
        yield self.store.save_subscription(Subscription.create("q1", format="envelope"))
        yield self.store.save_subscription(Subscription.create("fresh"))
        yield self.call("PUT", "/streams/filter/track.json?values=cats,dogs")
        _, _, doc = yield self.call("GET", "/dashboard/data.json")
        self.assertEqual(doc["wader"]["name"], "connected")
        self.assertEqual(doc["stream"], {"name": "filter", "params": {"track": ["cats", "dogs"]},
                                         "keys": ["track", "follow", "locations"]})
        self.assertEqual(doc["events"]["total"], 43)
        self.assertIn("events_per_sec", doc["rates"]["10s"])
        self.assertEqual(len(doc["history"]), 300)
        self.assertEqual(doc["limit"]["skipped"], 7)
        self.assertEqual(doc["backlog"], 5)
        self.assertEqual(doc["journal"]["segments"], 1)
        subs = {s["name"]: s for s in doc["subscriptions"]}
        self.assertEqual(subs["q1"]["queue"], f"{self.store.namespace}:queue:q1")
        self.assertEqual(subs["q1"]["format"], "envelope")
        self.assertEqual((subs["q1"]["length"], subs["q1"]["trimmed"]), (12, 4))
        self.assertEqual((subs["fresh"]["length"], subs["fresh"]["trimmed"]), (None, 0))

    @defer.inlineCallbacks
    def test_poll_is_logged_at_debug(self):
        seen = []

        def observe(event):
            if event.get("log_namespace") == "flamingo.web" and "path" in event:
                seen.append((event["path"], event["log_level"]))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        self.addCleanup(logs.set_level, logs.current_level())
        logs.set_level("INFO")  # the default: the poll's line is not written at all
        yield self.call("GET", "/dashboard/data.json")
        yield self.call("GET", "/status.json")
        self.assertEqual(seen, [("/status.json", LogLevel.info)])
        logs.set_level("DEBUG")
        yield self.call("GET", "/dashboard/data.json")
        self.assertEqual(seen[1:], [("/dashboard/data.json", LogLevel.debug)])


class TokenTests(ApiTestCase):
    token = SECRET_TOKEN

    @defer.inlineCallbacks
    def test_401_without_token_or_cookie(self):
        for path in ("/dashboard", "/dashboard?token=wrong", "/dashboard/data.json",
                     "/dashboard/static/dashboard.js", f"/status.json?token={SECRET_TOKEN}",
                     f"/dashboard/data.json?token={SECRET_TOKEN}"):
            response, _, _ = yield self.call("GET", path, 401, token=None)
            self.assertEqual(cookie_header(response), SimpleCookie(), path)
        bad = {"Cookie": f"{dashboard.COOKIE.decode()}=" + "0" * 64}
        yield self.call("GET", "/dashboard/data.json", 401, token=None, headers=bad)
        yield self.call("GET", "/dashboard", 401, token=None,
                        headers={"Cookie": f"{dashboard.COOKIE.decode()}={SECRET_TOKEN}"})

    @defer.inlineCallbacks
    def test_token_in_url_sets_a_cookie_that_authenticates_the_api(self):
        response, body, _ = yield self.call("GET", f"/dashboard?token={SECRET_TOKEN}", token=None)
        self.assertIn(b'data-testid="events-total"', body)
        raw = response.headers.getRawHeaders("set-cookie")
        self.assertEqual(len(raw), 1)
        self.assertIn("HttpOnly", raw[0])
        self.assertIn("samesite=strict", raw[0].lower())
        self.assertIn("Path=/", raw[0])
        self.assertNotIn(SECRET_TOKEN, raw[0])  # the cookie is an HMAC, not the token
        value = cookie_header(response)[dashboard.COOKIE.decode()].value
        jar = {"Cookie": f"{dashboard.COOKIE.decode()}={value}"}
        # The cookie alone now opens the page, the snapshot and the API, reads and writes.
        yield self.call("GET", "/dashboard", token=None, headers=jar)
        _, _, doc = yield self.call("GET", "/dashboard/data.json", token=None, headers=jar)
        self.assertEqual(doc["stream"]["name"], "filter")
        yield self.call("POST", "/subscriptions.json?name=viacookie", token=None, headers=jar)
        _, _, subs = yield self.call("GET", "/subscriptions.json", token=None, headers=jar)
        self.assertEqual([s["name"] for s in subs], ["viacookie"])
        # The Bearer header still works on its own.
        yield self.call("GET", "/dashboard/data.json")


    @defer.inlineCallbacks
    def test_the_cookie_passes_only_with_the_apis_own_origin(self):
        response, _, _ = yield self.call("GET", f"/dashboard?token={SECRET_TOKEN}", token=None)
        value = cookie_header(response)[dashboard.COOKIE.decode()].value
        jar = {"Cookie": f"{dashboard.COOKIE.decode()}={value}"}
        own = {**jar, "Origin": self.server.url}  # what the page's fetch sends with a POST
        foreign = {**jar, "Origin": "http://evil.example"}
        yield self.call("POST", "/subscriptions.json?name=mine", token=None, headers=own)
        yield self.call("POST", "/subscriptions.json?name=theirs", 403, token=None, headers=foreign)
        yield self.call("GET", "/dashboard/data.json", 403, token=None, headers=foreign)
        yield self.call("GET", f"/dashboard?token={SECRET_TOKEN}", 403, token=None,
                        headers={"Origin": "http://evil.example"})
        _, _, subs = yield self.call("GET", "/subscriptions.json")
        self.assertEqual([s["name"] for s in subs], ["mine"])


class PerSecondTests(unittest.SynchronousTestCase):
    def test_history_of_whole_seconds(self):
        clock = task.Clock()
        clock.advance(1000)
        stats = Stats(clock=clock)
        stats.events({"tweet": 3}, 3, 30)
        clock.advance(1)
        stats.events({"tweet": 5}, 5, 50)
        clock.advance(0.5)
        stats.events({"tweet": 7}, 7, 70)  # second 1001, still partial
        self.assertEqual(stats.per_second(3), [(998, 0), (999, 0), (1000, 3)])
        clock.advance(1)
        self.assertEqual(stats.per_second(2), [(1000, 3), (1001, 12)])
        clock.advance(400)  # everything aged out of the ring
        history = stats.per_second(300)
        self.assertEqual(len(history), 300)
        self.assertEqual(sum(n for _, n in history), 0)
        self.assertEqual(history[-1][0], 1401)


class DemoLinkTests(unittest.SynchronousTestCase):
    def test_dashboard_url(self):
        from flamingo.demo import dashboard_url

        self.assertEqual(dashboard_url(4711, None), "http://127.0.0.1:4711/dashboard")
        self.assertEqual(dashboard_url(4711, "a+b/c"),
                         "http://127.0.0.1:4711/dashboard?token=a%2Bb%2Fc")
