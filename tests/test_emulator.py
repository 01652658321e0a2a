"""The emulator over real loopback HTTP: framing, gzip, keep-alives, auth, limits, matching, journal."""

from __future__ import annotations

import base64
import json
import zlib
from urllib.parse import urlencode

import orjson
import treq
from twisted.internet import defer, reactor
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from flamingo.domain.matching import Predicates
from flamingo.emulator import Emulator, EmulatorOptions
from flamingo.emulator.pool import split_frames
from flamingo.stream.auth import OAuth1
from tests.support.emulator import RawClient, request, start_emulator

FILTER = "/1.1/statuses/filter.json"
SAMPLE = "/1.1/statuses/sample.json"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def messages(client: RawClient, delimited: bool = False, gzip: bool = False) -> list[bytes]:
    body = client.body(gzip)
    if delimited:
        # drop whole frames only
        out, i = [], 0
        while True:
            while body.startswith(b"\r\n", i):
                i += 2
            j = body.find(b"\r\n", i)
            if j < 0:
                break
            n = int(body[i:j])
            if len(body) < j + 2 + n:
                break
            assert body[j + 2 + n - 2 : j + 2 + n] == b"\r\n"
            out.append(body[j + 2 : j + n])
            i = j + 2 + n
        return out
    parts = body.split(b"\r\n")[:-1]
    return [p for p in parts if p]


class FramingTests(TestCase):
    @defer.inlineCallbacks
    def test_sample_streams_crlf_framed_json_with_increasing_ids(self):
        emu = start_emulator(self, seed=3)
        client = yield request(emu.port, testcase=self)
        yield client.wait_for(lambda: len(messages(client)) > 50)
        self.assertEqual(client.status, 200)
        self.assertEqual(client.header("transfer-encoding"), "chunked")
        msgs = [orjson.loads(m) for m in messages(client)]
        ids = [m["id"] for m in msgs if "user" in m]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(set(ids)), len(ids))
        for m in msgs:
            if "user" in m:
                self.assertEqual(str(m["id"]), m["id_str"])
        self.assertNotIn(b"\r", b"".join(messages(client)))

    @defer.inlineCallbacks
    def test_delimited_length_counts_json_and_trailing_crlf(self):
        emu = start_emulator(self)
        client = yield request(emu.port, target=SAMPLE + "?delimited=length", testcase=self)
        yield client.wait_for(lambda: len(messages(client, delimited=True)) > 20)
        body = client.body()
        first_line, rest = body.split(b"\r\n", 1)
        n = int(first_line)
        self.assertEqual(rest[n - 2 : n], b"\r\n")
        orjson.loads(rest[: n - 2])
        for m in messages(client, delimited=True):
            orjson.loads(m)

    @defer.inlineCallbacks
    def test_same_seed_same_stream(self):
        a = start_emulator(self, seed=7)
        b = start_emulator(self, seed=7)
        ca = yield request(a.port, testcase=self)
        cb = yield request(b.port, testcase=self)
        yield ca.wait_for(lambda: len(messages(ca)) > 30)
        yield cb.wait_for(lambda: len(messages(cb)) > 30)
        self.assertEqual(messages(ca)[:30], messages(cb)[:30])

    @defer.inlineCallbacks
    def test_ids_keep_increasing_past_a_pool_cycle(self):
        emu = start_emulator(self, pool_size=20)
        client = yield request(emu.port, testcase=self)
        yield client.wait_for(lambda: len(messages(client)) > 60)
        ids = [orjson.loads(m)["id"] for m in messages(client)[:60] if b'"user"' in m[:200]]
        self.assertEqual(ids, sorted(set(ids)))

    @defer.inlineCallbacks
    def test_gzip_decodes_per_message_as_it_arrives(self):
        emu = start_emulator(self, rate=1000)
        client = yield request(emu.port, headers={"Accept-Encoding": "deflate, gzip"}, testcase=self)
        yield client.wait_for(lambda: len(client.chunks()) > 3)
        self.assertEqual(client.header("content-encoding"), "gzip")
        decoder = zlib.decompressobj(31)
        for chunk in client.chunks()[:3]:
            text = decoder.decompress(chunk)
            # each chunk decodes on its own to whole messages
            self.assertTrue(text.endswith(b"\r\n"), text[-20:])
            for m in text.split(b"\r\n")[:-1]:
                orjson.loads(m)

    @defer.inlineCallbacks
    def test_treq_unbuffered_reads_the_stream(self):
        emu = start_emulator(self, user="u", password="p")
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        got: list[bytes] = []
        done: defer.Deferred = defer.Deferred()

        response = yield treq.post(
            emu.url + FILTER, data={"track": "austin"}, auth=("u", "p"), unbuffered=True, pool=pool
        )
        self.assertEqual(response.code, 200)

        def collect(data):
            got.append(data)
            if b"".join(got).count(b"\r\n") >= 10 and not done.called:
                done.callback(None)

        treq.collect(response, collect).addErrback(lambda f: None)
        yield done
        yield emu.stop()  # ends the response (treq sees the body cut off)
        preds = Predicates.from_params({"track": ["austin"]})
        for m in b"".join(got).split(b"\r\n")[:10]:
            tweet = orjson.loads(m)
            if "user" in tweet:
                self.assertTrue(preds.matches(tweet))


class KeepAliveTests(TestCase):
    @defer.inlineCallbacks
    def test_keepalive_newline_when_idle(self):
        clock = Clock()
        emu = start_emulator(self, clock=clock, rate=0.001, keepalive=30)
        client = yield request(emu.port, testcase=self)
        yield client.wait_for(lambda: client.status is not None)
        clock.advance(29)
        clock.advance(1)
        yield client.wait_for(lambda: client.chunks() == [b"\r\n"])
        clock.advance(30)
        yield client.wait_for(lambda: len(client.chunks()) == 2)
        self.assertEqual(client.chunks(), [b"\r\n", b"\r\n"])

    @defer.inlineCallbacks
    def test_rate_paces_messages_on_the_clock(self):
        clock = Clock()
        emu = start_emulator(self, clock=clock, rate=10, keepalive=0)
        client = yield request(emu.port, testcase=self)
        yield client.wait_for(lambda: client.status is not None)
        for _ in range(100):
            clock.advance(0.01)
        yield client.wait_for(lambda: len(messages(client)) >= 10)
        self.assertEqual(emu.journal[-1].messages_sent, 10)


class AuthTests(TestCase):
    @defer.inlineCallbacks
    def check(self, emu, headers, expected, method="GET", target=SAMPLE, body=b""):
        client = yield request(emu.port, method=method, target=target, headers=headers, body=body, testcase=self)
        yield client.wait_for(lambda: client.status is not None)
        self.assertEqual(client.status, expected, client.raw[:300])
        return client

    @defer.inlineCallbacks
    def test_basic(self):
        emu = start_emulator(self, user="alice", password="s3cret")
        yield self.check(emu, {"Authorization": basic("alice", "s3cret")}, 200)
        yield self.check(emu, {"Authorization": basic("alice", "wrong")}, 401)
        yield self.check(emu, {}, 401)
        yield self.check(emu, {"Authorization": "Basic !!!"}, 401)
        self.assertEqual([r.outcome for r in emu.journal], ["streaming", "http 401", "http 401", "http 401"])
        self.assertEqual(emu.journal[0].identity, "alice")

    @defer.inlineCallbacks
    def test_bearer(self):
        emu = start_emulator(self, bearer_token="tok")
        yield self.check(emu, {"Authorization": "Bearer tok"}, 200)
        yield self.check(emu, {"Authorization": "Bearer nope"}, 401)
        yield self.check(emu, {"Authorization": basic("a", "b")}, 401)

    def oauth_emulator(self, now=lambda: 1_700_000_000.0):
        return start_emulator(
            self, now=now, oauth_consumer_key="ck", oauth_consumer_secret="cs",
            oauth_token="tk", oauth_token_secret="ts",
        )

    @defer.inlineCallbacks
    def test_oauth_signature_verified_for_post_form(self):
        emu = self.oauth_emulator()
        url = emu.url + FILTER
        signer = OAuth1("ck", "cs", "tk", "ts", clock=lambda: 1_700_000_000, nonce=lambda: "n1")
        params = [("track", "austin,tx")]
        yield self.check(emu, {"Authorization": signer.header("POST", url, params).decode()}, 200,
                         method="POST", target=FILTER, body=urlencode(params).encode())
        self.assertEqual(emu.journal[-1].identity, "tk")
        # same nonce + timestamp again: replay
        yield self.check(emu, {"Authorization": signer.header("POST", url, params).decode()}, 401,
                         method="POST", target=FILTER, body=urlencode(params).encode())
        # tampered body: bad signature
        signer2 = OAuth1("ck", "cs", "tk", "ts", clock=lambda: 1_700_000_000, nonce=lambda: "n2")
        yield self.check(emu, {"Authorization": signer2.header("POST", url, params).decode()}, 401,
                         method="POST", target=FILTER, body=b"track=other")
        # wrong secret
        bad = OAuth1("ck", "WRONG", "tk", "ts", clock=lambda: 1_700_000_000, nonce=lambda: "n3")
        yield self.check(emu, {"Authorization": bad.header("GET", emu.url + SAMPLE, []).decode()}, 401)

    @defer.inlineCallbacks
    def test_oauth_stale_timestamp(self):
        emu = self.oauth_emulator()
        stale = OAuth1("ck", "cs", "tk", "ts", clock=lambda: 1_700_000_000 - 301, nonce=lambda: "n")
        yield self.check(emu, {"Authorization": stale.header("GET", emu.url + SAMPLE, []).decode()}, 401)
        fresh = OAuth1("ck", "cs", "tk", "ts", clock=lambda: 1_700_000_000 - 299, nonce=lambda: "n")
        yield self.check(emu, {"Authorization": fresh.header("GET", emu.url + SAMPLE, []).decode()}, 200)

    @defer.inlineCallbacks
    def test_no_credentials_configured_accepts_any(self):
        emu = start_emulator(self)
        yield self.check(emu, {"Authorization": basic("whoever", "x")}, 200)
        self.assertEqual(emu.journal[-1].identity, "whoever")

    @defer.inlineCallbacks
    def test_second_connection_same_account_disconnects_the_older(self):
        emu = start_emulator(self, user="u", password="p", rate=0.001)
        old = yield self.check(emu, {"Authorization": basic("u", "p")}, 200)
        yield self.check(emu, {"Authorization": basic("u", "p")}, 200)
        yield old.closed
        last = messages(old)[-1]
        self.assertEqual(orjson.loads(last)["disconnect"]["code"], 7)
        self.assertEqual(emu.journal[0].close_reason, "disconnect 7")
        self.assertEqual(len(emu.sessions), 1)


class ParameterTests(TestCase):
    @defer.inlineCallbacks
    def status_for(self, emu, body: bytes = b"", target=FILTER, method="POST"):
        client = yield request(emu.port, method=method, target=target, body=body, testcase=self)
        yield client.wait_for(lambda: client.status is not None)
        return client.status

    @defer.inlineCallbacks
    def test_limits(self):
        emu = start_emulator(self)
        cases = [
            (b"", 406),
            (b"language=en", 406),
            (b"track=" + b"x" * 61, 406),
            (b"track=" + b"x" * 60, 200),
            (urlencode({"track": ",".join(f"t{i}" for i in range(401))}).encode(), 413),
            (urlencode({"track": ",".join(f"t{i}" for i in range(400))}).encode(), 200),
            (urlencode({"follow": ",".join(str(i) for i in range(5001))}).encode(), 413),
            (b"follow=abc", 406),
            (b"locations=-122.75,36.8,-121.75,37.8", 200),
            (b"locations=-121.75,36.8,-122.75,37.8", 406),
            (b"locations=1,2,3", 406),
            (urlencode({"locations": ",".join(["0,0,1,1"] * 26)}).encode(), 413),
            (b"track=a&count=100", 416),
            (b"track=a&filter_level=high", 406),
        ]
        for body, expected in cases:
            code = yield self.status_for(emu, body)
            self.assertEqual(code, expected, body[:80])

    @defer.inlineCallbacks
    def test_get_query_and_unknown_urls(self):
        emu = start_emulator(self)
        self.assertEqual((yield self.status_for(emu, target=FILTER + "?track=austin", method="GET")), 200)
        self.assertEqual((yield self.status_for(emu, target="/1.1/nope.json", method="GET")), 404)
        self.assertEqual((yield self.status_for(emu, target=FILTER + "?track=a", method="DELETE")), 405)
        self.assertEqual(emu.journal[0].params, {"track": ["austin"]})

    @defer.inlineCallbacks
    def test_count_allowed_for_roles_that_may(self):
        emu = start_emulator(self, allow_count=True)
        self.assertEqual((yield self.status_for(emu, b"track=a&count=100")), 200)


class MatchingTests(TestCase):
    @defer.inlineCallbacks
    def stream(self, params: dict[str, str], n: int = 40):
        emu = start_emulator(self, size="realistic", pool_size=60)
        client = yield request(emu.port, method="POST", target=FILTER, body=urlencode(params).encode(),
                               testcase=self)
        yield client.wait_for(lambda: len(messages(client)) >= n)
        return [orjson.loads(m) for m in messages(client)]

    @defer.inlineCallbacks
    def test_only_true_matches_are_sent(self):
        params = {"track": "austin tx,#python,example.com", "follow": "12345,678",
                  "locations": "-122.75,36.8,-121.75,37.8"}
        preds = Predicates.from_params({k: [v] for k, v in params.items()})
        msgs = yield self.stream(params)
        statuses = [m for m in msgs if "user" in m]
        self.assertTrue(statuses)
        for tweet in statuses:
            self.assertTrue(preds.matches(tweet), tweet.get("text"))
        kinds = {("track" if preds.matches_track(t) else "") + ("follow" if preds.matches_follow(t) else "")
                 + ("loc" if preds.matches_location(t) else "") for t in statuses}
        self.assertGreaterEqual(len(kinds), 3)

    @defer.inlineCallbacks
    def test_language_narrows(self):
        msgs = yield self.stream({"track": "news", "language": "ja"})
        for tweet in (m for m in msgs if "user" in m):
            self.assertEqual(tweet["lang"], "ja")


class JournalTests(TestCase):
    @defer.inlineCallbacks
    def test_journal_records_attempts_and_file(self):
        path = self.mktemp()
        emu = start_emulator(self, journal=path, record=True, rate=0.001)
        client = yield request(emu.port, method="POST", target=FILTER, body=b"track=a,b&follow=1",
                               testcase=self)
        yield client.wait_for(lambda: client.status is not None)
        bad = yield request(emu.port, method="POST", target=FILTER, body=b"", testcase=self)
        yield bad.wait_for(lambda: bad.status is not None)
        rec = emu.journal[0]
        self.assertEqual((rec.method, rec.path, rec.params, rec.outcome),
                         ("POST", FILTER, {"track": ["a,b"], "follow": ["1"]}, "streaming"))
        self.assertEqual(emu.journal[1].outcome, "http 406")
        yield client.close()
        yield emu.streams_closed()
        lines = [json.loads(line) for line in open(path)]
        self.assertEqual([line["event"] for line in lines], ["connected", "rejected", "closed"])
        self.assertEqual(lines[2]["close_reason"], "client closed")

    @defer.inlineCallbacks
    def test_record_captures_exactly_what_was_sent(self):
        emu = start_emulator(self, record=True)
        client = yield request(emu.port, target=SAMPLE + "?delimited=length", testcase=self)
        yield client.wait_for(lambda: len(messages(client, delimited=True)) > 30)
        yield client.close()
        got = messages(client, delimited=True)
        self.assertEqual(emu.sent_messages[0][: len(got)], got)
        self.assertEqual(split_frames(b"4\r\n{}\r\n", True), [b"{}"])

    @defer.inlineCallbacks
    def test_stop_closes_streams_and_port(self):
        emu = Emulator(EmulatorOptions(size="small"), reactor=reactor)
        port = emu.start()
        client = yield request(port)
        yield client.wait_for(lambda: client.status is not None)
        yield emu.stop()
        yield client.closed  # the stream is gone...
        self.assertEqual(emu.sessions, [])
        with self.assertRaises(ConnectionRefusedError):  # ...and so is the port
            yield request(port)
