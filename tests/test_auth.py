"""Authentication and rights (SPEC §3) against a running server: JWT variants, API keys, actors."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time

import jwt
import pytest
import uvicorn
from conftest import ROOT, SECRET, recv, send
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from websockets.exceptions import ConnectionClosed

from server.auth import hash_api_key
from server.embedded import free_port

ACTIVITY = {"verb": "post", "object": "o:1"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(claims: dict) -> str:
    """A token with ``alg: none`` and no signature."""
    return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}."


def hs256_with_key(claims: dict, key: bytes) -> str:
    """An HS256 token signed by hand (PyJWT refuses PEM keys as HMAC secrets, attackers don't)."""
    signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}"
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(sig)}"


def _claims(**extra) -> dict:
    return {"sub": "alice", "exp": int(time.time()) + 600, "feeds": {"f:*": ["read", "write"]}, **extra}


async def _post(server, token: str | None = None, feed: str = "f:1", body=None, **headers):
    return await server.http(token, **headers).post(f"/v1/feeds/{feed}/activities", json=body or ACTIVITY)


async def test_valid_hs256_token_writes(server):
    """A token signed with the configured secret is accepted."""
    r = await _post(server, server.token("alice", {"f:*": ["write"]}))
    assert r.status_code == 201


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(jwt.encode(_claims(), "another-secret-of-32-bytes-length!!"), id="forged"),
        pytest.param(jwt.encode(_claims(exp=int(time.time()) - 60), SECRET), id="expired"),
        pytest.param(unsigned_token(_claims()), id="alg-none"),
        pytest.param(jwt.encode({"exp": int(time.time()) + 60}, SECRET), id="no-sub"),
        pytest.param("not.a.token", id="garbage"),
        pytest.param(jwt.encode(_claims(roles="admin"), SECRET), id="bad-roles-claim"),
        pytest.param(jwt.encode(_claims(feeds={"f:*": ["root"]}), SECRET), id="bad-feeds-claim"),
    ],
)
async def test_bad_tokens_are_401(server, token):
    """Forged, expired, unsigned, sub-less or malformed tokens get 401 problems."""
    r = await _post(server, token)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 401


async def test_wrong_auth_scheme_is_401(server):
    """Only 'Bearer' authorization is understood."""
    r = await _post(server, None, Authorization="Basic YWxpY2U6eA==")
    assert r.status_code == 401


async def test_missing_credentials_and_missing_rights(server):
    """No credentials on a private feed: 401; a token without write: 403."""
    assert (await _post(server)).status_code == 401
    reader = server.token("r", {"f:*": ["read"]})
    r = await _post(server, reader)
    assert r.status_code == 403 and r.json()["title"] == "Forbidden"
    assert (await _post(server, server.token("x", {"g:*": ["write"]}))).status_code == 403


def _rsa_pem() -> tuple[rsa.RSAPrivateKey, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, pem.decode()


async def test_rs256_public_key_file_and_algorithm_confusion(server_factory, tmp_path):
    """RS256 verifies with the configured public key (a path); HS256 signed with that key is refused."""
    key, pem = _rsa_pem()
    path = tmp_path / "pub.pem"
    path.write_text(pem)
    srv = await server_factory(auth={"jwt_secret": "", "jwt_algorithms": ["RS256"], "jwt_public_key": str(path)})
    assert (await _post(srv, jwt.encode(_claims(), key, algorithm="RS256"))).status_code == 201
    assert (await _post(srv, hs256_with_key(_claims(), pem.encode()))).status_code == 401
    assert (await _post(srv, jwt.encode(_claims(), SECRET))).status_code == 401
    other, _ = _rsa_pem()
    assert (await _post(srv, jwt.encode(_claims(), other, algorithm="RS256"))).status_code == 401


async def test_confusion_refused_even_when_hs256_is_also_allowed(server_factory):
    """With HS256 and RS256 both on, an HS256 token keyed with the public PEM still fails."""
    key, pem = _rsa_pem()
    srv = await server_factory(auth={"jwt_algorithms": ["RS256", "HS256"], "jwt_public_key": pem})
    assert (await _post(srv, hs256_with_key(_claims(), pem.encode()))).status_code == 401
    assert (await _post(srv, jwt.encode(_claims(), key, algorithm="RS256"))).status_code == 201
    assert (await _post(srv, jwt.encode(_claims(), SECRET))).status_code == 201


async def test_es256_inline_pem(server_factory):
    """ES256 verifies with an inline PEM public key."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    srv = await server_factory(auth={"jwt_algorithms": ["ES256"], "jwt_public_key": pem.decode()})
    assert (await _post(srv, jwt.encode(_claims(), key, algorithm="ES256"))).status_code == 201


async def test_jwks_url(server_factory):
    """RS256 tokens verify against keys fetched from a JWKS URL (picked by kid)."""
    key, _ = _rsa_pem()
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", use="sig", alg="RS256")

    async def jwks(request):
        return JSONResponse({"keys": [jwk]})

    port = free_port()
    jwks_server = uvicorn.Server(
        uvicorn.Config(Starlette(routes=[Route("/jwks", jwks)]), port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(jwks_server.serve())
    try:
        while not jwks_server.started:
            await asyncio.sleep(0.01)
        srv = await server_factory(auth={"jwt_algorithms": ["RS256"], "jwks_url": f"http://127.0.0.1:{port}/jwks"})
        good = jwt.encode(_claims(), key, algorithm="RS256", headers={"kid": "k1"})
        assert (await _post(srv, good)).status_code == 201
        unknown_kid = jwt.encode(_claims(), key, algorithm="RS256", headers={"kid": "k2"})
        assert (await _post(srv, unknown_kid)).status_code == 401
    finally:
        jwks_server.should_exit = True
        await asyncio.wait_for(task, 5)


async def test_audience_and_issuer_are_enforced_when_configured(server_factory):
    """With audience/issuer configured, tokens must carry matching aud and iss."""
    srv = await server_factory(auth={"audience": "feeds", "issuer": "https://id.example"})
    good = jwt.encode(_claims(aud="feeds", iss="https://id.example"), SECRET)
    assert (await _post(srv, good)).status_code == 201
    for claims in (
        _claims(iss="https://id.example"),
        _claims(aud="other", iss="https://id.example"),
        _claims(aud="feeds"),
        _claims(aud="feeds", iss="https://evil.example"),
    ):
        assert (await _post(srv, jwt.encode(claims, SECRET))).status_code == 401, claims


async def test_api_keys_global_and_restricted(server_factory):
    """A configured API key is a global admin unless restricted to feed patterns."""
    restricted = hash_api_key("svc-limited")
    srv = await server_factory(
        auth={
            "api_keys": [hash_api_key("svc-admin"), restricted],
            "api_key_feeds": {restricted: {"ops:*": ["write"]}},
        }
    )
    r = await _post(srv, None, feed="anything:1", body={**ACTIVITY, "actor": "someone"}, **{"X-API-Key": "svc-admin"})
    assert r.status_code == 201 and r.json()["activities"][0]["actor"] == {"id": "someone"}
    assert (await _post(srv, None, feed="ops:1", **{"X-API-Key": "svc-limited"})).status_code == 201
    assert (await _post(srv, None, feed="other:1", **{"X-API-Key": "svc-limited"})).status_code == 403
    assert (await _post(srv, None, **{"X-API-Key": "wrong"})).status_code == 401


async def test_actor_is_the_caller_and_enriched(server):
    """Without an actor the caller is the actor, enriched from the token's name and picture."""
    token = server.token("u1", {"f:*": ["write"]}, name="Alexandra Beaumont", picture="https://img/a.jpg")
    r = await _post(server, token)
    assert r.json()["activities"][0]["actor"] == {
        "id": "u1",
        "name": "Alexandra Beaumont",
        "avatar": "https://img/a.jpg",
    }
    r = await _post(server, token, body={**ACTIVITY, "actor": {"id": "u1", "name": "Alex"}})
    assert r.json()["activities"][0]["actor"] == {"id": "u1", "name": "Alex", "avatar": "https://img/a.jpg"}


async def test_impersonation_is_403_unless_feed_admin(server):
    """A non-admin may not write as another actor; a feed admin may."""
    writer = server.token("u1", {"f:*": ["write"]})
    r = await _post(server, writer, body={**ACTIVITY, "actor": "u2"})
    assert r.status_code == 403
    r = await _post(server, writer, body={"activities": [ACTIVITY, {**ACTIVITY, "actor": {"id": "u2"}}]})
    assert r.status_code == 403
    admin = server.token("boss", {"f:*": ["admin"]})
    r = await _post(server, admin, body={**ACTIVITY, "actor": {"id": "u2", "name": "Two"}})
    assert r.status_code == 201 and r.json()["activities"][0]["actor"] == {"id": "u2", "name": "Two"}


async def test_ws_auth_by_header_and_message(server):
    """Both handshake header and first-message auth give an authenticated connection."""
    token = server.token("alice", {"f:*": ["read", "write"]})
    for how in ("header", "message"):
        ws = await server.ws(token, auth=how)
        await send(ws, {"type": "publish", "feed": "f:1", "ref": how, "activity": ACTIVITY})
        ack = await recv(ws)
        assert ack["type"] == "ack" and ack["activities"][0]["actor"]["id"] == "alice"


@pytest.mark.parametrize("how", ["header", "message"])
async def test_ws_bad_token_closes_4001(server, how):
    """An invalid token (header or auth message) ends the connection with 4001."""
    expired = jwt.encode(_claims(exp=int(time.time()) - 60), SECRET)
    headers = {"Authorization": f"Bearer {expired}"} if how == "header" else {}
    ws = await server.ws(additional_headers=headers)
    if how == "message":
        await send(ws, {"type": "auth", "token": expired})
    with pytest.raises(ConnectionClosed):
        while True:
            await recv(ws)
    assert ws.close_code == 4001


async def test_ws_connection_closes_4001_when_token_expires(server):
    """A connection whose token expires is closed with 4001."""
    token = server.token("alice", {"f:*": ["read"]}, ttl=1)
    ws = await server.ws(token)
    started = time.monotonic()
    with pytest.raises(ConnectionClosed):
        await recv(ws, timeout=8)
    assert ws.close_code == 4001 and time.monotonic() - started < 8


def test_token_subcommand_mints_a_verifiable_token(tmp_path):
    """`feedserver token` signs with the configured secret and encodes the requested rights."""
    config = tmp_path / "config.toml"
    config.write_text('[auth]\njwt_secret = "cli-secret-of-sufficient-length-123"\n')
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "server",
            "token",
            "--config",
            str(config),
            "--sub",
            "alice",
            "--feed",
            "booking:*=read,write",
            "--feed",
            "org:*=member",
            "--role",
            "accounting",
            "--name",
            "Alice",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    ).stdout.strip()
    claims = jwt.decode(out, "cli-secret-of-sufficient-length-123", algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["roles"] == ["accounting"] and claims["name"] == "Alice"
    assert claims["feeds"] == {"booking:*": ["read", "write"], "org:*": ["member"]}
    bad = subprocess.run(
        [sys.executable, "-m", "server", "token", "--config", str(config), "--sub", "a", "--feed", "x=fly"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert bad.returncode == 2 and "unknown right" in bad.stderr


async def test_verified_token_cache_still_enforces_expiry():
    """A token verified once is remembered, but never past its exp (plus the leeway)."""
    from server.auth import LEEWAY_SECONDS, Authenticator
    from server.errors import Unauthorized

    auth = Authenticator(jwt_secret=SECRET)
    token = jwt.encode({"sub": "a", "exp": time.time() - LEEWAY_SECONDS + 1}, SECRET)
    first = await auth.verify_token(token)
    assert await auth.verify_token(token) is first  # served from the cache
    await asyncio.sleep(1.2)
    with pytest.raises(Unauthorized):
        await auth.verify_token(token)
    with pytest.raises(Unauthorized):  # a token differing by one signature byte is verified, not served
        await auth.verify_token(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])
