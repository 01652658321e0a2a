"""schemathesis over /openapi.json against an X filter daemon's API (the rules routes live:
a real RuleBook on Redis, the reconciler against a fake X), token on: no failures."""

from __future__ import annotations

import os
import re
from typing import Any

import attrs
from twisted.internet import defer, reactor, task, utils
from twisted.trial import unittest

from flamingo.config import from_mapping
from flamingo.sources.xrules.book import RuleBook
from flamingo.sources.xrules.model import TIERS
from flamingo.sources.xrules.reconciler import Reconciler
from flamingo.sources.xrules.service import RulesService
from tests.support.http import Server
from tests.support.parts import SECRET_TOKEN, make_app, make_store
from tests.test_web_schema import schemathesis_command
from tests.test_xrules import FakeX


class XSchemaTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_schemathesis_finds_no_failures_with_rules(self) -> Any:
        command = schemathesis_command()
        if command is None:
            raise unittest.SkipTest("schemathesis is not installed")
        store = yield make_store(self)
        config = from_mapping({"source": "x", "stream": "filter", "bearer_token": "b",
                               "web": {"token": SECRET_TOKEN}}, environ={})
        book = RuleBook(store, TIERS["pay-per-use"])
        store.on_notice("rules", book.changed)
        rec = Reconciler(book, FakeX(), task.Clock())
        app = attrs.evolve(make_app(config, store), rules=RulesService(book, rec, store, None))
        server = Server(self, app)
        workdir = self.mktemp()
        os.makedirs(workdir)
        args = command[1:] + [
            "run", f"{server.url}/openapi.json",
            "-H", f"Authorization: Bearer {SECRET_TOKEN}",
            "--include-path-regex", "rules|status|meta|subscriptions.json$",
            "--max-examples", "30", "-w", "1", "--seed", "4711",
            "--exclude-checks", "positive_data_acceptance",
            "--request-timeout", "10",
        ]
        env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""}
        out, err, code = yield utils.getProcessOutputAndValue(
            command[0], args, env=env, path=workdir, reactor=reactor)
        text = out.decode("utf-8", "replace") + err.decode("utf-8", "replace")
        self.assertEqual(code, 0, text[-6000:])
        m = re.search(r"(\d+) generated, (\d+) passed", text)
        self.assertTrue(m and m.group(1) == m.group(2), text[-3000:])
