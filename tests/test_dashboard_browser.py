"""The dashboard in a real browser: Debian's headless Chromium (Selenium over
chromedriver) against the whole daemon in this reactor, fed by the Streaming
API emulator, with the test redis-server.

Selenium calls block, so each browser step runs in a thread
(``deferToThread``) while the reactor goes on serving the page's polls; the
browser waits are Selenium's bounded polls (WebDriverWait), never sleeps.
What the forms changed is then read back over HTTP from the reactor thread.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from treq.client import HTTPClient
from twisted.internet import defer, reactor, threads
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool

from flamingo.domain.subscription import Subscription
from tests.dashboard_support import browser_missing, chrome, start_live
from tests.support.redis import shared_redis
from tests.support.waiting import until

TOKEN = "dash-T0KEN-5521"
WAIT = 30  # seconds; a bound for a loaded CI machine, not an expectation


def hook(name: str) -> str:
    return f'[data-testid="{name}"]'


class BrowserTestCase(unittest.TestCase):
    timeout = 180
    token: str | None = TOKEN

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        reason = browser_missing()
        if reason:
            raise unittest.SkipTest(reason)
        self.live = yield start_live(self, shared_redis(), token=self.token)
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        self.http = HTTPClient(Agent(reactor, pool=pool))
        profile = Path(tempfile.mkdtemp(prefix="flamingo-chromium-"))
        self.addCleanup(shutil.rmtree, profile, True)
        self.driver = yield threads.deferToThread(chrome, profile)
        self.addCleanup(lambda: threads.deferToThread(self.driver.quit))

    def browse(self, step: Callable[..., Any], *args: Any) -> defer.Deferred:
        """Run a blocking Selenium step in a thread; the reactor keeps serving."""
        return threads.deferToThread(step, self.driver, *args)

    @defer.inlineCallbacks
    def api(self, method: str, path: str) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = yield self.http.request(method, self.live.base + path, headers=headers)
        body = yield response.content()
        self.assertEqual(response.code, 200, body)
        return json.loads(body)

    # --- blocking steps (run in a thread) ----------------------------------------

    @staticmethod
    def wait(driver: Any, cond: Callable[[Any], Any], message: str) -> Any:
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(cond, message)

    @staticmethod
    def text(driver: Any, name: str) -> str:
        from selenium.webdriver.common.by import By

        return driver.find_element(By.CSS_SELECTOR, hook(name)).text

    @classmethod
    def open(cls, driver: Any, base: str, token: str | None) -> None:
        driver.get(base + "/dashboard" + (f"?token={token}" if token else ""))
        cls.wait(driver, lambda d: cls.text(d, "wader-state") == "connected",
                 "the wader never showed as connected")

    @staticmethod
    def severe_console_entries(driver: Any) -> list[dict[str, Any]]:
        return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


class LiveTests(BrowserTestCase):
    @defer.inlineCallbacks
    def test_token_rules_console_live_numbers_and_chart(self) -> Any:
        base, token = self.live.base, self.token

        def refused_without_token(driver: Any) -> str:
            driver.get(base + "/dashboard")
            body = driver.find_element("tag name", "body").text
            driver.get(base + "/dashboard?token=wrong")
            return body + driver.find_element("tag name", "body").text

        body = yield self.browse(refused_without_token)
        self.assertEqual(body.count("unauthorized"), 2, body)

        def open_with_token(driver: Any) -> dict[str, Any]:
            driver.get_log("browser")  # drop what the 401 pages logged
            self.open(driver, base, token)
            cookies = {c["name"]: c for c in driver.get_cookies()}
            return {"url": driver.current_url, "cookies": cookies}

        opened = yield self.browse(open_with_token)
        self.assertNotIn(token, opened["url"])  # the page drops ?token= from the address bar
        cookie = opened["cookies"]["flamingo_dashboard"]
        self.assertTrue(cookie["httpOnly"])
        self.assertEqual(cookie["sameSite"], "Strict")
        self.assertNotIn(token, cookie["value"])

        def numbers_move(driver: Any) -> dict[str, Any]:
            driver.execute_script("window.__sameDocument = 1;")
            total = lambda d: int(self.text(d, "events-total") or 0)  # noqa: E731
            self.wait(driver, lambda d: total(d) > 0, "events-total stayed 0")
            first = total(driver)
            self.wait(driver, lambda d: total(d) > first, "events-total did not move")
            self.wait(driver, lambda d: float(self.text(d, "rate-10s")) > 0, "rate-10s stayed 0")
            canvas = driver.find_element("css selector", "canvas" + hook("rate-chart"))
            return {"first": first, "later": total(driver),
                    "same_document": driver.execute_script("return window.__sameDocument;"),
                    "chart": canvas.size, "rate": self.text(driver, "rate-10s"),
                    "request_line": self.text(driver, "request-line"),
                    "severe": self.severe_console_entries(driver)}

        seen = yield self.browse(numbers_move)
        self.assertGreater(seen["later"], seen["first"])
        self.assertEqual(seen["same_document"], 1)  # moved without a reload
        self.assertGreater(seen["chart"]["width"], 100)
        self.assertGreater(seen["chart"]["height"], 50)
        self.assertRegex(seen["rate"], r"^\d+\.\d$")  # the number alone in its hook
        self.assertIn("/1.1/statuses/filter.json", seen["request_line"])
        self.assertEqual(seen["severe"], [])  # no console errors (CSP violations are SEVERE)


class FormTests(BrowserTestCase):
    @defer.inlineCallbacks
    def test_forms_change_the_api_and_422_shows_next_to_the_control(self) -> Any:
        yield self.browse(self.open, self.live.base, self.token)

        def set_track(driver: Any, values: str) -> None:
            from selenium.webdriver.support.ui import Select

            form = driver.find_element("css selector", hook("param-form"))
            Select(form.find_element("name", "key")).select_by_value("track")
            field = form.find_element("name", "values")
            field.clear()
            field.send_keys(values)
            form.find_element("css selector", hook("param-submit")).click()
            self.wait(driver, lambda d: not form.find_element(
                "css selector", hook("param-submit")).get_attribute("disabled") and (
                field.get_attribute("value") == "" or self.text(d, "param-error")),
                "the param form never finished")

        yield self.browse(set_track, "cats,dogs")
        values = yield self.api("GET", "/streams/filter/track.json")
        self.assertEqual(values, ["cats", "dogs"])
        error = yield self.browse(lambda d: self.text(d, "param-error"))
        self.assertEqual(error, "")

        yield self.browse(set_track, "x" * 61)  # a phrase over 60 bytes: 422
        error = yield self.browse(lambda d: self.text(d, "param-error"))
        self.assertIn("track", error)
        self.assertIn("[422]", error)
        values = yield self.api("GET", "/streams/filter/track.json")
        self.assertEqual(values, ["cats", "dogs"])

        def subscribe(driver: Any, name: str) -> str:
            form = driver.find_element("css selector", hook("subscription-form"))
            field = form.find_element("name", "name")
            from selenium.webdriver.common.keys import Keys

            field.clear()
            field.send_keys(name, Keys.ENTER)  # the keyboard alone submits the form
            self.wait(driver, lambda d: self.text(d, "subscription-error") or d.find_elements(
                "css selector", f'{hook("subscriptions")} tr[data-subscription="{name}"]'),
                "the subscription form never finished")
            return self.text(driver, "subscription-error")

        error = yield self.browse(subscribe, "jobs")
        self.assertEqual(error, "")
        subs = yield self.api("GET", "/subscriptions.json")
        self.assertEqual([s["name"] for s in subs], ["jobs"])

        def queue_length(driver: Any) -> str:
            row = f'{hook("subscriptions")} tr[data-subscription="jobs"] {hook("queue-length")}'
            self.wait(driver, lambda d: int(d.find_element("css selector", row).text) > 0,
                      "the jobs queue never filled")
            return driver.find_element("css selector", row).text

        length = yield self.browse(queue_length)
        self.assertGreater(int(length), 0)

        error = yield self.browse(subscribe, "bad name!")
        self.assertIn("[422]", error)
        self.assertIn("name", error)
        subs = yield self.api("GET", "/subscriptions.json")
        self.assertEqual([s["name"] for s in subs], ["jobs"])

        def remove(driver: Any) -> None:
            row = f'{hook("subscriptions")} tr[data-subscription="jobs"]'
            driver.find_element("css selector", row + " button").click()
            self.wait(driver, lambda d: not d.find_elements("css selector", row),
                      "the removed row stayed")

        yield self.browse(remove)
        subs = yield self.api("GET", "/subscriptions.json")
        self.assertEqual(subs, [])

        connections = self.live.app.stats.connections

        def restart(driver: Any) -> list[dict[str, Any]]:
            driver.find_element("css selector", hook("restart-submit")).click()
            return self.severe_console_entries(driver)

        severe = yield self.browse(restart)
        yield until(lambda: any(m == "POST" and p == "/wader/restart.json"
                                for m, p, _, _ in self.live.requests.seen), 30)
        # Every change the page made carried the API's own origin, which the
        # API's guard requires (a foreign Origin gets 403).
        writes = [(m, p, o) for m, p, o, _ in self.live.requests.seen
                  if m in ("POST", "PUT", "DELETE", "PATCH")]
        self.assertGreaterEqual(len(writes), 6, writes)
        self.assertEqual({o for _, _, o in writes}, {self.live.base})
        # The two refused requests show in the console as failed loads; nothing else may.
        unexpected = [e for e in severe if not (e.get("source") == "network"
                                                and "status of 422" in e["message"])]
        self.assertEqual(unexpected, [])
        self.assertEqual(len(severe), 2, severe)
        yield until(lambda: self.live.app.stats.connections > connections, 30)


class OpenDaemonTests(BrowserTestCase):
    """Without ``web.token``: the page opens as it is, and the API calls pass
    the Origin rule (the page's requests are same-origin)."""

    token = None

    @defer.inlineCallbacks
    def test_opens_without_token_and_fits_a_phone(self) -> Any:
        yield self.live.app.store.save_subscription(
            Subscription.create(
                "a-rather-long-subscription-name", format="envelope", types=["tweet", "delete"]))
        yield self.live.app.store.save_subscription(
            Subscription.create("tweets", format="stream", groups=["workers"]))
        yield self.browse(self.open, self.live.base, None)
        cookies = yield self.browse(lambda d: d.get_cookies())
        self.assertEqual(cookies, [])

        def on_a_phone(driver: Any) -> list[int]:
            driver.set_window_size(390, 844)
            self.wait(driver, lambda d: d.find_elements(
                "css selector", 'tr[data-subscription="a-rather-long-subscription-name"]'),
                "the subscription row never showed")
            self.wait(driver, lambda d: d.execute_script("return innerWidth") <= 390,
                      "the window never got narrow")
            widths = ("const e = document.documentElement; return [e.scrollWidth, e.clientWidth];")
            try:  # the chart follows the window a moment later (a ResizeObserver)
                self.wait(driver, lambda d: (lambda w: w[0] <= w[1])(d.execute_script(widths)),
                          "the page stays wider than the phone")
            except Exception:
                pass
            return driver.execute_script(widths)

        scroll_width, client_width = yield self.browse(on_a_phone)
        self.assertLessEqual(scroll_width, client_width)  # no sideways scrolling of the page

        def group_lag(driver: Any) -> str:
            """The consumer-group table: the stream's group, with a lag Redis reported."""
            cell = f'{hook("stream-groups")} tr[data-group="tweets/workers"] [data-field="lag"]'
            self.wait(driver, lambda d: d.find_elements("css selector", cell)
                      and d.find_element("css selector", cell).text.isdigit(),
                      "the consumer group's lag never showed")
            return driver.find_element("css selector", cell).text

        lag = yield self.browse(group_lag)
        self.assertGreaterEqual(int(lag), 0)


class DemoTests(unittest.SynchronousTestCase):
    """What `make run` prints: the dashboard's link with the run's token, and
    that page shows the demo's events moving."""

    def test_make_run_link_opens_a_live_dashboard(self) -> None:
        reason = browser_missing()
        if reason:
            raise unittest.SkipTest(reason)
        d = Path(tempfile.mkdtemp(prefix="flamingo-demo-dash-"))
        self.addCleanup(shutil.rmtree, d, True)
        demo = subprocess.Popen(
            [sys.executable, "-m", "flamingo.demo", "--seconds", "120", "--rate", "20",
             "--dir", str(d / "demo")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "CI": "true"}, cwd=Path(__file__).resolve().parent.parent)
        self.addCleanup(lambda: demo.poll() is not None or demo.kill())
        self.addCleanup(demo.stdout.close)
        out = b""
        selector = selectors.DefaultSelector()
        selector.register(demo.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 60  # a bound for a loaded machine
        link = None
        while link is None and time.monotonic() < deadline and demo.poll() is None:
            if selector.select(timeout=1.0):
                out += os.read(demo.stdout.fileno(), 65536)
                found = re.search(rb"dashboard +(http://127\.0\.0\.1:\d+/dashboard\?token=\S+)", out)
                link = found.group(1).decode() if found else None
        self.assertIsNotNone(link, out.decode(errors="replace"))

        profile = d / "chromium"
        driver = chrome(profile)
        self.addCleanup(driver.quit)
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        # The link is printed as flamingod starts: poll until it answers (bounded).
        WebDriverWait(driver, 60, poll_frequency=0.25, ignored_exceptions=[WebDriverException]) \
            .until(lambda drv: drv.get(link) or drv.find_elements("css selector",
                                                                  hook("wader-state")),
                   "the demo's dashboard never answered")
        BrowserTestCase.wait(driver, lambda drv: BrowserTestCase.text(drv, "wader-state")
                             == "connected", "the demo's wader never showed as connected")

        def total(drv: Any) -> int:
            return int(BrowserTestCase.text(drv, "events-total") or 0)

        BrowserTestCase.wait(driver, lambda drv: total(drv) > 0, "no events on the page")
        first = total(driver)
        BrowserTestCase.wait(driver, lambda drv: total(drv) > first, "the events stood still")
        demo.send_signal(signal.SIGTERM)
        self.assertEqual(demo.wait(timeout=60), 0)
