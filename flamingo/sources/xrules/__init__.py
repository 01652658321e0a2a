"""X filter rules, declaratively: Flamingo's rule set in Redis, reconciled with X's.

``RuleBook`` (book.py) holds the desired rules; ``Reconciler`` (reconciler.py)
makes X's equal to them through ``TreqRulesApi`` (client.py); the pure core
(what may be added, what to change at X) is model.py. ``RulesService``
(service.py) runs them in the daemon for ``source: x``, stream ``filter``.
"""

from flamingo.sources.xrules.book import RuleBook
from flamingo.sources.xrules.client import RulesApi, RulesApiError, TreqRulesApi
from flamingo.sources.xrules.model import TIERS, Limits, Rule
from flamingo.sources.xrules.reconciler import Reconciler

__all__ = ["RuleBook", "Reconciler", "RulesApi", "RulesApiError", "TreqRulesApi", "Rule", "Limits", "TIERS"]
