"""The two exceptions the rules raise.

``RuleViolation(rule, message, field="")``: one broken rule. ``rule`` is a short stable code
(``"phone.format"``), ``message`` a human English reason, ``field`` optionally the input field it
concerns; ``str(exc)`` is ``"<rule>: <message>"``. Messages name the rule, never the offending
value, because these strings end up in logs and downloadable reports.

``RowRejected(violations)``: a carrier-audit row with every violation found, in field order.
"""

from __future__ import annotations

from collections.abc import Iterable


class RuleViolation(ValueError):
    """A value broke one rule; ``rule`` is stable, ``message`` is for people."""

    def __init__(self, rule: str, message: str, field: str = "") -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}"

    def __repr__(self) -> str:
        return f"RuleViolation({self.rule!r}, {self.message!r}, field={self.field!r})"

    def in_field(self, field: str) -> RuleViolation:
        """The same violation attributed to ``field`` (the message is prefixed with it)."""
        return RuleViolation(self.rule, f"{field}: {self.message}", field)


class RowRejected(ValueError):
    """A row broke one or more rules; ``violations`` lists all of them."""

    def __init__(self, violations: Iterable[RuleViolation]) -> None:
        self.violations: list[RuleViolation] = list(violations)
        super().__init__("; ".join(str(v) for v in self.violations))

    @property
    def rules(self) -> list[str]:
        return [v.rule for v in self.violations]
