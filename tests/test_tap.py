"""tap Options/makeService, the service's wiring and signals, logs."""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import task
from twisted.logger import LogLevel, LogPublisher
from twisted.trial.unittest import SynchronousTestCase

from flamingo import logs
from flamingo.config import LoggingConfig, from_mapping
from flamingo.dispatch.dispatcher import DeliveryService
from flamingo.dispatch.stats import Stats
from flamingo.dispatch.store import Store
from flamingo.service import FlamingoService
from flamingo.tap import Options, makeService


def write(directory: Path, text: str) -> Path:
    p = directory / "flamingo.yml"
    p.write_text(text)
    return p


class OptionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="flamingo-tap-"))

    def test_config_loaded_while_parsing(self) -> None:
        p = write(self.dir, f"username: u\npassword: p\ndata_dir: {self.dir}\nstream: sample\n")
        o = Options()
        o.parseOptions(["-c", str(p)])
        self.assertEqual(o.config_obj.stream, "sample")
        self.assertEqual(o.config_obj.file, p.resolve())

    def test_bad_config_is_one_line_system_exit(self) -> None:
        p = write(self.dir, "username: u\npassword: p\nstream: rivers\n")
        with self.assertRaises(SystemExit) as cm:
            Options().parseOptions(["--config", str(p)])
        self.assertEqual(str(cm.exception.code).splitlines(),
                         ["flamingo: config error: stream: must be one of filter, sample, "
                          "firehose for source: twitter, got 'rivers'"])

    def test_pidfile_from_config_unless_given(self) -> None:
        from twisted.scripts.twistd import ServerOptions

        p = write(self.dir, f"username: u\npassword: p\ndata_dir: {self.dir}\n"
                            f"pidfile: {self.dir / 'f.pid'}\n")
        so = ServerOptions()
        so.parseOptions(["flamingo", "-c", str(p)])
        self.assertEqual(so["pidfile"], str(self.dir / "f.pid"))
        so = ServerOptions()
        so.parseOptions(["--pidfile", "other.pid", "flamingo", "-c", str(p)])
        self.assertEqual(so["pidfile"], str(Path("other.pid").resolve()))

    def test_make_service(self) -> None:
        p = write(self.dir, f"username: u\npassword: p\ndata_dir: {self.dir}\n"
                            "console: false\nweb: {enabled: false}\n")
        o = Options()
        o.parseOptions(["-c", str(p)])
        s = makeService(o)
        self.assertIsInstance(s, FlamingoService)
        self.assertEqual([c.name for c in s], ["store", "delivery", "wader"])
        self.assertIs(s.app.wader, s.getServiceNamed("wader"))
        self.assertIsInstance(s.app.store, Store)
        self.assertIsInstance(s.app.stats, Stats)
        self.assertIsInstance(s.app.delivery, DeliveryService)
        self.assertIn("store", s.app.stats.snapshot())  # the store's restores are in stats/meta


class ServiceSignalTests(SynchronousTestCase):
    def test_signal_actions(self) -> None:
        d = Path(tempfile.mkdtemp(prefix="flamingo-svc-"))
        config = from_mapping({"username": "u", "password": "p", "data_dir": str(d),
                               "console": False, "web": {"enabled": False},
                               "logging": {"dest": str(d / "f.log")}}, environ={})
        clock = _FakeReactor()
        s = FlamingoService(config, reactor=clock)
        restarts: list[int] = []
        s.app.wader.restart = lambda: restarts.append(1)  # type: ignore[method-assign]
        before = signal.getsignal(signal.SIGUSR1)
        s.logs.start()
        self.addCleanup(s.logs.stop)
        s.running = True
        s._install_signals()
        try:
            self.assertIsNot(signal.getsignal(signal.SIGUSR1), before)
            signal.getsignal(signal.SIGUSR1)(signal.SIGUSR1, None)
            self.assertEqual(restarts, [1])
            (d / "f.log").rename(d / "f.log.1")
            signal.getsignal(signal.SIGHUP)(signal.SIGHUP, None)
            self.assertIn("Log files reopened", (d / "f.log").read_text())
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
            self.assertEqual(clock.stopped, 1)
        finally:
            s._restore_signals()
        self.assertEqual(signal.getsignal(signal.SIGUSR1), before)


class _FakeReactor(task.Clock):
    running = True
    stopped = 0

    def callFromThread(self, f: Any, *a: Any) -> None:
        f(*a)

    def callWhenRunning(self, f: Any, *a: Any) -> None:
        f(*a)

    def stop(self) -> None:
        self.stopped += 1


class LogsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="flamingo-logs-"))
        self.addCleanup(logs.set_level, "INFO")

    def test_level_filter_at_source(self) -> None:
        pub = LogPublisher()
        seen: list[dict[str, Any]] = []
        pub.addObserver(seen.append)
        log = logs.logger("flamingo.test")
        log.observer = pub
        logs.set_level("WARN")
        log.info("hidden")
        log.warn("shown")
        log.error("also")
        self.assertEqual([e["log_format"] for e in seen], ["shown", "also"])
        self.assertEqual(logs.current_level(), "WARN")
        with self.assertRaises(ValueError):
            logs.set_level("LOUD")

    def test_file_format_and_reopen(self) -> None:
        pub = LogPublisher()
        fl = logs.FlamingoLogs(LoggingConfig(dest=str(self.dir / "a.log"), level="INFO"), pub)
        fl.start()
        pub({"log_format": "Hello {who}", "who": "there", "log_level": LogLevel.info,
             "log_time": 0.0, "log_namespace": "x"})
        pub({"log_format": "quiet", "log_level": LogLevel.debug, "log_time": 0.0,
             "log_namespace": "x"})
        (self.dir / "a.log").rename(self.dir / "a.log.1")
        fl.reopen()
        pub({"log_format": "after", "log_level": LogLevel.error, "log_time": 0.0,
             "log_namespace": "x"})
        fl.stop()
        self.assertEqual((self.dir / "a.log.1").read_text(),
                         "[1970-01-01 00:00:00, INFO] - Hello there\n")
        self.assertEqual((self.dir / "a.log").read_text(), "[1970-01-01 00:00:00, ERROR] - after\n")

    def test_stdout_dest_adds_no_observer(self) -> None:
        pub = LogPublisher()
        fl = logs.FlamingoLogs(LoggingConfig(dest="stdout", level="DEBUG"), pub)
        fl.start()
        self.assertIsNone(fl.file)
        self.assertEqual(logs.current_level(), "DEBUG")
        fl.stop()
