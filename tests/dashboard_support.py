"""The dashboard's real surroundings for the browser tests and ``make screenshot``:
the whole daemon (FlamingoService) in this reactor against the Streaming API
emulator and a real redis-server, and Debian's headless Chromium through
chromedriver (Selenium). Not a test module."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.web.resource import Resource

from flamingo.config import from_mapping
from tests.support.redis import free_port
from tests.support.waiting import until

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
    """Start the daemon and its emulator; ``owner.addCleanup`` stops them."""
    from flamingo.service import FlamingoService
    from tests.support.emulator import start_emulator

    d = Path(tempfile.mkdtemp(prefix="flamingo-dash-"))
    owner.addCleanup(shutil.rmtree, d, True)
    emu = start_emulator(owner, rate=rate, size="realistic", user="u", password="pw-dashboard")
    ns = "dash" + uuid.uuid4().hex[:8]
    if track:
        redis.command("SADD", f"{ns}:streams:filter:track", *track)
    port = free_port()
    web: dict[str, Any] = {"host": f"127.0.0.1:{port}"}
    if token:
        web["token"] = token
    config = from_mapping({
        "username": "u", "password": "pw-dashboard", "stream": "filter",
        "api": {"url": emu.url}, "data_dir": str(d),
        "redis": {"host": redis.address, "namespace": ns},
        "web": web,
        "wader": {"debounce": 0.05, "min_interval": 0, "gzip": False},
        "console": {"enabled": False},
    }, environ={})
    daemon = FlamingoService(config, reactor, install_signals=False)
    daemon.startService()
    owner.addCleanup(daemon.stopService)
    yield daemon.ready
    service = daemon.getServiceNamed("web")
    yield until(lambda: getattr(service, "_waitingForPort", None) is not None
                and service._waitingForPort.called, 30)
    site = service.factory
    requests = RequestLog(site.resource)
    site.resource = requests
    return Live(daemon, f"http://127.0.0.1:{port}", token, emu, ns, requests)
