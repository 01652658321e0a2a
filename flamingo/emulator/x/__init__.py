"""The emulator's X API v2 half: ``EmulatorOptions(source="x")`` or ``flamingo emulator --source x``.

``corpus.py`` (v2 posts and compliance events), ``rules.py`` (rule parser
and matcher), ``ruleset.py`` (the app's rules and what each post matches),
``rulesapi.py`` (the rules endpoints), ``stream.py`` (the stream endpoints'
parameters, the world's sequence of posts, one connection's view),
``service.py`` (routes, limits, connections), ``connections.py`` (the
Connections API), ``problems.py`` (X's error bodies), ``limits.py``
(rate-limit windows, the usage cap).
"""

from flamingo.emulator.x.rules import RuleSyntaxError, matches, parse
from flamingo.emulator.x.service import RULES_PATH, TIERS, XService
from flamingo.emulator.x.stream import STREAMS

__all__ = ["XService", "STREAMS", "RULES_PATH", "TIERS", "parse", "matches", "RuleSyntaxError"]
