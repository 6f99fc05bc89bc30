"""``WireInt``: a number or a string of ASCII digits, within a signed 64-bit ``long``."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import Field, TypeAdapter, ValidationError

from verifyfeed.models.wire import LONG_MAX, LONG_MIN, WireInt

WIRE_INT: TypeAdapter[int] = TypeAdapter(WireInt)
RECORD_ID: TypeAdapter[int] = TypeAdapter(Annotated[WireInt, Field(ge=1)])  # as the callback reads `id`


def test_the_bounds_are_a_signed_long() -> None:
    assert (LONG_MIN, LONG_MAX) == (-9_223_372_036_854_775_808, 9_223_372_036_854_775_807)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12, 12),
        ("12", 12),
        (LONG_MAX, LONG_MAX),
        (str(LONG_MAX), LONG_MAX),
        (LONG_MIN, LONG_MIN),
        (0, 0),
    ],
)
def test_read_within_a_long(value: Any, expected: int) -> None:
    assert WIRE_INT.validate_python(value) == expected
    assert WIRE_INT.validate_json(f"{value}" if isinstance(value, int) else f'"{value}"') == expected


@pytest.mark.parametrize(
    "value",
    [LONG_MAX + 1, str(LONG_MAX + 1), LONG_MIN - 1, 10**40, str(10**40), "9" * 5000],
    ids=["long+1", "long+1-string", "long-min-1", "41-digits", "41-digits-string", "5000-digits"],
)
def test_beyond_a_long_is_a_validation_error(value: Any) -> None:
    with pytest.raises(ValidationError):
        WIRE_INT.validate_python(value)


def test_a_json_number_beyond_a_long_is_a_validation_error() -> None:
    for text in (str(LONG_MAX + 1), str(10**40), str(LONG_MIN - 1)):
        with pytest.raises(ValidationError):
            WIRE_INT.validate_json(text)


@pytest.mark.parametrize("value", [True, 1.0, "1.0", " 1", "+1", "-1", "１", "", None])
def test_never_a_boolean_a_float_or_a_loose_string(value: Any) -> None:
    with pytest.raises(ValidationError):
        WIRE_INT.validate_python(value)


def test_a_narrower_field_keeps_the_long_ceiling() -> None:
    assert RECORD_ID.validate_python(str(LONG_MAX)) == LONG_MAX
    for value in (0, LONG_MAX + 1):
        with pytest.raises(ValidationError):
            RECORD_ID.validate_python(value)
