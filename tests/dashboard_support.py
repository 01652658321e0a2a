"""The dashboard's real surroundings for the browser tests and ``make screenshot``:
the whole daemon (FlamingoService) in this reactor against the Streaming API
emulator and a real redis-server, and Debian's headless Chromium through
chromedriver (Selenium). Not a test module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.web.resource import Resource

from tests.support.daemon import start_daemon

__all__ = ["CHROMIUM", "CHROMEDRIVER", "FLAGS", "browser_missing", "chrome", "Live", "start_live",
           "RequestLog"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run")


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).is_file():
            return (f"{path} not found: install Debian's {package} "
                    "(`make install` does it when run as root)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (pip install -e '.[test]')"
    return None


def chrome(profile: Path, width: int = 1280, height: int = 1600, dark: bool = False) -> Any:
    """A headless Chromium with a fresh profile; its console is readable (``get_log``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    if dark:
        options.add_argument("--force-dark-mode")
        options.add_argument("--blink-settings=preferredColorScheme=0")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


class RequestLog(Resource):
    """In front of the API (and its guard): records each request's method, path,
    Origin and Host, so a test can see what the page sent."""

    isLeaf = True

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[tuple[str, str, str | None, str | None]] = []

    def render(self, request: Any) -> Any:
        origin = request.getHeader(b"origin")
        host = request.getHeader(b"host")
        self.seen.append((request.method.decode(), request.path.decode(),
                          origin.decode() if origin else None, host.decode() if host else None))
        return self.inner.render(request)


class Live:
    """A running daemon: ``base`` URL, ``token``, ``daemon`` (FlamingoService), ``emulator``."""

    def __init__(self, daemon: Any, base: str, token: str | None, emulator: Any, ns: str,
                 requests: RequestLog) -> None:
        self.daemon = daemon
        self.requests = requests
        self.base = base
        self.token = token
        self.emulator = emulator
        self.namespace = ns

    @property
    def app(self) -> Any:
        return self.daemon.app


@defer.inlineCallbacks
def start_live(owner: Any, redis: Any, *, token: str | None, rate: float = 20.0,
               track: tuple[str, ...] = ("austin", "cheaptweet", "etsy")) -> Any:
    """Start the daemon and its emulator on ``redis``; ``owner.addCleanup`` stops them."""
    live = yield start_daemon(owner, password="pw-dashboard", token=token, rate=rate,
                              size="realistic", track=track, prefix="dash", redis=redis)
    site = live.service.getServiceNamed("web").factory
    requests = RequestLog(site.resource)
    site.resource = requests
    return Live(live.service, live.url, token, live.emulator, live.namespace, requests)
