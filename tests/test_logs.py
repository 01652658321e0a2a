"""logging.level applies to every Flamingo logger and to Twisted's and txredisapi's events."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from twisted.logger import Logger, LogPublisher
from twisted.python import log as legacy_log
from twisted.trial.unittest import SynchronousTestCase

import flamingo
from flamingo import logs
from flamingo.config import LoggingConfig


class LevelEverywhereTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.addCleanup(logs.set_level, "INFO")

    def test_no_module_uses_a_plain_twisted_logger(self) -> None:
        """A plain Logger's events escape the level filter (the REST request log did)."""
        root = Path(flamingo.__file__).parent
        offenders = []
        for path in sorted(root.rglob("*.py")):
            if path.name == "logs.py" and path.parent == root:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id == "Logger"):
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
        self.assertEqual(offenders, [])

    def test_request_log_follows_the_level(self) -> None:
        from flamingo.web import api
        pub = LogPublisher()
        seen: list[dict[str, Any]] = []
        pub.addObserver(seen.append)
        self.patch(api.log, "observer", pub)
        logs.set_level("WARN")
        api.log.info("GET /x 200")
        self.assertEqual(seen, [])

    def test_twisted_and_txredisapi_info_follow_the_level(self) -> None:
        pub = LogPublisher()
        seen: list[dict[str, Any]] = []
        pub.addObserver(seen.append)  # stands for twistd's stdout observer
        fl = logs.FlamingoLogs(LoggingConfig(level="WARN"), pub)
        fl.start()
        twisted_log = Logger(namespace="twisted.internet.protocol.Factory", observer=pub)
        twisted_log.info("Starting factory {f}", f="<factory>")
        legacy = legacy_log.LogPublisher(observerPublisher=pub, publishPublisher=pub)
        legacy.msg("txredisapi: connected")  # txredisapi logs through twisted.python.log
        twisted_log.error("a real problem")
        self.assertEqual([e["log_format"] for e in seen], ["a real problem"])
        logs.set_level("INFO")  # the console changes the level at runtime: the gate follows
        twisted_log.info("now shown")
        self.assertEqual(seen[-1]["log_format"], "now shown")
        pub.removeObserver(seen.append)  # its owner still finds it behind the gate
        twisted_log.error("nobody listens")
        self.assertEqual(seen[-1]["log_format"], "now shown")
        fl.stop()

    def test_a_librarys_retry_line_is_debug(self) -> None:
        """ClientService's "Scheduling retry" INFO per attempt shows only at DEBUG; its warnings stay."""
        from flamingo.dispatch.sink_link import _Service
        pub = LogPublisher()
        seen: list[dict[str, Any]] = []
        pub.addObserver(seen.append)
        self.patch(_Service.__dict__["_log"], "observer", pub)  # the descriptor's; instances get copies
        _Service._log.info("Scheduling retry {attempt}", attempt=1)
        self.assertEqual(seen, [])
        _Service._log.warn("Duplicate ClientService.startService")
        self.assertEqual([e["log_format"] for e in seen], ["Duplicate ClientService.startService"])
        logs.set_level("DEBUG")
        _Service._log.info("Scheduling retry {attempt}", attempt=2)
        self.assertEqual(seen[-1]["log_format"], "Scheduling retry {attempt}")

    def test_stop_removes_the_gates(self) -> None:
        pub = LogPublisher()
        seen: list[dict[str, Any]] = []
        pub.addObserver(seen.append)
        fl = logs.FlamingoLogs(LoggingConfig(level="ERROR"), pub)
        fl.start()
        fl.stop()
        logs.set_level("ERROR")
        Logger(namespace="twisted", observer=pub).info("shown again")
        self.assertEqual(len(seen), 1)


class BrokenFailureLineTests(SynchronousTestCase):
    def test_a_failure_whose_traceback_breaks_still_gives_a_line(self) -> None:
        from twisted.logger import LogLevel

        from flamingo.logs import format_line

        class Broken:
            def getTraceback(self) -> str:
                raise ValueError("no")

        line = format_line({"log_format": "it failed", "log_level": LogLevel.error,
                            "log_time": 0.0, "log_failure": Broken()})
        self.assertEqual(line, "[1970-01-01 00:00:00, ERROR] - it failed\n(traceback unavailable: ValueError)\n")
