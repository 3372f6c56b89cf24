"""Authentication through Starlette's ``AuthenticationMiddleware`` (``http.PrincipalBackend``).

Credentials are checked once per request, before routing, into ``request.user`` / ``request.auth``;
a refused credential is raised by the route (``http.caller``), so every surface keeps the exact
401 it answered before the middleware (the bodies below were recorded from the per-route
``principal_of`` version). GetStream's paths and WebSockets authenticate themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import jwt
import pytest
import websockets
from conftest import SECRET, TIMEOUT
from getstream_support import GETSTREAM, GS_KEY
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from server.http import caller

EXPIRED = jwt.encode({"sub": "alice", "exp": int(time.time()) - 60}, SECRET)
FORGED = jwt.encode({"sub": "alice", "exp": int(time.time()) + 600}, "another-secret-" + "y" * 24)
ACTIVITY = {"verb": "post", "object": "o:1"}


def _problem(detail: str, path: str) -> dict[str, Any]:
    return {
        "type": "urn:feedserver:problem:unauthorized",
        "title": "Unauthorized",
        "status": 401,
        "detail": detail,
        "instance": path,
    }


def _velt(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "status": "UNAUTHENTICATED"}}


PROBLEM = "application/problem+json"
JSON = "application/json"
ADD = "/v1/feeds/f:1/activities"

#: (method, path, request headers) → (content type, body); every answer is a 401 without
#: WWW-Authenticate. Recorded before the middleware replaced the per-route principal_of calls.
REFUSALS = [
    ("POST", ADD, {"Authorization": "Basic abc"}, PROBLEM, _problem("Authorization must be 'Bearer <token>'", ADD)),
    ("POST", ADD, {"Authorization": "Bearer " + EXPIRED}, PROBLEM, _problem("token expired", ADD)),
    (
        "POST",
        ADD,
        {"Authorization": "Bearer " + FORGED},
        PROBLEM,
        _problem("invalid token: Signature verification failed", ADD),
    ),
    ("POST", ADD, {"Authorization": "Bearer not.a.token"}, PROBLEM, _problem("malformed token", ADD)),
    ("POST", ADD, {"X-API-Key": "nope"}, PROBLEM, _problem("unknown API key", ADD)),
    ("POST", ADD, {}, PROBLEM, _problem("authentication required for feed f:1", ADD)),
    (
        "GET",
        "/v1/feeds/public:1/activities",
        {"Authorization": "Bearer " + EXPIRED},
        PROBLEM,
        _problem("token expired", "/v1/feeds/public:1/activities"),
    ),
    (
        "GET",
        "/v1/feeds/f:1/followers",
        {"Authorization": "Bearer " + EXPIRED},
        PROBLEM,
        _problem("token expired", "/v1/feeds/f:1/followers"),
    ),
    (
        "GET",
        "/v1/reactions/abc",
        {"Authorization": "Bearer " + EXPIRED},
        PROBLEM,
        _problem("token expired", "/v1/reactions/abc"),
    ),
    (
        "GET",
        "/v1/notifications",
        {"Authorization": "Bearer " + EXPIRED},
        PROBLEM,
        _problem("token expired", "/v1/notifications"),
    ),
    (
        "POST",
        "/api/activity-stream",
        {"Authorization": "Bearer " + EXPIRED},
        PROBLEM,
        _problem("token expired", "/api/activity-stream"),
    ),
    (
        "POST",
        "/v1/activity-entries",
        {"Authorization": "Bearer " + EXPIRED},
        PROBLEM,
        _problem("token expired", "/v1/activity-entries"),
    ),
    (
        "POST",
        "/v2/activities/add",
        {},
        JSON,
        _velt("x-velt-auth-token is required (one of this server's JWTs or API keys)"),
    ),
    ("POST", "/v2/activities/add", {"x-velt-auth-token": EXPIRED}, JSON, _velt("token expired")),
    ("POST", "/v2/activities/add", {"x-velt-auth-token": "Bearer " + EXPIRED}, JSON, _velt("token expired")),
    ("POST", "/v2/activities/add", {"x-velt-auth-token": "nokey"}, JSON, _velt("unknown API key")),
    ("POST", "/v2/activities/add", {"Authorization": "Bearer " + EXPIRED}, JSON, _velt("token expired")),
    ("POST", "/v2/activities/get", {"Authorization": "Basic x"}, JSON, _velt("Authorization must be 'Bearer <token>'")),
    (
        "GET",
        f"/api/v1.0/feed/user/1/?api_key={GS_KEY}",
        {"Authorization": EXPIRED, "Stream-Auth-Type": "jwt"},
        JSON,
        {
            "code": 3,
            "detail": "signature is invalid: Signature verification failed",
            "exception": "SignatureException",
            "status_code": 401,
        },
    ),
    (
        "GET",
        f"/api/v1.0/feed/user/1/?api_key={GS_KEY}",
        {"Authorization": "Bearer " + EXPIRED, "Stream-Auth-Type": "jwt"},
        JSON,
        {
            "code": 3,
            "detail": "signature is invalid: Signature verification failed",
            "exception": "SignatureException",
            "status_code": 401,
        },
    ),
    (
        "GET",
        "/api/v1.0/feed/user/1/?api_key=wrong",
        {},
        JSON,
        {"code": 2, "detail": "api_key not found or invalid", "exception": "ApiKeyException", "status_code": 401},
    ),
]


@pytest.fixture
async def gs_server(server_factory):
    """A server with public feeds and the GetStream dialect on."""
    return await server_factory(auth={"public_feeds": ["public:*"]}, getstream=GETSTREAM)


def _spy(srv: Any) -> Counter[str]:
    """Count the Authenticator's credential checks (the real methods still run)."""
    calls: Counter[str] = Counter()
    for name in ("from_headers", "from_credential"):
        real: Callable[..., Any] = getattr(srv.app.auth, name)

        async def counted(*args: Any, _real: Callable[..., Any] = real, _name: str = name) -> Any:
            calls[_name] += 1
            return await _real(*args)

        setattr(srv.app.auth, name, counted)
    return calls


async def _probe(request: Request) -> JSONResponse:
    """What the middleware left on the request, and what ``caller`` makes of it."""
    user = request.user
    try:
        found: Any = caller(request).sub
    except Exception as exc:
        found = {"error": type(exc).__name__, "detail": str(exc)}
    return JSONResponse(
        {
            "user": type(user).__name__,
            "authenticated": user.is_authenticated,
            "identity": user.identity,
            "display_name": user.display_name,
            "scopes": request.auth.scopes,
            "caller": found,
        }
    )


@pytest.mark.parametrize(("method", "path", "headers", "content_type", "body"), REFUSALS)
async def test_refusals_keep_their_exact_answers(gs_server, method, path, headers, content_type, body):
    """Each surface answers a missing, bad or expired credential exactly as before the middleware."""
    r = await gs_server.http().request(method, path, headers=headers, content=b"{}" if method == "POST" else None)
    assert r.status_code == 401
    assert r.headers["content-type"] == content_type
    assert "www-authenticate" not in r.headers
    got = r.json()
    if path.startswith("/api/v1.0/"):
        assert got.pop("duration").endswith("ms")
    assert got == body


@pytest.mark.parametrize("path", ["/", "/healthz", "/openapi.json", "/asyncapi.json", "/docs", "/metrics"])
async def test_public_routes_stay_open_with_refused_credentials(gs_server, path):
    """A refused credential is only raised by routes that ask for the caller."""
    for headers in ({"Authorization": "Bearer " + EXPIRED}, {"Authorization": "Basic x"}, {"X-API-Key": "nope"}):
        r = await gs_server.http().get(path, headers=headers)
        assert r.status_code == 200, (path, headers, r.text)


async def test_request_user_and_auth_come_from_the_middleware(gs_server):
    """Any route sees the caller in ``request.user``/``request.auth`` without decoding anything itself."""
    gs_server.app.http.router.routes.insert(0, Route("/v1/probe", _probe, methods=["GET"]))
    http = gs_server.http()
    token = gs_server.token("alice", {"f:*": ["read"]}, name="Alice")
    r = await http.get("/v1/probe", headers={"Authorization": f"Bearer {token}"})
    assert r.json() == {
        "user": "FeedUser",
        "authenticated": True,
        "identity": "alice",
        "display_name": "Alice",
        "scopes": ["authenticated"],
        "caller": "alice",
    }
    admin = gs_server.token("root", admin=True)
    r = await http.get("/v1/probe", headers={"Authorization": f"Bearer {admin}"})
    assert r.json()["scopes"] == ["authenticated", "admin"]
    r = await http.get("/v1/probe")
    assert r.json() == {
        "user": "FeedUser",
        "authenticated": False,
        "identity": "",
        "display_name": "",
        "scopes": [],
        "caller": None,
    }
    r = await http.get("/v1/probe", headers={"Authorization": f"Bearer {EXPIRED}"})
    assert r.json() == {
        "user": "FeedUser",
        "authenticated": False,
        "identity": "",
        "display_name": "",
        "scopes": [],
        "caller": {"error": "Unauthorized", "detail": "token expired"},
    }


async def test_credentials_are_checked_once_per_request(gs_server):
    """One check per request, in the middleware; an authenticated route is reached through it."""
    calls = _spy(gs_server)
    token = gs_server.token("alice", {"f:*": ["read", "write"]})
    http = gs_server.http(token)
    r = await http.post(ADD, json=ACTIVITY)
    assert r.status_code == 201
    assert calls == Counter(from_headers=1)
    r = await http.get(ADD)
    assert r.status_code == 200 and len(r.json()["results"]) == 1
    assert calls == Counter(from_headers=2)
    # Velt: x-velt-auth-token wins over Authorization, and only it is checked.
    velt = {"data": {"organizationId": "o", "documentId": "d", "activityIds": []}}
    velt_token = gs_server.token("bob", {"org:o:doc:*": ["read"]})
    r = await gs_server.http().post(
        "/v2/activities/get",
        json=velt,
        headers={"x-velt-auth-token": velt_token, "Authorization": f"Bearer {EXPIRED}"},
    )
    assert r.status_code == 200, r.text
    assert calls == Counter(from_headers=2, from_credential=1)


async def test_own_auth_paths_and_websockets_are_not_decoded(gs_server):
    """GetStream's paths and WebSocket handshakes cost the middleware nothing and are never refused by it."""
    calls = _spy(gs_server)
    ours = gs_server.token("alice", {"f:*": ["read"]})
    r = await gs_server.http().get(
        f"/api/v1.0/feed/user/1/?api_key={GS_KEY}", headers={"Authorization": f"Bearer {ours}"}
    )
    assert r.status_code == 401  # GetStream's own check: our token is not signed with its secret
    url = gs_server.ws_url.removesuffix("/v1/ws") + "/faye"
    async with asyncio.timeout(TIMEOUT):
        conn = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {EXPIRED}"})
        await conn.close()
    assert sum(calls.values()) == 0
    # /v1/ws never passes through the middleware: the endpoint checks the header itself (once).
    await gs_server.ws(ours, auth="header")
    assert calls == Counter(from_headers=1)
