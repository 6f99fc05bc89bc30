"""Reading the seeds' numbers: the same field is a number in one place and a String in another.

``/carrierAudit/get`` types ``status`` as String in its table and shows a number in its mock; the
lost-repair ``state`` is a string whose values are digits; ids are ``long`` in one table and
``int`` in another. Where the seeds disagree with themselves we read both, and nothing looser.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, StrictInt


def _wire_int(value: object) -> object:
    """An integer, or a string of ASCII digits only; never a boolean, a float or "1.0"/" 1"/"１"."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            raise ValueError("not a whole number")
        return int(value)
    return value


WireInt = Annotated[StrictInt, BeforeValidator(_wire_int)]
"""An int on the wire, as a number (``12``) or a numeric string (``"12"``)."""
