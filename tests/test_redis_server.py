"""flamingo/_redis_server.py: the one redis-server starter (make run, tests, bench)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from unittest import mock

from twisted.trial.unittest import SynchronousTestCase

from flamingo import _redis_server, demo
from flamingo._redis_server import RedisServer, RedisServerError, redis_server_binary
from tests.support import redis as support


class RedisServerTests(SynchronousTestCase):
    def test_start_command_stop_cleanup(self) -> None:
        server = RedisServer(args=("--maxmemory", "12mb")).start()
        self.addCleanup(server.cleanup)
        self.assertTrue(server.ping())
        self.assertEqual(server.address, f"127.0.0.1:{server.port}")
        # persistence off, the extra option applied (given last, so it wins)
        self.assertEqual(server.command("CONFIG", "GET", "save"), [b"save", b""])
        self.assertEqual(server.command("CONFIG", "GET", "appendonly"), [b"appendonly", b"no"])
        self.assertEqual(server.command("CONFIG", "GET", "maxmemory"), [b"maxmemory", b"12582912"])
        server.command("RPUSH", "l", "a", "b")
        self.assertEqual(server.command("LRANGE", "l", "0", "-1"), [b"a", b"b"])
        self.assertIsNone(server.command("GET", "missing"))
        with self.assertRaises(RuntimeError):
            server.command("NOSUCHCOMMAND")
        server.flushall()
        self.assertEqual(server.command("DBSIZE"), 0)
        server.pause()
        self.assertFalse(server.ping())
        server.resume()
        self.assertTrue(server.ping())
        server.stop()
        self.assertFalse(server.ping())
        server.start()  # again, same port, empty
        self.assertEqual(server.command("DBSIZE"), 0)
        directory = server.dir
        server.cleanup()
        self.assertFalse(os.path.exists(directory))

    def test_given_directory_is_kept(self) -> None:
        d = Path(tempfile.mkdtemp(prefix="flamingo-redis-test-"))
        self.addCleanup(shutil.rmtree, d, True)
        server = RedisServer(directory=d / "redis").start()
        server.cleanup()
        self.assertTrue((d / "redis").is_dir())

    def test_binary_from_path_then_pypi_package(self) -> None:
        self.assertTrue(os.access(redis_server_binary(), os.X_OK))
        self.patch(_redis_server.shutil, "which", lambda name: None)
        import sys
        import types

        fake = types.ModuleType("redis_server")
        fake.REDIS_SERVER_PATH = "/opt/pypi/redis-server"  # type: ignore[attr-defined]
        with mock.patch.dict(sys.modules, {"redis_server": fake}):
            self.assertEqual(redis_server_binary(), "/opt/pypi/redis-server")
        with mock.patch.dict(sys.modules, {"redis_server": None}):  # not installed
            with self.assertRaises(RedisServerError) as cm:
                redis_server_binary()
        self.assertIn("make install", str(cm.exception))

    def test_exits_are_errors(self) -> None:
        server = RedisServer(args=("--no-such-option", "x"))
        self.addCleanup(server.cleanup)
        with self.assertRaises(RedisServerError) as cm:
            server.start()
        self.assertIn("exited", str(cm.exception))

    def test_no_port_given_picks_a_free_one(self) -> None:
        server = support.RedisServer(port=None, args=())
        self.addCleanup(server.cleanup)
        self.assertIsInstance(server.port, int)

    def test_demo_turns_a_failure_into_a_plain_exit(self) -> None:
        self.patch(_redis_server.shutil, "which", lambda name: None)
        import sys

        d = Path(tempfile.mkdtemp(prefix="flamingo-redis-test-"))
        self.addCleanup(shutil.rmtree, d, True)
        with mock.patch.dict(sys.modules, {"redis_server": None}):
            with self.assertRaises(SystemExit) as cm:
                demo.start_redis(d)
        self.assertIn("redis-server not found", str(cm.exception))
