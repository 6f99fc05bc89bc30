"""The HTTP face of the sandbox and its Python handle.

    with start_sandbox(SandboxConfig(api_key="k", callback_url="http://127.0.0.1:9000/cb")) as sb:
        requests.post(sb.url + "/verify/api/lost_repair_upload_data", json=...)
        assert sb.record_counts() == {...}

API paths are in ``sandbox.app.API_PATHS``; the admin API lives under ``/_sandbox/``
(sandbox/README.md). Bodies are never logged: carrier audits carry plaintext ID numbers.
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import struct
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

from pydantic import ValidationError

from sandbox.app import API_PATHS, AuditRecord, Reply, Sandbox
from sandbox.config import SandboxConfig
from sandbox.contract import china
from sandbox.faults import FaultInput
from sandbox.ledger import AcceptedRecord, LedgerEntry

__all__ = ["SandboxConfig", "SandboxHandle", "start_sandbox"]

log = logging.getLogger("sandbox")
MAX_BODY_BYTES = 10 * 1024 * 1024
ADMIN = "/_sandbox"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # a deep listen backlog: a burst of concurrent calls on a loaded machine must queue, not be
    # reset (socketserver's default of 5 reset some of 20 concurrent uploads under load)
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: Sandbox) -> None:
        self.app = app
        super().__init__(address, _Handler)

    def server_bind(self) -> None:  # skip HTTPServer's reverse DNS lookup (getfqdn), which can hang
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection error", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "verifyfeed-sandbox/1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed ACK
    timeout = 60  # idle keep-alive connections are closed after this

    @property
    def app(self) -> Sandbox:
        return cast(_Server, self.server).app

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)

    # --- plumbing -------------------------------------------------------------------------------

    def _path(self) -> str:
        return urlsplit(self.path).path.rstrip("/") or "/"

    def _body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._send_json(411, {"code": "10002", "message": "Content-Length required"})
            return None
        if int(length) > MAX_BODY_BYTES:
            self._send_json(413, {"code": "10002", "message": "body too large"})
            return None
        return self.rfile.read(int(length))

    def _send(
        self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client went away (e.g. it timed out first)
            self.close_connection = True

    def _send_json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8")

    def _reset(self) -> None:
        """Close the TCP connection with an RST and no reply at all."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass

    def _reply(self, reply: Reply) -> None:
        if reply.body is None:
            self._reset()
        else:
            self._send(reply.http_status, reply.body, reply.content_type, reply.headers)

    # --- verbs ----------------------------------------------------------------------------------

    def do_POST(self) -> None:
        path = self._path()
        body = self._body()
        if body is None:
            return
        if path in API_PATHS:
            self._reply(self.app.handle(path, body, dict(self.headers.items())))
        elif path.startswith(ADMIN + "/"):
            self._admin("POST", path, body)
        else:
            self._send_json(404, {"code": "40400", "message": "not found"})

    def do_GET(self) -> None:
        self._route("GET")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_PUT(self) -> None:
        self._route("PUT")

    def _route(self, method: str) -> None:
        path = self._path()
        if path in API_PATHS:
            self._send_json(405, {"code": "40500", "message": "use POST"})
        elif path.startswith(ADMIN + "/"):
            self._admin(method, path, b"")
        else:
            self._send_json(404, {"code": "40400", "message": "not found"})

    def _admin(self, method: str, path: str, body: bytes) -> None:
        app = self.app
        route = (method, path.removeprefix(ADMIN))
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            self._send_json(400, {"error": "body is not JSON"})
            return
        if route == ("GET", "/health"):
            self._send_json(200, {"status": "ok", "now": china(app.now()).isoformat()})
        elif route == ("GET", "/ledger"):
            self._send_json(200, {"entries": [e.to_dict() for e in app.ledger.entries()]})
        elif route == ("GET", "/ledger/records"):
            records = [r.to_dict() for r in app.ledger.accepted_records()]
            counts = app.ledger.record_counts()
            self._send_json(200, {"count": len(records), "records": records, "counts": counts})
        elif route == ("GET", "/audits"):
            self._send_json(200, {"audits": [a.to_dict() for a in app.audits()]})
        elif route == ("GET", "/faults"):
            self._send_json(200, {"faults": app.faults.snapshot()})
        elif route == ("POST", "/faults"):
            try:
                app.set_faults(payload if payload is not None else [])
            except ValidationError as exc:
                self._send_json(400, {"error": _reasons(exc)})
                return
            except (TypeError, ValueError) as exc:
                self._send_json(400, {"error": str(exc)})
                return
            self._send_json(200, {"faults": app.faults.snapshot()})
        elif route == ("DELETE", "/faults"):
            app.faults.clear()
            self._send_json(200, {"faults": []})
        elif route == ("GET", "/refuse"):
            self._send_json(200, {"records": app.refused()})
        elif route == ("POST", "/refuse"):
            wanted = payload.get("records") if isinstance(payload, dict) else None
            desc = payload.get("desc", "失败") if isinstance(payload, dict) else None
            refused: dict[str, str] | None = None
            if isinstance(wanted, list) and isinstance(desc, str):
                refused = {str(r): desc for r in wanted if isinstance(r, str)}
            elif isinstance(wanted, dict):
                refused = {str(k): v for k, v in wanted.items() if isinstance(v, str)}
            if refused is None or len(refused) != len(wanted or ()):
                expected = 'expected {"records": [idcode or authCode, ...], "desc": "..."}'
                self._send_json(400, {"error": expected})
                return
            app.refuse(refused)
            self._send_json(200, {"records": app.refused()})
        elif route == ("DELETE", "/refuse"):
            app.refuse([])
            self._send_json(200, {"records": {}})
        elif route == ("GET", "/clock"):
            self._send_json(200, {"now": china(app.now()).isoformat(), "mode": app.clock_mode()})
        elif route == ("POST", "/clock"):
            now = payload.get("now") if isinstance(payload, dict) else None
            if not isinstance(now, str):
                self._send_json(
                    400, {"error": 'expected {"now": "<ISO instant with offset>"} ("" = system clock)'}
                )
                return
            try:
                app.set_clock(now)
            except ValueError as exc:
                self._send_json(400, {"error": str(exc)})
                return
            self._send_json(200, {"now": china(app.now()).isoformat(), "mode": app.clock_mode()})
        elif route == ("POST", "/clock/advance"):
            seconds = payload.get("seconds") if isinstance(payload, dict) else None
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                self._send_json(400, {"error": 'expected {"seconds": <number >= 0>}'})
                return
            try:
                at = app.advance(float(seconds))
            except ValueError as exc:
                self._send_json(409, {"error": str(exc)})
                return
            self._send_json(200, {"now": china(at).isoformat()})
        elif route == ("POST", "/reset"):
            app.reset()
            self._send_json(200, {"status": "reset"})
        else:
            self._send_json(404, {"error": f"no admin route {method} {path}"})


def _reasons(exc: ValidationError) -> str:
    """A fault refused, in a line per reason: where (the list's index, the knob) and why."""
    return "; ".join(
        (".".join(str(part) for part in e["loc"]) + ": " if e["loc"] else "")
        + str(e["msg"]).removeprefix("Value error, ")
        for e in exc.errors()
    )


class SandboxHandle:
    """A running sandbox: its URL, its state, and the knobs. Also a context manager."""

    def __init__(self, app: Sandbox, server: _Server, thread: threading.Thread) -> None:
        self.app = app
        self.config = app.config
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else str(host)  # noqa: S104 - just a comparison
        self.port = int(port)
        self.url = f"http://{shown}:{self.port}"
        self._stopped = False

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.app.stop()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def ledger(self) -> list[LedgerEntry]:
        return self.app.ledger.entries()

    def accepted_records(self) -> list[AcceptedRecord]:
        return self.app.ledger.accepted_records()

    def record_counts(self) -> dict[str, int]:
        return self.app.ledger.record_counts()

    def audits(self) -> list[AuditRecord]:
        return self.app.audits()

    def audit(self, audit_id: int) -> AuditRecord | None:
        return next((a for a in self.app.audits() if a.id == audit_id), None)

    def set_faults(self, faults: FaultInput | Iterable[FaultInput]) -> None:
        self.app.set_faults(faults)

    def clear_faults(self) -> None:
        self.app.faults.clear()

    def refuse(self, records: Iterable[str] | Mapping[str, str], desc: str = "失败") -> None:
        """Answer ``state`` "0" (with ``desc``) to every batch holding one of these idcodes or authCodes."""
        self.app.refuse(records, desc)

    def set_clock(self, iso: str) -> None:
        self.app.set_clock(iso)

    def callbacks_done(self, timeout_s: float = 30.0) -> bool:
        """True once every callback started so far has made all its attempts (see ``Sandbox``)."""
        return self.app.callbacks_done(timeout_s)

    def advance(self, seconds: float) -> datetime:
        """Move a manual clock on; the audits that fall due are decided before this returns."""
        return self.app.advance(seconds)

    def now(self) -> datetime:
        return self.app.now()

    def reset(self) -> None:
        self.app.reset()

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_sandbox(config: SandboxConfig | None = None) -> SandboxHandle:
    """Run the sandbox on daemon threads; returns at once with the server listening."""
    app = Sandbox(config or SandboxConfig())
    server = _Server((app.config.host, app.config.port), app)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="sandbox-http", daemon=True
    )
    thread.start()
    app.start()
    return SandboxHandle(app, server, thread)
