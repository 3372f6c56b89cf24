"""Credentials → ``Principal``: JWTs (HS256 by default; RS256/ES256 by public key or JWKS), API keys.

Tokens are never logged. Each algorithm family is verified only with its own kind of key (HMAC
with the shared secret, asymmetric algorithms with the public key or JWKS), so a token signed with
the public key as an HMAC secret — algorithm confusion — and ``alg: none`` are refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jwt

from .acl import Principal, Rights, check_feed_pattern, parse_feed_rights, parse_rights
from .errors import Unauthorized
from .models import is_id

_HMAC_ALGS = frozenset({"HS256", "HS384", "HS512"})
_ASYMMETRIC_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})
LEEWAY_SECONDS = 5
#: Verified tokens remembered (per process) so a client's repeated requests skip the signature check.
TOKEN_CACHE_SIZE = 10_000


def hash_api_key(key: str) -> str:
    """The SHA-256 hex digest under which an API key is configured."""
    return hashlib.sha256(key.encode()).hexdigest()


class Authenticator:
    """Verifies bearer tokens and API keys against the configured secrets."""

    def __init__(
        self,
        *,
        jwt_secret: str,
        algorithms: Iterable[str] = ("HS256",),
        public_key: str = "",
        jwks_url: str = "",
        audience: str = "",
        issuer: str = "",
        api_keys: Iterable[str] = (),
        api_key_feeds: Mapping[str, Mapping[str, list[str]]] | None = None,
        public_feeds: Iterable[str] = (),
        require_exp: bool = True,
    ) -> None:
        self._algorithms = [a for a in algorithms if a in _HMAC_ALGS | _ASYMMETRIC_ALGS]
        self._secret = jwt_secret.encode() if jwt_secret else b""
        self._public_key = _read_key(public_key)
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300) if jwks_url else None
        self._audience = audience or None
        self._issuer = issuer or None
        self._required_claims = ["sub", "exp"] if require_exp else ["sub"]
        self._public_feeds = tuple(check_feed_pattern(p) for p in public_feeds)
        restricted = {d.lower(): parse_feed_rights(f) for d, f in (api_key_feeds or {}).items()}
        self._api_keys: dict[str, tuple[tuple[str, Rights], ...] | None] = {
            d.lower(): restricted.get(d.lower()) for d in api_keys
        }
        self.anonymous = Principal(public_feeds=self._public_feeds)
        # token → its principal. Only the exact token string that verified hits; expiry is
        # checked on every use. Bounded: the oldest entry goes first.
        self._verified: dict[str, Principal] = {}

    async def from_headers(self, headers: Mapping[str, str]) -> Principal:
        """The principal of an HTTP request or WebSocket handshake (anonymous if no credentials)."""
        authorization = headers.get("authorization")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("Authorization must be 'Bearer <token>'")
            return await self.verify_token(token.strip())
        key = headers.get("x-api-key")
        if key:
            return self.verify_api_key(key)
        return self.anonymous

    async def from_credential(self, credential: str) -> Principal:
        """The principal of a bare credential (a dialect's own header): a JWT — two dots — or an
        API key; a leading ``Bearer `` is allowed."""
        if credential[:7].lower() == "bearer ":
            credential = credential[7:].strip()
        if credential.count(".") == 2:
            return await self.verify_token(credential)
        return self.verify_api_key(credential)

    def verify_api_key(self, key: str) -> Principal:
        """The principal of an ``X-API-Key`` (global admin unless restricted in config)."""
        digest = hash_api_key(key)
        for known, feeds in self._api_keys.items():
            if hmac.compare_digest(known, digest):
                return Principal(
                    sub=f"service:{digest[:12]}",
                    admin=feeds is None,
                    feeds=feeds or (),
                    kind="api_key",
                    public_feeds=self._public_feeds,
                )
        raise Unauthorized("unknown API key")

    async def verify_token(self, token: str) -> Principal:
        """Verify a JWT and build its principal; any failure is a 401."""
        principal = self._verified.get(token)
        if principal is not None:
            if principal.expires_at is None or principal.expires_at + LEEWAY_SECONDS > time.time():
                return principal
            del self._verified[token]
        principal = await self._verify(token)
        if len(self._verified) >= TOKEN_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = principal
        return principal

    async def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("malformed token") from None
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise Unauthorized(f"token algorithm {alg!r} is not accepted")
        key: Any
        if alg in _HMAC_ALGS:
            if not self._secret:
                raise Unauthorized("HMAC tokens are not accepted")
            key = self._secret
        elif self._public_key is not None:
            key = self._public_key
        elif self._jwks is not None:
            try:
                key = (await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)).key
            except jwt.PyJWTError as exc:
                raise Unauthorized(f"no signing key for token: {exc}") from None
        else:
            raise Unauthorized("asymmetric tokens are not accepted")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": self._required_claims, "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        return self._principal(claims)

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        sub = claims.get("sub")
        roles = claims.get("roles") or []
        feeds = claims.get("feeds") or {}
        name, picture = claims.get("name"), claims.get("picture")
        if not is_id(sub):
            raise Unauthorized("token 'sub' must be 1-128 printable characters")
        if not isinstance(roles, list) or not all(is_id(r) for r in roles):
            raise Unauthorized("token 'roles' must be a list of 1-128 printable characters each")
        if not isinstance(feeds, dict):
            raise Unauthorized("token 'feeds' must map feed patterns to rights")
        try:
            feed_rights = parse_feed_rights(feeds)
        except ValueError as exc:
            raise Unauthorized(f"token 'feeds': {exc}") from None
        exp = claims.get("exp")
        return Principal(
            sub=sub,
            name=name if isinstance(name, str) else None,
            picture=picture if isinstance(picture, str) else None,
            roles=frozenset(roles),
            admin=claims.get("admin") is True,
            feeds=feed_rights,
            kind="jwt",
            expires_at=float(exp) if isinstance(exp, int | float) else None,
            public_feeds=self._public_feeds,
        )


def _read_key(value: str) -> str | None:
    """A PEM given inline or as a path to a file."""
    if not value:
        return None
    if "-----BEGIN" in value:
        return value
    return Path(value).read_text()


def mint_token(
    secret: str,
    sub: str,
    *,
    feeds: Mapping[str, list[str]] | None = None,
    roles: Iterable[str] = (),
    name: str | None = None,
    picture: str | None = None,
    admin: bool = False,
    ttl: float = 24 * 3600,
    algorithm: str = "HS256",
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Create a signed dev/test token with the server's claims (``feedserver token`` uses this)."""
    for names in (feeds or {}).values():
        parse_rights(names)  # refuse unknown right names early
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + int(ttl)}
    if feeds:
        claims["feeds"] = dict(feeds)
    if roles:
        claims["roles"] = list(roles)
    if name:
        claims["name"] = name
    if picture:
        claims["picture"] = picture
    if admin:
        claims["admin"] = True
    claims.update(extra or {})
    return jwt.encode(claims, secret, algorithm=algorithm)


__all__ = ["Authenticator", "hash_api_key", "mint_token"]
