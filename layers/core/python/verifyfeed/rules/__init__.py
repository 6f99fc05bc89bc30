"""Pure normalisation and validation of the values a row carries.

Nothing here does I/O or reads the clock. Every rejection is a ``RuleViolation`` whose
``rule`` is a short stable code (``"id_number.check_digit"``) and whose ``message`` never
contains the rejected value, so reasons can be logged and written to reports as they are.

- ``text``          ``clean``: NFKC, invisible characters removed, whitespace stripped
- ``hashing``       SHA-256 helpers
- ``idcard``        resident ID numbers (GB 11643), legacy 15-digit conversion
- ``phone``         mainland mobile numbers
- ``names``         person names (lost-repair and carrier-audit flavours)
- ``authcode``      lost-repair ``authCode``
- ``plate``         vehicle licence plates
- ``lost_repair``   one lost-repair row → ``RepairRecord``
- ``carrier_audit`` one carrier-audit row → ``AuditParams`` (all violations at once)
"""
