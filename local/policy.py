"""IAM policy evaluation, as AWS documents it, for the local stack's gate (``local.iam``): ``evaluate``
a role's identity policies and a resource's policy in the same account against one ``Request``.
Why not moto's own evaluator: docs/decisions.md#least-privilege.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any

Context = Mapping[str, Sequence[str]]  # condition key (lower-case) -> its values in the request


class Effect(Enum):
    ALLOW = "allow"
    DENY = "deny"  # an explicit deny
    NONE = "none"  # no statement applies: denied unless something else allows


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # "allowed by <policy>/<sid>", "explicitly denied by ...", "no policy allows it"


@dataclass(frozen=True)
class Request:
    """One authorisation AWS makes: an action on a resource, with the request's condition keys."""

    action: str  # "dynamodb:GetItem"
    resource: str  # an ARN, or "*"
    context: Context
    principal_arn: str = ""  # the role's ARN (matched by a resource policy's Principal)
    account_id: str = ""


@dataclass(frozen=True)
class Policy:
    name: str
    document: Mapping[str, Any]
    resource_policy: bool = False  # a bucket or queue policy: its statements name a Principal


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


@lru_cache(maxsize=4096)
def _pattern(glob: str, ignore_case: bool) -> re.Pattern[str]:
    # IAM wildcards are * and ? only (fnmatch's [...] means nothing in IAM)
    escaped = glob.replace("[", "[[]")
    return re.compile(fnmatch.translate(escaped), re.IGNORECASE if ignore_case else 0)


def matches(glob: str, value: str, *, ignore_case: bool = False) -> bool:
    return _pattern(glob, ignore_case).match(value) is not None


def _statement_applies(statement: Mapping[str, Any], request: Request) -> bool:
    """Its ``Action`` (or ``NotAction``) and ``Resource`` (or ``NotResource``) match, with ``*`` and
    ``?`` wildcards, case-insensitively for actions; and every condition holds."""
    if "NotAction" in statement:
        if any(matches(a, request.action, ignore_case=True) for a in _as_list(statement["NotAction"])):
            return False
    elif not any(matches(a, request.action, ignore_case=True) for a in _as_list(statement.get("Action"))):
        return False
    if "NotResource" in statement:
        if any(matches(r, request.resource) for r in _as_list(statement["NotResource"])):
            return False
    elif "Resource" in statement and not any(
        matches(r, request.resource) for r in _as_list(statement["Resource"])
    ):
        return False
    # an operator not understood: an Allow does not allow, a Deny denies (conditions_hold)
    unknown = str(statement.get("Effect")) == "Deny"
    return conditions_hold(statement.get("Condition") or {}, request.context, unknown=unknown)


def _principal_matches(statement: Mapping[str, Any], request: Request) -> bool:
    """A resource policy statement's ``Principal`` (or ``NotPrincipal``) against the caller."""
    caller = {request.principal_arn, request.account_id, f"arn:aws:iam::{request.account_id}:root"}
    if "NotPrincipal" in statement:
        named = _principals(statement["NotPrincipal"])
        return "*" not in named and not (caller & named)
    named = _principals(statement.get("Principal"))
    return "*" in named or bool(caller & named)


def _principals(value: Any) -> set[str]:
    if value == "*":
        return {"*"}
    if isinstance(value, Mapping):
        return {str(v) for v in _as_list(value.get("AWS"))}
    return set()


def evaluate(policies: Iterable[Policy], request: Request) -> Decision:
    """AWS's logic for one request (https://docs.aws.amazon.com/IAM/latest/UserGuide/
    reference_policies_evaluation-logic.html): an explicit ``Deny`` in any policy wins; else an
    ``Allow`` in an identity policy allows (or in the resource's policy, when it names the
    principal); else the request is denied (implicit deny)."""
    allowed_by = ""
    for policy in policies:
        for index, statement in enumerate(_as_list(policy.document.get("Statement"))):
            if policy.resource_policy and not _principal_matches(statement, request):
                continue
            if not _statement_applies(statement, request):
                continue
            where = f"{policy.name}/{statement.get('Sid') or index}"
            if str(statement.get("Effect")) == "Deny":
                return Decision(False, f"explicitly denied by {where}")
            if str(statement.get("Effect")) == "Allow" and not allowed_by:
                allowed_by = where
    if allowed_by:
        return Decision(True, f"allowed by {allowed_by}")
    return Decision(False, "no policy allows it")


# ---- conditions ------------------------------------------------------------------------------


def conditions_hold(conditions: Mapping[str, Any], context: Context, *, unknown: bool = False) -> bool:
    """Every operator's every key holds (AND); a key's listed values are alternatives (OR).

    The operators the template uses, and their families: ``String*``, ``Arn*``, ``Bool``, ``Null``,
    ``Numeric*``, ``…IfExists``, and the set qualifiers ``ForAllValues:`` and ``ForAnyValue:``. A key
    the request does not carry fails every operator but ``Null``, ``…IfExists``, the negated ones
    (``StringNotEquals`` …) and ``ForAllValues`` (vacuously true), as in AWS. ``unknown``: what an
    operator this module does not know counts as — the caller makes an ``Allow`` not allow and a
    ``Deny`` deny: nothing is allowed by a condition that is not understood."""
    lowered = {key.lower(): list(values) for key, values in context.items()}
    for operator, keys in conditions.items():
        if not isinstance(keys, Mapping):
            return unknown
        for key, expected in keys.items():
            held = _condition_holds(
                operator, lowered.get(str(key).lower()), [str(e) for e in _as_list(expected)]
            )
            if not (unknown if held is None else held):
                return False
    return True


def _condition_holds(operator: str, actual: list[str] | None, expected: list[str]) -> bool | None:
    """Whether the condition holds; None for an operator this module does not know."""
    qualifier, _, op = operator.rpartition(":")
    if_exists = op.endswith("IfExists")
    op = op.removesuffix("IfExists")
    if op == "Null":
        is_null = actual is None or actual == []
        return any(str(e).lower() == str(is_null).lower() for e in expected)
    compare = _OPERATORS.get(op)
    if compare is None or qualifier not in ("", "ForAllValues", "ForAnyValue"):
        return None  # not understood (conditions_hold)
    if not actual:
        # ForAllValues: vacuously true; a negated operator: nothing equals, so "not equal" holds
        return qualifier == "ForAllValues" or if_exists or op in _NEGATED
    if qualifier == "ForAllValues":
        return all(compare(value, expected) for value in actual)
    # single-valued keys and ForAnyValue: any of the request's values matches any expected value
    return any(compare(value, expected) for value in actual)


def _negated(positive: Any) -> Any:
    return lambda value, expected: not positive(value, expected)


def _string_equals(value: str, expected: list[str]) -> bool:
    return value in expected


def _string_equals_ignore_case(value: str, expected: list[str]) -> bool:
    return value.lower() in {e.lower() for e in expected}


def _string_like(value: str, expected: list[str]) -> bool:
    return any(matches(e, value) for e in expected)


def _bool(value: str, expected: list[str]) -> bool:
    return value.lower() in {e.lower() for e in expected}


def _numeric(test: Any) -> Any:
    def compare(value: str, expected: list[str]) -> bool:
        try:
            return any(test(float(value), float(e)) for e in expected)
        except ValueError:
            return False

    return compare


_NEGATED = frozenset(
    {
        "StringNotEquals",
        "StringNotEqualsIgnoreCase",
        "StringNotLike",
        "ArnNotEquals",
        "ArnNotLike",
        "NumericNotEquals",
    }
)

_OPERATORS: dict[str, Any] = {
    "StringEquals": _string_equals,
    "StringNotEquals": _negated(_string_equals),
    "StringEqualsIgnoreCase": _string_equals_ignore_case,
    "StringNotEqualsIgnoreCase": _negated(_string_equals_ignore_case),
    "StringLike": _string_like,
    "StringNotLike": _negated(_string_like),
    "ArnEquals": _string_like,  # ARN operators match like StringLike, segment by segment
    "ArnLike": _string_like,
    "ArnNotEquals": _negated(_string_like),
    "ArnNotLike": _negated(_string_like),
    "Bool": _bool,
    "NumericEquals": _numeric(lambda a, b: a == b),
    "NumericNotEquals": _numeric(lambda a, b: a != b),
    "NumericLessThan": _numeric(lambda a, b: a < b),
    "NumericLessThanEquals": _numeric(lambda a, b: a <= b),
    "NumericGreaterThan": _numeric(lambda a, b: a > b),
    "NumericGreaterThanEquals": _numeric(lambda a, b: a >= b),
}
