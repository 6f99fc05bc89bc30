"""moto, the local AWS, behind an HTTP/1.1 server that keeps connections open.

moto's own servers (``python -m moto.server``, ``ThreadedMotoServer``) run on werkzeug's
development server, which answers every request with ``Connection: close``: each AWS call of a
test, the demo or the benchmark then opens a new TCP connection and a new server thread, which is
not how botocore talks to AWS (it keeps its HTTPS connections) and doubles the time of a call
(4.7 → 2.3 ms for a ``GetItem``). This server runs the same moto WSGI application
(``DomainDispatcherApplication(create_backend_app)``) behind the standard library's
``ThreadingHTTPServer`` with keep-alive and ``TCP_NODELAY``.

DynamoDB requests are served one at a time: moto checks a write's condition and then applies the
write in plain Python, without a lock, so under concurrency two conditional writes on one item
could both pass — which DynamoDB never allows, and which would make the exactly-once tests (two
workers racing for one batch's send lease) test moto instead of our code. Other services (SQS
long polls) are served concurrently.

moto's SQS ``SendMessage`` reads the queue's attributes to see whether content-based
deduplication is on, and computing them counts the queue's messages three times: sending to a
queue of *n* messages cost O(*n*), queueing a file's 1,000 batches about 5 s of moto's CPU
(O(*n*²)), which SQS does not have. While a message is being sent, the three message counts are
not computed (they are not what it reads); ``GetQueueAttributes`` still counts them
(``_send_without_counting``).

- ``MotoServer(host, port=0).start()`` runs it on a daemon thread; ``get_host_and_port()``,
  ``stop()`` — the interface of ``moto.server.ThreadedMotoServer``.
- ``python -m local.aws_server [--port N] [--host H] [--latency-ms MS]`` runs it in its own process;
  with port 0 (the default) the kernel picks a free port, and the first line printed is
  ``listening on http://H:P``. ``--latency-ms`` holds every answer that long before sending it
  (outside the DynamoDB lock, so concurrent requests wait side by side, as on a network): the
  benchmark's model of an in-region round trip to AWS, which moto on the same host does not have.
"""

from __future__ import annotations

import argparse
import io
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


_SENDING = threading.local()


def _send_without_counting() -> None:
    """``SQSBackend.send_message`` without counting the queue's messages (module doc). Idempotent."""
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


def moto_app() -> WsgiApp:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    _send_without_counting()
    app: WsgiApp = DomainDispatcherApplication(create_backend_app)
    return app


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every response carries a Content-Length
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed ACK
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after the chunk
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._body()
        path, _, query = self.path.partition("?")
        host, port = self.server.server_address[:2]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in self.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING"):
                continue
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            started[:] = [status, headers]

        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            with self.server.dynamodb_lock:  # one DynamoDB request at a time: see the module doc
                data = self._call(environ, start_response)
        else:
            data = self._call(environ, start_response)
        if self.server.latency_s:
            time.sleep(self.server.latency_s)  # the modelled round trip (--latency-ms)
        status, headers = started
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        declared = None
        for name, value in headers:
            if name.lower() == "content-length":
                declared = value
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        # a HEAD answer declares the length the GET would have, and has no body
        head = self.command == "HEAD"
        self.send_header("Content-Length", declared if head and declared else str(len(data)))
        self.end_headers()
        if not head and data:
            self.wfile.write(data)

    def _call(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> bytes:
        chunks = self.server.app(environ, start_response)
        try:
            return b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: WsgiApp, latency_s: float = 0.0) -> None:
        self.app = app
        self.latency_s = latency_s
        self.dynamodb_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:  # skip HTTPServer's reverse DNS lookup (getfqdn), which can hang
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class MotoServer:
    """``moto.server.ThreadedMotoServer`` with keep-alive connections."""

    def __init__(self, ip_address: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (ip_address, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._server = _Server(self._address, moto_app())
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)
        self._thread.start()

    def get_host_and_port(self) -> tuple[str, int]:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.aws_server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="hold every answer this long")
    args = parser.parse_args(argv)
    server = _Server((args.host, args.port), moto_app(), args.latency_ms / 1000)
    host, port = server.server_name, server.server_port
    print(f"listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
