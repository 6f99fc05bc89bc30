"""Use cases: ``splitter`` (file → batches), ``uploader`` (batch → upstream), ``transitions``
(audit results, shared by the callback and the poller), ``callback``, ``poller``, ``reports``."""
