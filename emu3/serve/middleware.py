"""Plain ASGI middleware: request-body limit (413), bearer-token auth (401) and per-route timing.

They sit outside FastAPI's routing so that a request is refused before its body is parsed, and
so that every answer, errors included, is counted in the metrics.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable, Iterable

from emu3.serve.errors import error_body
from emu3.serve.metrics import Metrics

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_error(send: Send, status: int, message: str, code: str | None = None, headers=()) -> None:
    payload = json.dumps(error_body(status, message, None, code)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


class BodyLimit:
    """Read the whole body up front (at most `max_bytes`) and replay it; 413 beyond."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await send_error(send, 413, f"request body over {self.max_bytes} bytes", "request_too_large")
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left before sending its body
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                return await send_error(send, 413, f"request body over {self.max_bytes} bytes", "request_too_large")
        await self.app(scope, _replay(b"".join(chunks), receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later calls wait for the disconnect, as without this middleware

    return replay


class BearerAuth:
    """Requests under `prefixes` need `Authorization: Bearer <key>`."""

    def __init__(self, app: ASGIApp, key: str, prefixes: Iterable[str] = ("/v1/",)) -> None:
        self.app, self.expected, self.prefixes = app, f"Bearer {key}".encode(), tuple(prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefixes):
            given = dict(scope.get("headers", [])).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                headers = [(b"www-authenticate", b'Bearer realm="emu3"')]
                return await send_error(send, 401, "missing or wrong API key (Authorization: Bearer KEY)",
                                        "invalid_api_key", headers)  # fmt: skip
        await self.app(scope, receive, send)


class Timing:
    """Count every answer by route and status; time it until its last body byte is sent."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Iterable[str]) -> None:
        self.app, self.metrics, self.routes = app, metrics, frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in self.routes else "other"
        start, status = time.perf_counter(), 500

        async def timed_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.metrics.observe(route, status, time.perf_counter() - start)

        await self.app(scope, receive, timed_send)
