"""``GET`` / ``POST /2/tweets/search/stream/rules``: X's rules API over a ``RuleBook``.

Shapes follow X's OpenAPI document: ``GET`` pages the rules
(``max_results`` 1–1000, ``pagination_token``, an ``ids`` filter) with
``meta.result_count``, ``meta.sent`` and ``meta.next_token``; ``POST`` takes
exactly one of ``{"add": [{"value", "tag"}]}`` or ``{"delete": {"ids" |
"values": [...]}}`` (or ``?delete_all=true``), ``?dry_run=true`` validates
without committing, and answers ``data`` (the rules created), ``errors``
(one per refused rule) and ``meta.summary`` (``created``, ``not_created``,
``valid``, ``invalid`` / ``deleted``, ``not_deleted``); ``GET .../rules/counts``
gives the app's rule count and the tier's cap.

An add is all or nothing, as on X: if any rule is refused (invalid syntax,
too long, a duplicate of a rule the app has or of another in the request,
over the tier's rule count) none is created, and the valid ones count in
``not_created``. A delete removes what exists and reports the rest. Pure
apart from the clock (``meta.sent``); the HTTP edge is ``service.py``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from datetime import datetime, timezone

import attrs
import orjson
from twisted.internet.interfaces import IReactorTime

from flamingo._types import JsonObject
from flamingo.emulator.x.problems import PROBLEMS, invalid_request
from flamingo.emulator.x.rules import Node, RuleSyntaxError, parse
from flamingo.emulator.x.ruleset import Rule, RuleBook

__all__ = ["Tier", "RulesApi", "page_token", "token_offset", "APP_ID"]

_ID = re.compile(r"^[0-9]{1,19}$")
APP_ID = "29061982"  # the one app the emulator stands for
ParamError = tuple[str, str | None, str]


@attrs.frozen
class Tier:
    name: str
    max_rules: int
    max_length: int


def page_token(offset: int) -> str:
    """A 16-character base32hex token for a page offset (X's tokens have that shape)."""
    return base64.b32hexencode(offset.to_bytes(10, "big")).decode().lower()


def token_offset(token: str) -> int | None:
    if len(token) != 16:
        return None
    try:
        return int.from_bytes(base64.b32hexdecode(token.upper()), "big")
    except ValueError:
        return None


def _bool(name: str, raw: str, errors: list[ParamError]) -> bool:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    errors.append((name, raw, f"The `{name}` query parameter value [{raw}] is not one of [true,false]"))
    return False


class RulesApi:
    """Answers rules requests with ``(status, JSON body)``."""

    def __init__(self, book: RuleBook, tier: Tier, clock: IReactorTime):
        self.book = book
        self.tier = tier
        self.clock = clock

    def _sent(self) -> str:
        now = self.clock.seconds()
        return datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + \
            "%03dZ" % int((now % 1) * 1000)

    # -- GET ------------------------------------------------------------------
    def get(self, pairs: Sequence[tuple[str, str]]) -> tuple[int, bytes]:
        params = dict(pairs)
        errors: list[ParamError] = []
        for key in params:
            if key not in ("ids", "max_results", "pagination_token"):
                errors.append((key, params[key], f"The query parameter [{key}] is not one of "
                                                 "[ids,max_results,pagination_token]"))
        ids: list[str] | None = None
        if "ids" in params:
            ids = [i.strip() for i in params["ids"].split(",")]
            for rule_id in ids:
                if not _ID.match(rule_id):
                    errors.append(("ids", rule_id, f"The `ids` query parameter value [{rule_id}] does not match "
                                                   "^[0-9]{1,19}$"))
        max_results = 1000
        if "max_results" in params:
            raw = params["max_results"]
            if not raw.isdigit() or not 1 <= int(raw) <= 1000:
                errors.append(("max_results", raw, f"The `max_results` query parameter value [{raw}] is not "
                                                   "between 1 and 1000"))
            else:
                max_results = int(raw)
        offset = 0
        if "pagination_token" in params:
            found = token_offset(params["pagination_token"])
            if found is None:
                errors.append(("pagination_token", params["pagination_token"],
                               f"The `pagination_token` query parameter value [{params['pagination_token']}] "
                               "is not valid"))
            else:
                offset = found
        if errors:
            return 400, invalid_request(errors)
        rules = list(self.book.rules.values())
        if ids is not None:
            wanted = set(ids)
            rules = [r for r in rules if r.id in wanted]
        page = rules[offset : offset + max_results]
        meta: JsonObject = {"sent": self._sent(), "result_count": len(page)}
        if offset + max_results < len(rules):
            meta["next_token"] = page_token(offset + max_results)
        body: JsonObject = {"data": [r.to_json() for r in page]} if page else {}
        body["meta"] = meta
        return 200, orjson.dumps(body)

    def counts(self, pairs: Sequence[tuple[str, str]]) -> tuple[int, bytes]:
        """``GET .../rules/counts``: the app's rule count and the tier's cap (one app, one project)."""
        params = dict(pairs)
        known = ("all_project_client_apps", "cap_per_client_app", "cap_per_project", "client_app_rules_count",
                 "project_rules_count")
        errors: list[ParamError] = []
        for key in params:
            if key != "rules_count.fields":
                errors.append((key, params[key], f"The query parameter [{key}] is not one of [rules_count.fields]"))
        wanted = [f.strip() for f in params.get("rules_count.fields", "").split(",") if f.strip()]
        for field in wanted:
            if field not in known:
                errors.append(("rules_count.fields", field, f"The `rules_count.fields` query parameter value "
                                                            f"[{field}] is not one of [{','.join(known)}]"))
        if errors:
            return 400, invalid_request(errors)
        count = len(self.book.rules)
        data: JsonObject = {"cap_per_client_app": str(self.tier.max_rules), "cap_per_project": str(self.tier.max_rules),
                            "client_app_rules_count": {"client_app_id": APP_ID, "rule_count": count},
                            "project_rules_count": str(count)}
        if "all_project_client_apps" in wanted:
            data["all_project_client_apps"] = [{"client_app_id": APP_ID, "rule_count": count}]
        return 200, orjson.dumps({"data": data})

    # -- POST -----------------------------------------------------------------
    def post(self, pairs: Sequence[tuple[str, str]], raw_body: bytes) -> tuple[int, bytes]:
        params = dict(pairs)
        errors: list[ParamError] = []
        for key in params:
            if key not in ("dry_run", "delete_all"):
                errors.append((key, params[key], f"The query parameter [{key}] is not one of [delete_all,dry_run]"))
        dry_run = _bool("dry_run", params["dry_run"], errors) if "dry_run" in params else False
        delete_all = _bool("delete_all", params["delete_all"], errors) if "delete_all" in params else False
        if errors:
            return 400, invalid_request(errors)
        body: object = {}
        if raw_body.strip():
            try:
                body = orjson.loads(raw_body)
            except orjson.JSONDecodeError as e:
                return 400, invalid_request([("body", None, f"The request body is not valid JSON: {e}")])
        if not isinstance(body, dict):
            return 400, invalid_request([("body", None, "The request body must be a JSON object")])
        extra = set(body) - {"add", "delete"}
        if extra:
            return 400, invalid_request([("body", None, f"Unknown field(s) {sorted(extra)}: the body holds exactly "
                                                        "one of add or delete")])
        if delete_all:
            if body:
                return 400, invalid_request([("delete_all", "true", "delete_all=true takes no add or delete")])
            return self._delete([r.id for r in self.book.rules.values()], [], dry_run)
        if ("add" in body) == ("delete" in body):
            return 400, invalid_request([("body", None, "Exactly one of add or delete must be specified")])
        if "add" in body:
            return self._add(body["add"], dry_run)
        return self._delete_body(body["delete"], dry_run)

    def _add(self, items: object, dry_run: bool) -> tuple[int, bytes]:
        if not isinstance(items, list) or not items:
            return 400, invalid_request([("add", None, "add must be a non-empty list of {value, tag} objects")])
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("value"), str) \
                    or set(item) - {"value", "tag"} or not isinstance(item.get("tag", ""), str):
                return 400, invalid_request([("add", None, f"Each rule to add is {{\"value\": str, \"tag\": str}}, "
                                                           f"not {orjson.dumps(item).decode()[:200]}")])
        tier = self.tier
        errors: list[JsonObject] = []
        valid: list[tuple[str, str | None, Node]] = []
        seen: set[str] = set()
        for item in items:
            value, tag = item["value"], item.get("tag")
            if len(value) > tier.max_length:
                errors.append(self._invalid(value, f"Rule is {len(value)} characters long; the {tier.name} tier "
                                                   f"allows {tier.max_length}"))
                continue
            try:
                node = parse(value)
            except RuleSyntaxError as e:
                errors.append(self._invalid(value, str(e)))
                continue
            existing = self.book.by_value(value)
            if existing is not None or value in seen:
                dup: JsonObject = {"value": value, "title": "DuplicateRule", "type": PROBLEMS + "duplicate-rules"}
                if existing is not None:
                    dup["id"] = existing.id
                errors.append(dup)
                continue
            seen.add(value)
            valid.append((value, tag, node))
        room = tier.max_rules - len(self.book.rules)
        if len(valid) > room:
            for value, _, _ in valid[max(0, room):]:
                errors.append({"value": value, "title": "RulesCapExceeded", "type": PROBLEMS + "rule-cap",
                               "detail": f"Adding this rule would exceed the {tier.name} tier's cap of "
                                         f"{tier.max_rules} rules"})
            valid = valid[: max(0, room)]
        summary = {"created": 0, "not_created": len(items), "valid": len(valid), "invalid": len(errors)}
        out: JsonObject = {}
        if not errors:
            rules = [Rule(self.book.new_id(), value, tag, node) for value, tag, node in valid]
            if not dry_run:
                self.book.commit(added=rules)
            summary.update(created=len(rules), not_created=0)
            out["data"] = [r.to_json() for r in rules]
        else:
            out["errors"] = errors
        out["meta"] = {"sent": self._sent(), "summary": summary}
        return (201 if summary["created"] and not dry_run else 200), orjson.dumps(out)

    @staticmethod
    def _invalid(value: str, detail: str) -> JsonObject:
        return {"value": value, "details": [detail], "title": "UnprocessableEntity",
                "type": PROBLEMS + "invalid-rules"}

    def _delete_body(self, spec: object, dry_run: bool) -> tuple[int, bytes]:
        if not isinstance(spec, dict) or set(spec) - {"ids", "values"} or not spec:
            return 400, invalid_request([("delete", None, "delete is {\"ids\": [...]} or {\"values\": [...]}")])
        ids, values = spec.get("ids", []), spec.get("values", [])
        if not isinstance(ids, list) or not all(isinstance(i, str) and _ID.match(i) for i in ids):
            return 400, invalid_request([("delete.ids", None, "ids must be a list of rule ids (strings of digits)")])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            return 400, invalid_request([("delete.values", None, "values must be a list of strings")])
        if not ids and not values:
            return 400, invalid_request([("delete", None, "delete needs at least one id or value")])
        return self._delete(ids, values, dry_run)

    def _delete(self, ids: list[str], values: list[str], dry_run: bool) -> tuple[int, bytes]:
        doomed: list[str] = []
        errors: list[JsonObject] = []
        for rule_id in ids:
            if rule_id in self.book.rules and rule_id not in doomed:
                doomed.append(rule_id)
            else:
                errors.append(self._missing("id", rule_id))
        for value in values:
            rule = self.book.by_value(value)
            if rule is not None and rule.id not in doomed:
                doomed.append(rule.id)
            else:
                errors.append(self._missing("value", value))
        if doomed and not dry_run:
            self.book.commit(deleted=doomed)
        out: JsonObject = {"meta": {"sent": self._sent(),
                                    "summary": {"deleted": len(doomed), "not_deleted": len(errors)}}}
        if errors:
            out["errors"] = errors
        return 200, orjson.dumps(out)

    @staticmethod
    def _missing(key: str, what: str) -> JsonObject:
        return {key: what, "errors": [{"parameters": {}, "message": "Rule does not exist"}],
                "title": "Invalid Request", "detail": "One or more parameters to your request was invalid.",
                "type": PROBLEMS + "invalid-request"}
