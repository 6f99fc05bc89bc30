"""The reliability suite reuses the integration fixtures: the template's resources in a moto
server, the upstream sandbox over HTTP, ``Services`` with a FixedClock, and the four handlers."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from sandbox.server import SandboxHandle
from tests.integration.conftest import *  # noqa: F403
from tests.integration.conftest import NOW

_first_audit_ids = itertools.count(10_000_000, 1_000_000)


@pytest.fixture
def sandbox(sandbox_session: SandboxHandle) -> SandboxHandle:
    """The sandbox, reset, with audit record ids no earlier test has seen: upstream ids are
    unique for ever, but a reset sandbox restarts them while the audits table remembers."""
    app = sandbox_session.app
    app.config = dataclasses.replace(app.config, first_audit_id=next(_first_audit_ids))
    sandbox_session.reset()
    sandbox_session.set_clock(NOW)
    return sandbox_session
