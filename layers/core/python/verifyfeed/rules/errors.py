"""The two exceptions the rules raise: ``RuleViolation`` (one broken rule, by its code in the reason
catalogue, docs/decisions.md#reason-catalogue) and ``RowRejected`` (a carrier-audit row with every
violation found, in field order). No text names the offending value, because these strings end up
in logs and downloadable reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from verifyfeed.reasons import CATALOGUE, Param, Reason


class RuleViolation(ValueError):
    """A value broke one rule. ``rule`` is a stable code of the catalogue (``"phone.format"``,
    ``verifyfeed/reasons.py``), ``field`` the input field it concerns when the rule knows it,
    ``params`` what the catalogue's texts need besides the column (``max``, ``detail`` ...; a
    parameter named ``*_column`` holds another field's name). ``reason()`` gives its texts."""

    def __init__(self, rule: str, field: str = "", **params: Param) -> None:
        if rule not in CATALOGUE:
            raise ValueError(f"no catalogue entry for rule {rule!r} (verifyfeed/reasons.py)")
        super().__init__(rule)
        self.rule = rule
        self.field = field
        self.params = params

    def reason(self, labels: Mapping[str, str] | None = None) -> Reason:
        """The reason, its columns named by ``labels`` (field → label; by default the field itself,
        or for a rule that does not know its field the rule's subject, ``phone`` of ``phone.format``)."""
        field = self.field or self.rule.split(".", 1)[0]
        named = Reason(self.rule, (("column", field), *self.params.items()))
        return named.relabelled(labels) if labels else named

    @property
    def message(self) -> str:
        """The English text, with the fields' own names."""
        return self.reason().en

    def __str__(self) -> str:
        """``"<rule>: <message>"``."""
        return f"{self.rule}: {self.message}"

    def __repr__(self) -> str:
        return f"RuleViolation({self.rule!r}, field={self.field!r}, **{self.params!r})"

    def in_field(self, field: str) -> RuleViolation:
        """The same violation attributed to ``field``."""
        return RuleViolation(self.rule, field, **self.params)


class RowRejected(ValueError):
    """A row broke one or more rules; ``violations`` lists all of them."""

    def __init__(self, violations: Iterable[RuleViolation]) -> None:
        self.violations: list[RuleViolation] = list(violations)
        super().__init__("; ".join(str(v) for v in self.violations))

    @property
    def rules(self) -> list[str]:
        return [v.rule for v in self.violations]
