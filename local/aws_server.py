"""moto, the local AWS, behind cheroot: a maintained WSGI server that keeps connections open.

``MotoServer`` on a thread, or ``python -m local.aws_server`` in a process of its own (``main``):
moto's WSGI application behind the IAM gate, its DynamoDB requests one at a time, its
``SendMessage`` not counting the queue — each function says why. docs/architecture.md#local-stack,
docs/performance.md#what-changed-and-why.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from cheroot import wsgi

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def serialise_dynamodb(app: WsgiApp) -> WsgiApp:
    """``app`` with its DynamoDB requests run one at a time, body included, the one piece no server
    gives: moto checks a write's condition and then applies the write in plain Python, without a
    lock, so under concurrency two conditional writes on one item could both pass — which DynamoDB
    never allows, and which would make the exactly-once tests (two workers racing for one batch's
    send lease) test moto instead of our code. Other services (SQS long polls) are served
    concurrently."""
    lock = threading.Lock()

    def serialised(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            return app(environ, start_response)
        with lock:
            chunks = app(environ, start_response)
            try:
                return [b"".join(chunks)]
            finally:
                getattr(chunks, "close", lambda: None)()

    return serialised


def delayed(app: WsgiApp, latency_s: float) -> WsgiApp:
    """``app`` answering ``latency_s`` later (``--latency-ms``): the benchmark's model of an in-region
    round trip to AWS, which moto on the same host does not have."""
    if not latency_s:
        return app

    def late(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        chunks = app(environ, start_response)
        time.sleep(latency_s)  # outside serialise_dynamodb's lock: calls wait side by side, as on a network
        return chunks

    return late


_SENDING = threading.local()


def _send_without_counting() -> None:
    """``SQSBackend.send_message`` without counting the queue's messages. Idempotent.

    moto's ``SendMessage`` reads the queue's attributes to see whether content-based deduplication
    is on, and computing them counts the queue's messages three times: sending to a queue of *n*
    messages cost O(*n*), queueing a file's 1,000 batches about 5 s of moto's CPU (O(*n*²)), which
    SQS does not have. While a message is being sent, the three counts (not what it reads) are not
    computed; ``GetQueueAttributes`` still counts them."""
    from moto.sqs import models

    backend = models.SQSBackend
    if getattr(backend.send_message, "_verifyfeed_uncounted", False):
        return
    send = backend.send_message

    def send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        _SENDING.active = True
        try:
            return send(self, *args, **kwargs)
        finally:
            _SENDING.active = False

    send_message._verifyfeed_uncounted = True  # type: ignore[attr-defined]
    backend.send_message = send_message  # type: ignore[method-assign]
    for name in (
        "approximate_number_of_messages",
        "approximate_number_of_messages_delayed",
        "approximate_number_of_messages_not_visible",
    ):
        counted = getattr(models.Queue, name)

        def uncounted(queue: Any, __counted: Any = counted) -> int:
            return 0 if getattr(_SENDING, "active", False) else int(__counted.fget(queue))

        setattr(models.Queue, name, property(uncounted))


def moto_app(latency_s: float = 0.0) -> WsgiApp:
    """moto's own WSGI application (``DomainDispatcherApplication(create_backend_app)``); a request
    signed by a function's role is authorised by the IAM gate first (``local.iam.gate``: a refused
    one gets AWS's ``AccessDenied``)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from local.iam import gate

    _send_without_counting()
    # the IAM gate inside the DynamoDB lock: it reads a table's key schema from moto's backend
    return delayed(serialise_dynamodb(gate(DomainDispatcherApplication(create_backend_app))), latency_s)


def create(host: str, port: int, latency_s: float = 0.0) -> wsgi.Server:
    """The server, bound (an ``OSError`` when the port is taken) but not yet serving (``serve()``).

    cheroot (CherryPy's server: HTTP/1.1 keep-alive, chunked and ``Expect: 100-continue`` request
    bodies, ``TCP_NODELAY``) with enough threads that SQS long polls do not hold up the other
    calls. waitress 3.0 was tried first: it never answers an empty ``PutObject``, an ``Expect:
    100-continue`` request with ``Content-Length: 0``."""
    # 64 threads: every SQS long poll holds one for up to 20 s (idle keep-alive connections hold none)
    server = wsgi.Server((host, port), moto_app(latency_s), numthreads=64)
    server.prepare()
    return server


class MotoServer:
    """``moto.server.ThreadedMotoServer`` with keep-alive connections, and its interface:
    ``MotoServer(host, port=0).start()`` runs it on a daemon thread; ``get_host_and_port()``,
    ``stop()``. moto's own servers run on werkzeug's development server, which answers every request
    with ``Connection: close`` (werkzeug 3 even over HTTP/1.1): each AWS call then opens a new TCP
    connection and a new server thread, which is not how botocore talks to AWS (it keeps its
    connections) and doubles the time of a call (``GetItem`` 4.7 → 2.3 ms)."""

    def __init__(self, ip_address: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (ip_address, port)
        self._server: wsgi.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._server = create(*self._address)
        self._thread = threading.Thread(target=self._server.serve, name="moto", daemon=True)
        self._thread.start()

    def get_host_and_port(self) -> tuple[str, int]:
        assert self._server is not None, "start() first"
        host, port = self._server.bind_addr[:2]
        return str(host), int(port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def main(argv: list[str] | None = None) -> int:
    """``python -m local.aws_server [--port N] [--host H] [--latency-ms MS]``: with port 0 (the
    default) the kernel picks a free port, and the first line printed is ``listening on
    http://H:P``. ``--latency-ms`` holds every answer that long (``delayed``)."""
    parser = argparse.ArgumentParser(prog="python -m local.aws_server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="hold every answer this long")
    args = parser.parse_args(argv)
    server = create(args.host, args.port, args.latency_ms / 1000)
    host, port = server.bind_addr[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
