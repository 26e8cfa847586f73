"""The explorer's guard: read-only, path sanity, and the access token.

A pure ASGI middleware (no per-request task overhead). Every request must be GET or HEAD.
Paths holding ``..`` segments, backslashes or NUL bytes, also after repeated URL decoding,
are refused with 404 and logged. With a token, every request must carry it: header
``X-Salience-Token`` (or ``Authorization: Bearer``), the ``salience_token`` cookie, or
``?token=`` once, which sets the cookie. Every response carries a ``Server-Timing`` header.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("salience.server")

COOKIE = "salience_token"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def new_token() -> str:
    return secrets.token_urlsafe(24)


def suspicious(raw_path: str) -> bool:
    """True when a request path tries to leave its folder, in plain or encoded form."""
    path = raw_path
    for _ in range(4):
        if "\\" in path or "\0" in path or any(seg in ("..", ".") for seg in path.split("/")):
            return True
        decoded = unquote(path)
        if decoded == path:
            return False
        path = decoded
    return True


class Guard:
    """ASGI middleware enforcing read-only access, sane paths and the optional token."""

    def __init__(self, app: ASGIApp, token: str | None = None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _reply(send, 405, "the explorer is read-only", [(b"allow", b"GET, HEAD")])
            return
        raw = scope.get("raw_path") or scope["path"].encode()
        if suspicious(raw.decode("latin-1")):
            log.warning("refused path %r from %s", raw.decode("latin-1"), _client(scope))
            await _reply(send, 404, "not found")
            return
        extra: list[tuple[bytes, bytes]] = []
        if self.token is not None:
            supplied, from_query = self._supplied(scope)
            if supplied is None or not secrets.compare_digest(
                supplied.encode(), self.token.encode()
            ):
                await _reply(send, 401, "this explorer needs its access token (?token=...)")
                return
            if from_query:
                cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                extra.append((b"set-cookie", cookie.encode()))
        start = time.perf_counter()

        async def send_timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - start) * 1000
                timing = (b"server-timing", b"app;dur=%.1f" % ms)
                message["headers"] = [*message.get("headers", []), *extra, timing]
            await send(message)

        await self.app(scope, receive, send_timed)

    def _supplied(self, scope: Scope) -> tuple[str | None, bool]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if "x-salience-token" in headers:
            return headers["x-salience-token"], False
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip(), False
        for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
            if key == "token":
                return value, True
        if "cookie" in headers:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(headers["cookie"])
            except Exception:
                return None, False
            if COOKIE in jar:
                return jar[COOKIE].value, False
        return None, False


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"


async def _reply(
    send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})
