"""Pure normalisation and validation of the values a row carries, one module a kind of value and one
a kind of row (``lost_repair``, ``carrier_audit``).

Nothing here does I/O or reads the clock. Every rejection is a ``RuleViolation`` whose ``rule`` is a
short stable code (``"id_number.check_digit"``) and whose ``message`` never contains the rejected
value, so reasons can be logged and written to reports as they are.
"""
