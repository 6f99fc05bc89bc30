"""Work handed to a thread pool runs in the context of the invocation that handed it over.

``ThreadPoolExecutor.submit`` does not carry ``contextvars`` to the worker thread: what the
invocation set there (Powertools' thread-safe logger keys; on the local stack, the role its AWS
calls sign with, local/iam.py) would be missing from the work done on the pool.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import Executor, Future


def submit[**P, T](pool: Executor, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
    """``pool.submit(fn, ...)``, run in a copy of the caller's context (one copy per task: a
    context cannot be entered by two threads at once)."""
    context = contextvars.copy_context()
    return pool.submit(lambda: context.run(fn, *args, **kwargs))
