"""Use cases, on the interfaces of ``ports.py`` only: ``splitter`` (file → batches; ``ledger``:
what was sent already), ``uploader`` (batch → upstream; ``bisection`` of a refused batch),
``transitions`` (audit results, shared by the callback and the poller), ``callback``, ``poller``,
``progress`` and ``reports``."""
