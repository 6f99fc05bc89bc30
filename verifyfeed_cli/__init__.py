"""``verifyfeed``: the operators' command line (``python -m verifyfeed_cli`` or the console script).

It reads the same tables, queues and reports as the functions, through the core's stores, and
changes state only through their conditional transitions. Usage, exit codes and the runbook:
``verifyfeed --help`` and ``docs/operations.md``.
"""
