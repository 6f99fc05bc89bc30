"""Use cases, on the interfaces of ``ports.py`` only: ``splitter`` (file → batches; ``ledger``:
what was sent already), ``uploader`` (a work message → ``batch_upload``, decided by
``batch_decisions``, with ``bisection`` of a refused batch; or → ``audit_submission``; ``delivery``:
their lease and retries), ``transitions`` (audit results, shared by the callback and the poller),
``callback``, ``poller``, ``progress`` and ``reports``."""
