"""The upstream client's timeouts in tests (docs/reliability.md#tests-that-cannot-flake).

A read timeout turns a slow answer into ``unknown``: on a busy machine an answer that normally takes
milliseconds has taken 2.9 s. So every test that is not about timeouts gives the client ``GENEROUS``
ones; the tests that are about a timeout ask for ``SHORT`` ones and a sandbox that sleeps well past
them (``timeout_s`` 2.5 s or more against 1.5 s).
"""

from __future__ import annotations

GENEROUS: dict[str, str] = {"UPSTREAM_CONNECT_TIMEOUT": "10", "UPSTREAM_READ_TIMEOUT": "60"}
SHORT: dict[str, str] = {"UPSTREAM_CONNECT_TIMEOUT": "1.0", "UPSTREAM_READ_TIMEOUT": "1.5"}
