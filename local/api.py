"""API Gateway in front of the callback: a REST API proxy integration, as a WSGI app served by
cheroot (as moto is: it reads chunked bodies and keeps connections alive)."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from http.client import responses
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from local.events import api_gateway_proxy_event
from local.runtime import InvocationError, LocalFunction

if TYPE_CHECKING:
    from local.resources import FunctionSpec

log = logging.getLogger("local.runner")

API_MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit

Answer = tuple[int, list[tuple[str, str]], bytes]  # status, headers, body
Handle = Callable[[str, str, list[tuple[str, str]], bytes, str], Answer]


def api_route(spec: FunctionSpec | None, stage: str) -> tuple[str, str, str]:
    """The callback's route: (method, path, stage)."""
    route = spec.api_routes[0] if spec and spec.api_routes else None
    props = route.properties if route else {}
    path = str(props.get("Path") or "/callbacks/carrier-audit")
    return str(props.get("Method") or "POST").upper(), path, str((route.stage if route else None) or stage)


def handle(
    callback: LocalFunction | None,
    default_stage: str,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
) -> Answer:
    """What API Gateway answers for one request: 403 off the route, 502 when the function fails or
    answers what a proxy integration cannot use, else the function's answer."""
    if callback is None:
        return api_error(503, "Service Unavailable")
    api_method, api_path, stage = api_route(callback.spec, default_stage)
    route = urlsplit(path).path
    if route.startswith(f"/{stage}/"):
        route = route.removeprefix(f"/{stage}")
    if route.rstrip("/") != api_path.rstrip("/") or method != api_method:
        return api_error(403, "Missing Authentication Token")
    query = urlsplit(path).query
    event = api_gateway_proxy_event(
        method,
        route + (f"?{query}" if query else ""),
        headers,
        body,
        stage=stage,
        resource=api_path,
        source_ip=source_ip,
    )
    try:
        result = callback.invoke(event)
    except InvocationError:
        return api_error(502, "Internal server error")
    return proxy_response(result)


def api_error(status: int, message: str) -> Answer:
    return status, [("Content-Type", "application/json")], json.dumps({"message": message}).encode()


def proxy_response(result: Any) -> Answer:
    """A Lambda proxy integration response, checked as API Gateway checks it (else 502)."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode", 200), int):
        log.error("callback returned a malformed proxy response")
        return api_error(502, "Internal server error")
    headers: list[tuple[str, str]] = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((str(name), str(v)) for v in values)
    raw = result.get("body")
    if raw is None:
        body = b""
    elif result.get("isBase64Encoded"):
        body = base64.b64decode(str(raw))
    else:
        body = str(raw).encode("utf-8")
    return int(result.get("statusCode", 200)), headers, body


def wsgi_app(handle_request: Handle) -> Callable[[dict[str, Any], Callable[..., Any]], list[bytes]]:
    """The WSGI app answering with ``handle_request``; 413 past ``API_MAX_BODY_BYTES``. WSGI
    upper-cases header names and keeps a repeated header's last value (as the proxy event's
    ``headers`` does); the callback reads them case-insensitively."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        headers = [
            (name.removeprefix("HTTP_").replace("_", "-").title(), str(value))
            for name, value in environ.items()
            if name.startswith("HTTP_") or name in ("CONTENT_TYPE", "CONTENT_LENGTH")
        ]
        body = environ["wsgi.input"].read(API_MAX_BODY_BYTES + 1)
        if len(body) > API_MAX_BODY_BYTES:  # API Gateway's answer (cheroot's own 413 is not its JSON)
            status, out, payload = api_error(413, "Request Too Long")  # cheroot then closes the connection
        else:
            status, out, payload = handle_request(
                environ["REQUEST_METHOD"],
                environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/"),
                headers,
                body,
                environ.get("REMOTE_ADDR", ""),
            )
        kept = [
            (k, v) for k, v in out if k.lower() not in ("content-length", "connection", "transfer-encoding")
        ]
        start_response(
            f"{status} {responses.get(status, 'Unknown')}", [*kept, ("Content-Length", str(len(payload)))]
        )
        return [payload]

    return app
