"""moto, the local AWS, behind cheroot: a maintained WSGI server that keeps connections open.

moto's own servers (``python -m moto.server``, ``ThreadedMotoServer``) run on werkzeug's
development server, which answers every request with ``Connection: close`` (werkzeug 3 does so even
over HTTP/1.1): each AWS call of a test, the demo or the benchmark then opens a new TCP connection
and a new server thread, which is not how botocore talks to AWS (it keeps its connections) and
doubles the time of a call (4.7 → 2.3 ms for a ``GetItem``). Here the same moto WSGI application
(``DomainDispatcherApplication(create_backend_app)``) runs on cheroot (CherryPy's server: HTTP/1.1
keep-alive, chunked and ``Expect: 100-continue`` request bodies, ``TCP_NODELAY``) with enough
threads that SQS long polls do not hold up the other calls. (waitress 3.0 was tried first: it never
answers an empty ``PutObject``, an ``Expect: 100-continue`` request with ``Content-Length: 0``.)

DynamoDB requests are served one at a time (``serialise_dynamodb``, the one piece no server
gives): moto checks a write's condition and then applies the write in plain Python, without a lock,
so under concurrency two conditional writes on one item could both pass — which DynamoDB never
allows, and which would make the exactly-once tests (two workers racing for one batch's send lease)
test moto instead of our code. Other services (SQS long polls) are served concurrently.

- ``MotoServer(host, port=0).start()`` runs it on a daemon thread; ``get_host_and_port()``,
  ``stop()`` — the interface of ``moto.server.ThreadedMotoServer``.
- ``python -m local.aws_server [--port N] [--host H]`` runs it in its own process; with port 0 (the
  default) the kernel picks a free port, and the first line printed is ``listening on http://H:P``.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable, Iterable
from typing import Any

from cheroot import wsgi

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def serialise_dynamodb(app: WsgiApp) -> WsgiApp:
    """``app`` with its DynamoDB requests run one at a time, body included (see the module doc)."""
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


def moto_app() -> WsgiApp:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    return serialise_dynamodb(DomainDispatcherApplication(create_backend_app))


def create(host: str, port: int) -> wsgi.Server:
    """The server, bound (an ``OSError`` when the port is taken) but not yet serving (``serve()``)."""
    # 64 threads: every SQS long poll holds one for up to 20 s (idle keep-alive connections hold none)
    server = wsgi.Server((host, port), moto_app(), numthreads=64)
    server.prepare()
    return server


class MotoServer:
    """``moto.server.ThreadedMotoServer`` with keep-alive connections."""

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
    parser = argparse.ArgumentParser(prog="python -m local.aws_server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    args = parser.parse_args(argv)
    server = create(args.host, args.port)
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
