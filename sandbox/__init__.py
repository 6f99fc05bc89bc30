"""The upstream sandbox: a local stand-in for the lost-repair and carrier-audit APIs.

Run it with ``python -m sandbox``; from Python use ``start_sandbox(SandboxConfig(...))``.
See sandbox/README.md.
"""

from sandbox.config import SandboxConfig
from sandbox.faults import Fault
from sandbox.server import SandboxHandle, start_sandbox

__all__ = ["Fault", "SandboxConfig", "SandboxHandle", "start_sandbox"]
