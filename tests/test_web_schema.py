"""schemathesis over /openapi.json against the live API (real Store, real
Redis, token on): every documented route, generated inputs, no failures.

The run is a subprocess (``schemathesis run``) against an in-process server
on a loopback port, bounded by example count and time. Excluded check:
``positive_data_acceptance`` — the Streaming API's rules (at least one
predicate for filter, none for sample, phrases of 1..60 bytes) depend on the
stream and on the values already stored, which JSON Schema cannot express;
those requests get a documented 422.
"""

from __future__ import annotations

import os
import re
import shutil
import sys

from twisted.internet import defer, reactor, utils
from twisted.trial import unittest

from tests.support.http import Server
from tests.support.parts import SECRET_TOKEN, make_app, make_config, make_store


def schemathesis_command() -> list[str] | None:
    exe = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    if os.path.exists(exe):
        return [exe]
    found = shutil.which("schemathesis")
    return [found] if found else None


class SchemaTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_schemathesis_finds_no_failures(self):
        command = schemathesis_command()
        if command is None:
            raise unittest.SkipTest("schemathesis is not installed")
        store = yield make_store(self)
        server = Server(self, make_app(make_config(token=SECRET_TOKEN), store))
        workdir = self.mktemp()
        os.makedirs(workdir)
        args = command[1:] + [
            "run", f"{server.url}/openapi.json",
            "-H", f"Authorization: Bearer {SECRET_TOKEN}",
            "--max-examples", "20", "-w", "1", "--seed", "4711",
            "--exclude-checks", "positive_data_acceptance",
            "--request-timeout", "10",
        ]
        env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""}
        out, err, code = yield utils.getProcessOutputAndValue(
            command[0], args, env=env, path=workdir, reactor=reactor)
        text = out.decode("utf-8", "replace") + err.decode("utf-8", "replace")
        self.assertEqual(code, 0, text[-6000:])
        m = re.search(r"(\d+) generated, (\d+) passed", text)
        self.assertTrue(m and m.group(1) == m.group(2) and int(m.group(1)) > 100, text[-3000:])
