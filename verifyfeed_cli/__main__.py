"""``python -m verifyfeed_cli`` and the ``verifyfeed`` console script."""

from __future__ import annotations

import sys

from verifyfeed_cli.app import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
