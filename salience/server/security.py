"""The explorer's guard: read-only, bounded requests, the Host check, the access token, and the
security headers on every response.

A pure ASGI middleware (no per-request task overhead), in this order:

- a path over :data:`MAX_PATH` or a query string over :data:`MAX_QUERY` bytes is refused with
  414 before anything else reads it;
- every request must be GET or HEAD (405);
- without a token, the ``Host`` header must name one of the hosts the server is bound to
  (127.0.0.1, localhost, ::1 and the bound name): a web page whose own name was rebound to
  127.0.0.1 (DNS rebinding) sends its own name and is refused with 400;
- with a token, every request must carry it, whatever its host: header ``X-Salience-Token``
  (or ``Authorization: Bearer``), the ``salience_token`` cookie, or ``?token=`` once, which
  sets the cookie (401);
- paths holding ``..`` segments, backslashes or NUL bytes, also after repeated URL decoding,
  are refused with 404 and logged.

Every response, errors included, carries a Content-Security-Policy (the page's allows only its
own scripts, styles, images and API; every other response allows nothing and is sandboxed),
``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer``,
``Cross-Origin-Resource-Policy: same-origin`` and a ``Server-Timing`` header. An exception that
escapes a route becomes a one-line 500 (the traceback goes to the log only).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("salience.server")

COOKIE = "salience_token"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MAX_PATH = 8192  # bytes of the raw request path
MAX_QUERY = 8192  # bytes of the raw query string

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
STRICT_CSP = (
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; sandbox"
)
_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
PAGES = {"/"}  # the explorer's one HTML page


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


def host_name(value: str) -> str:
    """The name in a ``Host`` header (or a ``--host`` value), without port, brackets, the
    trailing dot of a fully qualified name, or case."""
    v = value.strip().lower()
    if v.startswith("["):  # [::1]:8765
        v = v[1 : v.find("]")] if "]" in v else v[1:]
    elif v.count(":") == 1:  # name:port (a bare IPv6 address has more colons)
        v = v.partition(":")[0]
    return v.rstrip(".")


def security_headers(path: str, frame_ancestors: Sequence[str] = ()) -> list[tuple[bytes, bytes]]:
    """The headers every response to ``path`` carries. ``frame_ancestors`` (origins such as
    ``http://localhost:8888``) may embed the page in a frame, as a notebook does; nothing
    else may, and no other response can be framed."""
    if path not in PAGES:
        return [(b"content-security-policy", STRICT_CSP.encode()), *_COMMON]
    if not frame_ancestors:
        return [(b"content-security-policy", PAGE_CSP.encode()), *_COMMON]
    allowed = " ".join(["'self'", *frame_ancestors])
    csp = PAGE_CSP.replace("frame-ancestors 'none'", f"frame-ancestors {allowed}")
    others = [h for h in _COMMON if h[0] not in (b"x-frame-options", b"cross-origin-opener-policy")]
    return [(b"content-security-policy", csp.encode()), *others]


class Guard:
    """ASGI middleware enforcing bounded, read-only requests to the bound hosts, the optional
    token, and the security headers (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        token: str | None = None,
        hosts: Iterable[str] = (),
        frame_ancestors: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.token = token
        self.hosts = LOOPBACK | {host_name(h) for h in hosts}
        for origin in frame_ancestors:
            if not re.fullmatch(r"https?://[\w.\[\]:-]+(:(\d+|\*))?", origin):
                raise ValueError(f"not an origin: {origin!r}")
        self.frame_ancestors = tuple(frame_ancestors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        headers = security_headers("")  # the guard's own answers are JSON, never the page
        raw = scope.get("raw_path") or path.encode()
        if len(raw) > MAX_PATH or len(scope.get("query_string", b"")) > MAX_QUERY:
            log.warning("refused an over-long request (%d bytes) from %s", len(raw), _client(scope))
            await _reply(send, 414, "request path or query too long", headers)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _reply(
                send, 405, "the explorer is read-only", [*headers, (b"allow", b"GET, HEAD")]
            )
            return
        if self.token is None:
            host = _header(scope, b"host")
            if host is None or host_name(host) not in self.hosts:
                log.warning("refused Host %r from %s", host, _client(scope))
                await _reply(
                    send,
                    400,
                    f"this explorer answers only to {', '.join(sorted(self.hosts))}; "
                    "serve it with --token to reach it under another name",
                    headers,
                )
                return
        if suspicious(raw.decode("latin-1")):
            log.warning("refused path %r from %s", raw.decode("latin-1"), _client(scope))
            await _reply(send, 404, "not found", headers)
            return
        extra = security_headers(path, self.frame_ancestors)
        if self.token is not None:
            supplied, from_query = self._supplied(scope)
            if supplied is None or not secrets.compare_digest(
                supplied.encode(), self.token.encode()
            ):
                await _reply(
                    send, 401, "this explorer needs its access token (?token=...)", headers
                )
                return
            if from_query:
                cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                extra.append((b"set-cookie", cookie.encode()))
        start = time.perf_counter()
        started = False

        async def send_guarded(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                ms = (time.perf_counter() - start) * 1000
                timing = (b"server-timing", b"app;dur=%.1f" % ms)
                own = {k.lower() for k, _ in extra}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in own]
                message["headers"] = [*kept, *extra, timing]
            await send(message)

        try:
            await self.app(scope, receive, send_guarded)
        except Exception as exc:
            if started:  # the response is cut short; the server closes the connection
                raise
            log.error("error serving %s", path, exc_info=exc)
            await _reply(send, 500, "internal error; the server log has the details", headers)

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


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"


async def _reply(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"detail": detail}).encode()
    own = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": own + headers})
    await send({"type": "http.response.body", "body": body})
