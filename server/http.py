"""HTTP plumbing shared by the native routes and the dialects: bodies, JSON, problems, principals."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from typing import Any

from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError, BaseUser
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .acl import Principal
from .auth import Authenticator
from .errors import BadRequest, FeedError, PayloadTooLarge, RateLimited, RequestTimeout, Unauthorized, Unavailable
from .models import dumps, loads
from .ratelimit import RateLimit

log = logging.getLogger("feedserver.http")

PROBLEM_TYPE = "application/problem+json"


class JSONBytes(Response):
    """A JSON response from already-encoded bytes (stored activities are spliced, not re-encoded)."""

    media_type = "application/json"


def json_response(value: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Encode ``value`` with orjson."""
    return JSONBytes(dumps(value), status_code=status_code, headers=headers)


def problem_response(exc: FeedError, instance: str | None = None) -> Response:
    """An RFC 9457 problem response for ``exc``."""
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return Response(dumps(exc.problem(instance)), status_code=exc.status, headers=headers, media_type=PROBLEM_TYPE)


async def read_json(request: Request, max_bytes: int) -> Any:
    """The request body decoded as JSON: 413 over ``max_bytes``, 400 when malformed or empty."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"request body over {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"request body over {max_bytes} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise BadRequest("a JSON body is required")
    return loads(body)


class FeedUser(BaseUser):
    """``request.user``: the caller's ``Principal`` — or, when its credentials were refused, the
    error, raised by the route through ``caller`` so each surface answers in its own shape."""

    def __init__(self, principal: Principal, error: FeedError | None = None) -> None:
        self.principal = principal
        self.error = error

    @property
    def is_authenticated(self) -> bool:
        return self.error is None and self.principal.authenticated

    @property
    def display_name(self) -> str:
        return self.principal.name or self.principal.sub or ""

    @property
    def identity(self) -> str:
        return self.principal.sub or ""


class PrincipalBackend(AuthenticationBackend):
    """Starlette authentication backend: every HTTP request's credentials are checked once, before
    routing (``AuthenticationMiddleware``), into ``request.user`` (a ``FeedUser``) and
    ``request.auth`` (scopes ``authenticated``, ``admin``).

    It never refuses a request itself: anonymous callers may read public feeds, public routes need
    no credentials, and a refused credential is kept on the user for the route to raise (``caller``)
    in its dialect's error shape. WebSocket scopes and the paths under ``own_auth`` (dialects that
    authenticate themselves, e.g. GetStream's ``api_key`` + JWT) are left alone: nothing is decoded
    for them. ``token_headers`` are ``(path prefix, header)`` pairs: under that prefix, a bare JWT
    or API key in that header (Velt's ``x-velt-auth-token``) wins over ``Authorization``.
    """

    def __init__(
        self,
        auth: Authenticator,
        *,
        own_auth: tuple[str, ...] = (),
        token_headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.auth = auth
        self.own_auth = own_auth
        self.token_headers = token_headers

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        scope = conn.scope
        path: str = scope["path"]
        if scope["type"] != "http" or path.startswith(self.own_auth):
            return None
        try:
            principal = await self._principal(conn.headers, path)
        except FeedError as exc:
            return AuthCredentials(), FeedUser(self.auth.anonymous, exc)
        if not principal.authenticated:
            return AuthCredentials(), FeedUser(principal)
        scopes = ["authenticated", "admin"] if principal.admin else ["authenticated"]
        return AuthCredentials(scopes), FeedUser(principal)

    async def _principal(self, headers: Headers, path: str) -> Principal:
        for prefix, name in self.token_headers:
            if path.startswith(prefix):
                credential = (headers.get(name) or "").strip()
                if credential:
                    return await self.auth.from_credential(credential)
        return await self.auth.from_headers(headers)


def caller(conn: HTTPConnection) -> Principal:
    """The caller of a request, as ``PrincipalBackend`` found it (anonymous without credentials);
    raises its ``Unauthorized`` when the credentials were refused."""
    user = conn.scope.get("user")
    if not isinstance(user, FeedUser):
        raise RuntimeError(f"{conn.url.path}: no AuthenticationMiddleware(PrincipalBackend) in front of this route")
    if user.error is not None:
        raise user.error
    return user.principal


def auth_error_response(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    """``AuthenticationMiddleware``'s ``on_error``, should a backend ever raise: a 401 problem."""
    return problem_response(Unauthorized(str(exc)), conn.url.path)


class RateLimitMiddleware:
    """HTTP requests over ``limit`` get 429 + ``Retry-After``; keyed by the caller's credential
    (bearer token, API key or Velt auth token, hashed) or, without one, its address. Health and
    metrics endpoints are exempt. ``render`` shapes the error (dialects answer in their own format).
    """

    EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})
    CREDENTIALS = ("authorization", "x-api-key", "x-velt-auth-token")

    def __init__(self, app: ASGIApp, limit: RateLimit, render: Callable[[str, FeedError], Response]) -> None:
        self.app = app
        self.limit = limit
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.EXEMPT:
            headers = Headers(scope=scope)
            credential = next((headers[h] for h in self.CREDENTIALS if h in headers), None)
            if credential:
                key = "c:" + hashlib.sha256(credential.encode()).hexdigest()[:24]
            else:
                key = "a:" + str((scope.get("client") or ("?",))[0])
            try:
                self.limit.check(key)
            except RateLimited as exc:
                await self.render(scope["path"], exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimits:
    """Bound how long a request may take to deliver its body, and how many may be doing so at once.

    A client that declares ``Content-Length: 1000`` and sends 10 bytes would otherwise hold a
    connection (and the handler waiting on it) forever. This wraps ``receive``: the whole body
    must arrive within ``timeout`` seconds of the handler asking for it (else ``RequestTimeout``,
    408), and at most ``max_readers`` requests of this process may be receiving a body at once
    (else ``Unavailable``, 503 + Retry-After). Both errors surface from the handler's body read, so
    each surface renders them in its own error format; the connection is then closed
    (``Connection: close``), since the rest of the body is still on its way.
    """

    def __init__(self, app: ASGIApp, *, timeout: float, max_readers: int) -> None:
        self.app = app
        self.timeout = timeout
        self.max_readers = max_readers
        self.readers = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        reading = False  # this request holds a reader slot
        done = False  # its body has arrived (later receives only wait for a disconnect)
        cut = False  # its body was abandoned: close the connection after the response
        deadline: float | None = None

        async def bounded_receive() -> Message:
            nonlocal reading, done, cut, deadline
            if done:
                return await receive()
            if deadline is None:
                if self.readers >= self.max_readers:
                    cut = done = True
                    raise Unavailable(
                        f"more than {self.max_readers} requests are sending their body; try again", retry_after=1
                    )
                self.readers += 1
                reading = True
                deadline = asyncio.get_running_loop().time() + self.timeout
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                cut = done = True
                self._release(reading)
                reading = False
                raise RequestTimeout(f"the request body did not arrive within {self.timeout:g}s") from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                done = True
                self._release(reading)
                reading = False
            return message

        async def closing_send(message: Message) -> None:
            if cut and message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, bounded_receive, closing_send)
        finally:
            self._release(reading)

    def _release(self, reading: bool) -> None:
        if reading:
            self.readers -= 1


async def client_gone_handler(request: Request, exc: Exception) -> Response:
    """The client hung up before its body was complete: expected, not an error (nobody reads
    the answer, which only gives uvicorn something to close the cycle with)."""
    log.debug("%s %s: client disconnected before sending its whole body", request.method, request.url.path)
    return problem_response(BadRequest("client disconnected before the body was complete"), request.url.path)


async def feed_error_handler(request: Request, exc: Exception) -> Response:
    """Every ``FeedError`` becomes its problem document."""
    assert isinstance(exc, FeedError)
    return problem_response(exc, request.url.path)


class _HTTPProblem(FeedError):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 as problems too."""
    assert isinstance(exc, HTTPException)
    response = problem_response(_HTTPProblem(exc.status_code, str(exc.detail)), request.url.path)
    if exc.headers:
        response.headers.update(exc.headers)
    if exc.status_code == 405:  # Starlette names the first matching route's methods only
        response.headers["Allow"] = ", ".join(_allowed(request))
    return response


def _allowed(request: Request) -> list[str]:
    """Every method some route of the app serves at this path (a path's methods may span routes)."""
    router = getattr(request.app, "router", None)
    methods = {
        method
        for route in getattr(router, "routes", ())
        if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] != Match.NONE
        for method in route.methods
    }
    return sorted(methods)


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    """A bug: log it with its traceback, answer a plain 500 problem (no internals leaked)."""
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(_HTTPProblem(500, "internal server error"), request.url.path)
