"""Reading the seeds' numbers: the same field is a number in one place and a String in another.

``/carrierAudit/get`` types ``status`` as String in its table and shows a number in its mock; the
lost-repair ``state`` is a string whose values are digits; ids are ``long`` in one table and
``int`` in another. Where the seeds disagree with themselves we read both, and nothing looser;
every such number is a signed 64-bit ``long`` at most (docs/decisions.md#wire-types).
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import BeforeValidator, Field, StrictInt

LONG_MIN: Final = -(2**63)
LONG_MAX: Final = 2**63 - 1


def _wire_int(value: object) -> object:
    """An integer, or a string of ASCII digits only; never a boolean, a float or "1.0"/" 1"/"１"."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            raise ValueError("not a whole number")
        return int(value)
    return value


# the bounds sit before the BeforeValidator: they constrain the int it returns, a string's too
WireInt = Annotated[StrictInt, Field(ge=LONG_MIN, le=LONG_MAX), BeforeValidator(_wire_int)]
"""An int on the wire, as a number (``12``) or a numeric string (``"12"``), within a ``long``."""
