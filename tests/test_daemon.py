"""``twistd flamingo`` as users run it: a real process, a real emulator, real Redis.

The emulator runs in the test's reactor; twistd is a child process. Waits are
for real events (a line in a log file, a connection in the emulator's journal),
bounded; nothing here asserts timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support.child_daemon import TWISTD, Child
from tests.support.redis import shared_redis
from tests.support.waiting import until

LISTENING = "Listening on stream: /1.1/statuses/filter.json?track=%23etsy,austin,cheaptweet"


def write_config(directory: Path, **overrides: Any) -> Path:
    r = shared_redis()
    cfg: dict[str, Any] = {
        "username": "flamingo", "password": "secret-pw",
        "stream": "filter",
        "api": {"url": "http://127.0.0.1:9"},
        "data_dir": str(directory / "data"),
        "logging": {"dest": str(directory / "flamingo.log"), "level": "INFO",
                    "event": {"dir": str(directory / "events"), "size": 100000}},
        "redis": {"host": r.address, "namespace": f"t{uuid.uuid4().hex[:8]}", "timeout": 2},
        "web": {"enabled": False},
        "console": {"enabled": False},
        "wader": {"min_interval": 0},
    }
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k].update(v)
        else:
            cfg[k] = v
    path = directory / "flamingo.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class RunningDaemonTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        from tests.support.emulator import start_emulator

        self.dir = Path(tempfile.mkdtemp(prefix="flamingo-daemon-"))
        self.emu = start_emulator(self, seed=3, rate=200, size="small", keepalive=1.0)
        self.config = write_config(self.dir, api={"url": self.emu.url})
        ns = yaml.safe_load(self.config.read_text())["redis"]["namespace"]
        shared_redis().command("SADD", f"{ns}:streams:filter:track", "#etsy", "austin",
                               "cheaptweet")

    def log_text(self) -> str:
        path = self.dir / "flamingo.log"
        return path.read_text() if path.exists() else ""

    @defer.inlineCallbacks
    def test_start_signals_and_graceful_stop(self) -> Any:
        child = Child()
        proc = reactor.spawnProcess(
            child, TWISTD, [TWISTD, "-n", "--pidfile=", "flamingo", "-c", str(self.config)],
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, path=str(self.dir))
        try:
            yield until(lambda: LISTENING in self.log_text())
            text = self.log_text()
            self.assertIn(f"Loaded config file from {self.config}", text)
            self.assertIn("Flamingod starting", text)
            self.assertLess(text.index("Loaded config file"), text.index("Flamingod starting"))
            self.assertNotIn("secret-pw", text)
            yield until(lambda: self.emu.journal and self.emu.journal[0].messages_sent > 20)

            # HUP: logrotate moved the file; a new one is opened
            (self.dir / "flamingo.log").rename(self.dir / "flamingo.log.1")
            proc.signalProcess("HUP")
            yield until(lambda: "Log files reopened" in self.log_text())

            # USR1: graceful wader restart (a second connection, then the first goes)
            proc.signalProcess(signal.SIGUSR1)
            yield until(lambda: len(self.emu.journal) >= 2
                        and self.emu.journal[0].closed_at is not None)
            self.assertIn("restarting wader", self.log_text())

            proc.signalProcess("TERM")
            code = yield child.ended
        finally:
            if proc.pid is not None:
                proc.signalProcess("KILL")
        self.assertEqual(code, 0, child.out.decode(errors="replace")[-3000:])
        text = self.log_text()
        self.assertIn("Flamingod stopped", text)
        self.assertNotIn("Traceback", child.out.decode(errors="replace"))
        # everything received went to the event log, nothing more than was sent
        lines = b"".join(p.read_bytes() for p in sorted((self.dir / "events").glob("event-*")))
        received = [line for line in lines.split(b"\n") if line]
        sent = sum(r.messages_sent for r in self.emu.journal)
        self.assertGreater(len(received), 20)
        self.assertLessEqual(len(received), sent)


    @defer.inlineCallbacks
    def test_rides_out_scripted_faults(self) -> Any:
        self.emu.faults.garbage(after=5)
        self.emu.faults.close_mid_message(after=10)
        self.emu.faults.respond_status(500)  # the first request
        self.config = write_config(self.dir, api={"url": self.emu.url}, redis={
            "namespace": yaml.safe_load(self.config.read_text())["redis"]["namespace"]},
            wader={"min_interval": 0, "backoff": {"http": {"initial": 0.5}}})
        child = Child()
        proc = reactor.spawnProcess(
            child, TWISTD, [TWISTD, "-n", "--pidfile=", "flamingo", "-c", str(self.config)],
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, path=str(self.dir))
        try:
            yield until(lambda: "Stream parse error" in self.log_text())
            yield until(lambda: "retrying (http, attempt 1) in 0.50s" in self.log_text())
            yield until(lambda: self.log_text().count("Listening on stream") == 2, timeout=30)
            proc.signalProcess("TERM")
            code = yield child.ended
        finally:
            if proc.pid is not None:
                proc.signalProcess("KILL")
        self.assertEqual(code, 0)
        self.assertEqual([r.outcome for r in self.emu.journal], ["http 500", "streaming", "streaming"])


class CommandLineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="flamingo-cmd-"))

    def twistd(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run([TWISTD, *args], capture_output=True, text=True, timeout=timeout,
                              cwd=self.dir)

    def check_one_line(self, result: subprocess.CompletedProcess[str], expected: str) -> None:
        self.assertNotEqual(result.returncode, 0)
        err = result.stderr.strip()
        self.assertEqual(len(err.splitlines()), 1, result.stderr)
        self.assertIn(expected, err)
        self.assertNotIn("Traceback", result.stderr + result.stdout)

    def test_bad_config_one_line(self) -> None:
        path = write_config(self.dir, logging={"level": "LOUD"})
        result = self.twistd("-n", "--pidfile=", "flamingo", "-c", str(path))
        self.check_one_line(result, "flamingo: config error: logging.level: must be one of")

    def test_unknown_key_one_line(self) -> None:
        path = write_config(self.dir, colour="pink")
        result = self.twistd("-n", "--pidfile=", "flamingo", "-c", str(path))
        self.check_one_line(result, "colour: unknown key")

    def test_missing_config_file(self) -> None:
        result = self.twistd("-n", "--pidfile=", "flamingo", "-c", str(self.dir / "nope.yml"))
        self.check_one_line(result, "config file not found")

    def test_no_config_anywhere(self) -> None:
        env = {**os.environ, "HOME": str(self.dir)}
        result = subprocess.run([TWISTD, "-n", "--pidfile=", "flamingo"], capture_output=True,
                                text=True, timeout=30, cwd=self.dir, env=env)
        self.check_one_line(result, "no config file")

    def test_plugin_listed(self) -> None:
        result = self.twistd("--help")
        self.assertIn("flamingo", result.stdout)

    def test_second_instance_on_pidfile_refuses(self) -> None:
        path = write_config(self.dir)
        pidfile = self.dir / "flamingo.pid"
        first = self.twistd(f"--pidfile={pidfile}", f"--logfile={self.dir / 'twistd.log'}",
                            "flamingo", "-c", str(path))
        self.assertEqual(first.returncode, 0, first.stderr)
        pid = int(pidfile.read_text())
        self.addCleanup(_kill, pid)
        second = self.twistd(f"--pidfile={pidfile}", "flamingo", "-c", str(path))
        self.assertNotEqual(second.returncode, 0)
        self.assertIn("Another twistd server is running", second.stdout + second.stderr)
        self.assertIn(str(pid), second.stdout + second.stderr)

    def test_config_pidfile_used(self) -> None:
        pidfile = self.dir / "from-config.pid"
        path = write_config(self.dir, pidfile=str(pidfile))
        first = self.twistd(f"--logfile={self.dir / 'twistd.log'}", "flamingo", "-c", str(path))
        self.assertEqual(first.returncode, 0, first.stderr)
        pid = int(pidfile.read_text())
        self.addCleanup(_kill, pid)
        second = self.twistd("flamingo", "-c", str(path))
        self.assertIn("Another twistd server is running", second.stdout + second.stderr)


def _kill(pid: int) -> None:
    """Stop a daemon this test started (by its pid), and wait for it to go."""
    import time

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)  # waiting for a process to exit, not timing anything
    os.kill(pid, signal.SIGKILL)


class DemoTests(SynchronousTestCase):
    def test_make_run_demo_shows_events_and_stops(self) -> None:
        """What `make run` runs: Redis + emulator + flamingod, events printed, clean stop."""
        d = Path(tempfile.mkdtemp(prefix="flamingo-demo-"))
        result = subprocess.run(
            [sys.executable, "-m", "flamingo.demo", "--seconds", "6", "--rate", "20",
             "--dir", str(d / "demo")],
            capture_output=True, text=True, timeout=90, env={**os.environ, "CI": "true"},
            cwd=Path(__file__).resolve().parent.parent)
        self.assertEqual(result.returncode, 0, result.stdout[-2000:] + result.stderr[-2000:])
        self.assertIn(LISTENING, result.stdout)
        self.assertIn("tweet", result.stdout)
        self.assertIn("flamingod stopped (exit status 0)", result.stdout)

    def test_describe(self) -> None:
        from flamingo.demo import describe

        self.assertEqual(describe(b'{"id":1,"text":"hi\\nthere","user":{"screen_name":"a"}}'),
                         "tweet   @a: hi there")
        self.assertTrue(describe(b'{"limit":{"track":5}}').startswith("limit"))
        self.assertTrue(describe(b"nope").startswith("(not JSON)"))
