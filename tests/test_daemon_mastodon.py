"""The whole daemon with ``source: mastodon``: ``twistd -n flamingo`` as a child process,
a real redis-server, the Mastodon emulator making statuses on 127.0.0.1.

``kill -9`` mid-stream, statuses keep being made while the daemon is down,
then a restart: the new run reads the newest status id back from its
journal, fills the gap from the REST timeline, and goes live. Every status
the emulator made on the stream between the first and the last one queued is
in the queue exactly once (missing 0, duplicates 0), and the queue equals the
event log line for line.
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from tests.support.child_daemon import Child, event_lines, spawn_twistd
from tests.support.masto import http_client, start_masto
from tests.support.redis import free_port, shared_redis
from tests.support.waiting import until


def _idkey(i: str) -> tuple[int, str]:
    return (len(i), i)


class MastodonDaemonTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="flamingo-masto-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.ns = f"m{uuid.uuid4().hex[:8]}"
        self.procs: list[Any] = []

    def tearDown(self) -> None:
        for proc in self.procs:
            if proc.pid is not None:
                proc.signalProcess("KILL")

    def configure(self, token: str = "tok", web_port: int | None = None) -> None:
        self.redis = shared_redis()
        self.emu = start_masto(self, access_token="tok", rate=40, mention_share=0, direct_share=0)
        cfg: dict[str, Any] = {
            "source": "mastodon", "stream": "hashtag", "bearer_token": token,
            "api": {"url": self.emu.url},
            "data_dir": str(self.dir / "data"),
            "logging": {"dest": str(self.dir / "flamingo.log"), "level": "INFO",
                        "event": {"dir": str(self.dir / "events"), "size": 1000}},
            "redis": {"host": self.redis.address, "namespace": self.ns, "timeout": 1},
            "web": {"enabled": False} if web_port is None else {"host": f"127.0.0.1:{web_port}"},
            "console": {"enabled": False},
            "wader": {"min_interval": 0},
        }
        self.config = self.dir / "flamingo.yml"
        self.config.write_text(yaml.safe_dump(cfg))
        r, ns = self.redis, self.ns
        r.command("SADD", f"{ns}:streams:hashtag:tag", "fediverse", "python")
        r.command("SADD", f"{ns}:subscriptions", "q")
        r.command("HSET", f"{ns}:subscription:q", "format", "raw", "types", "", "filter", "", "max_length", "")
        r.command("PUBLISH", f"{ns}:changes", "subscriptions:q")

    def start(self) -> tuple[Any, Child]:
        proc, child = spawn_twistd(self.config, self.dir)
        self.procs.append(proc)
        return proc, child

    def event_log(self) -> list[bytes]:
        return event_lines(self.dir / "events")

    def queue(self) -> list[bytes]:
        return list(self.redis.command("LRANGE", f"{self.ns}:queue:q", "0", "-1"))  # type: ignore[arg-type]

    @defer.inlineCallbacks
    def stop(self, proc: Any, child: Child) -> Any:
        proc.signalProcess("TERM")
        code = yield child.ended
        out = child.out.decode(errors="replace")
        self.assertEqual(code, 0, out[-3000:])
        self.assertNotIn("Traceback (most recent call last)", out)
        return out

    def assert_every_status_once(self) -> None:
        queue = self.queue()
        self.assertEqual(queue, self.event_log())  # journaled, then queued: line for line
        by_key: dict[tuple[str, ...], list[str]] = {}
        for raw in queue:
            e = json.loads(raw)
            if e["event"] == "update":
                by_key.setdefault(tuple(e["stream"]), []).append(e["payload"]["id"])
        for tag in ("fediverse", "python"):
            key = ("hashtag", tag)
            have = by_key.get(key, [])
            self.assertTrue(have, key)
            lo, hi = min(have, key=_idkey), max(have, key=_idkey)
            want = [i for i in self.emu.timeline.expected(key) if _idkey(lo) <= _idkey(i) <= _idkey(hi)]
            dupes = [i for i, n in Counter(have).items() if n > 1]
            missing = sorted(set(want) - set(have), key=_idkey)
            self.assertEqual((len(missing), len(dupes)), (0, 0), f"{key}: missing {missing[:5]}, twice {dupes[:5]}")

    @defer.inlineCallbacks
    def test_kill_9_then_restart_fills_the_gap_exactly_once(self) -> Any:
        port = free_port()
        self.configure(web_port=port)
        proc, child = self.start()
        yield until(lambda: len(self.queue()) >= 40, timeout=60)
        proc.signalProcess("KILL")
        code = yield child.ended
        self.assertEqual(code, -signal.SIGKILL)
        made_when_killed = len(self.emu.timeline.made)
        yield until(lambda: len(self.emu.timeline.made) >= made_when_killed + 150, timeout=60)  # the gap
        proc, child = self.start()
        logged = len(self.event_log())
        yield until(lambda: len(self.event_log()) >= logged + 80 and len(self.queue()) == len(self.event_log()),
                    timeout=60)
        http = http_client(self)
        status = json.loads((yield (yield http.get(f"http://127.0.0.1:{port}/status.json")).content()))
        meta = json.loads((yield (yield http.get(f"http://127.0.0.1:{port}/meta.json")).content()))
        metrics = (yield (yield http.get(f"http://127.0.0.1:{port}/metrics")).content()).decode()
        out = yield self.stop(proc, child)
        self.assertEqual(status["source"], "mastodon")
        for doc in (status, meta):
            gap = doc["gap_fill"]
            self.assertEqual(gap["fills"], 1)
            self.assertGreater(gap["statuses"], 0)
            self.assertEqual((gap["truncated"], gap["failed"]), (0, 0))
        self.assertEqual(status["gap_fill"]["streaming_url"], self.emu.streaming_url)
        filled = status["gap_fill"]["statuses"]
        self.assertIn(f"flamingo_gap_fill_statuses_total {float(filled)}", metrics)
        log = (self.dir / "flamingo.log").read_text()
        self.assertIn("Resuming Mastodon streams from the journal", log)
        self.assertIn("Gap filled:", log)
        self.assertNotIn("tok", log.replace("token", ""))  # the bearer token never logged
        self.assert_every_status_once()
        self.assertNotIn("Traceback", out)

    @defer.inlineCallbacks
    def test_params_changed_over_rest_subscribe_on_the_open_socket(self) -> Any:
        port = free_port()
        self.configure(web_port=port)
        proc, child = self.start()
        yield until(lambda: len([m for m in self.emu.client_messages if m["type"] == "subscribe"]) == 2, timeout=60)
        http = http_client(self)
        r = yield http.put(f"http://127.0.0.1:{port}/streams/hashtag/tag.json?values=python,rust")
        self.assertEqual(r.code, 200, (yield r.content()))
        yield until(lambda: len(self.emu.client_messages) == 4, timeout=60)
        self.assertEqual(sorted((m["type"], m["tag"]) for m in self.emu.client_messages[2:]),
                         [("subscribe", "rust"), ("unsubscribe", "fediverse")])
        yield until(lambda: any(json.loads(q)["stream"] == ["hashtag", "rust"] for q in self.queue()), timeout=60)
        r = yield http.put(f"http://127.0.0.1:{port}/streams/hashtag/tag.json?values=two%20words")
        self.assertEqual(r.code, 422)
        self.assertTrue(json.loads((yield r.content()))["error"].startswith("tag: not a hashtag"))
        out = yield self.stop(proc, child)
        self.assertEqual(self.emu.counters["websocket_connections"], 1)
        self.assertIn("Stream params applied on the open connection", (self.dir / "flamingo.log").read_text())
        self.assertNotIn("Traceback", out)

    @defer.inlineCallbacks
    def test_401_is_fatal_in_status_with_the_servers_message(self) -> Any:
        port = free_port()
        self.configure(token="wrong", web_port=port)
        proc, child = self.start()
        http = http_client(self)

        @defer.inlineCallbacks
        def state() -> Any:
            try:
                r = yield http.get(f"http://127.0.0.1:{port}/status.json")
                return json.loads((yield r.content()))
            except Exception:
                return None

        doc: dict[str, Any] = {}

        @defer.inlineCallbacks
        def fatal() -> Any:
            got = yield state()
            if got:
                doc.update(got)
            return bool(got) and got.get("state") == "fatal"

        for _ in range(1200):  # polled: the daemon's start and first attempt take what they take
            if (yield fatal()):
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(doc["wader"]["cause"], "http 401")
        self.assertEqual(doc["wader"]["message"], "HTTP 401 Unauthorized: Invalid access token")
        self.assertNotIn("wrong", json.dumps(doc))
        yield self.stop(proc, child)
