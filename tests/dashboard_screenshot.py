"""``make screenshot``: regenerate docs/dashboard.png from a real run.

The whole daemon against the emulator and a private redis-server (as in the
browser tests), a few subscriptions, about a minute of events, then headless
Chromium photographs the page. ``python -m tests.dashboard_screenshot OUT.png [--seconds N]``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, task, threads

from flamingo._redis_server import RedisServer
from tests.dashboard_support import browser_missing, chrome, start_live

TOKEN = "screenshot-token"


class Owner:
    """What start_live needs of a test case: cleanups, run last-in first-out."""

    def __init__(self) -> None:
        self.cleanups: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def addCleanup(self, f: Callable[..., Any], *args: Any) -> None:  # noqa: N802 (trial's name)
        self.cleanups.append((f, args))

    @defer.inlineCallbacks
    def close(self) -> Any:
        while self.cleanups:
            f, args = self.cleanups.pop()
            try:
                yield defer.maybeDeferred(f, *args)
            except Exception as e:  # cleanup goes on
                print(f"cleanup: {e}", file=sys.stderr)


def photograph(driver: Any, url: str, out: Path, width: int = 1280) -> None:
    driver.get(url)
    driver.set_window_size(width, 900)
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(lambda d: d.find_element(
        "css selector", '[data-testid="wader-state"]').text == "connected")
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(
        "css selector", '[data-testid="subscriptions"] tr[data-subscription]'))
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, int(height) + 160)  # + the window's own frame
    WebDriverWait(driver, 10).until(lambda d: d.find_element(
        "css selector", 'canvas[data-testid="rate-chart"]').size["width"] > width * 0.6)
    driver.execute_script("document.activeElement && document.activeElement.blur()")
    out.write_bytes(driver.get_screenshot_as_png())


@defer.inlineCallbacks
def shoot(out: Path, seconds: float, dark: bool = False, width: int = 1280) -> Any:
    owner = Owner()
    base = Path(tempfile.mkdtemp(prefix="flamingo-shot-"))
    owner.addCleanup(shutil.rmtree, base, True)
    try:
        redis = RedisServer(directory=base / "redis").start()
        owner.addCleanup(redis.stop)
        live = yield start_live(owner, redis, token=TOKEN, rate=25.0)
        store = live.app.store
        from flamingo.domain.subscription import Subscription

        yield store.save_subscription(Subscription.create("example"))
        yield store.save_subscription(Subscription.create("jobs", format="resque",
                                                          types=["tweet"], max_length=500))
        yield store.save_subscription(Subscription.create("deletes", types=["delete"]))
        print(f"dashboard at {live.base}/dashboard?token={TOKEN}; collecting {seconds:g} s of events")
        yield task.deferLater(reactor, seconds, lambda: None)
        driver = yield threads.deferToThread(chrome, base / "chromium", 1280, 900, dark)
        owner.addCleanup(threads.deferToThread, driver.quit)
        yield threads.deferToThread(photograph, driver, f"{live.base}/dashboard?token={TOKEN}", out, width)
        print(f"wrote {out}")
    finally:
        yield owner.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="docs/dashboard.png")
    parser.add_argument("--seconds", type=float, default=60.0, help="events to collect first")
    parser.add_argument("--dark", action="store_true", help="the dark colour scheme")
    parser.add_argument("--width", type=int, default=1280, help="window width (390: a phone)")
    args = parser.parse_args(argv)
    reason = browser_missing()
    if reason:
        print(f"cannot take the screenshot: {reason}", file=sys.stderr)
        return 1
    result: dict[str, Any] = {"code": 0}

    def done(outcome: Any) -> None:
        if isinstance(outcome, Exception) or hasattr(outcome, "getTraceback"):
            print(outcome.getTraceback() if hasattr(outcome, "getTraceback") else outcome,
                  file=sys.stderr)
            result["code"] = 1
        reactor.stop()

    reactor.callWhenRunning(lambda: shoot(Path(args.out).resolve(), args.seconds, args.dark, args.width).addBoth(done))
    reactor.run()
    return result["code"]


if __name__ == "__main__":
    sys.exit(main())
