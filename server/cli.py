"""Command line: ``feedserver [--config PATH] [--host H] [--port P] [--workers N]`` and ``feedserver token``."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

from .config import CONFIG_ENV, Settings, load_settings
from .wsproto import WebSocketsSansIOProtocol

log = logging.getLogger("feedserver")


def _serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="feedserver",
        description="Run the activity feed server. Subcommand: 'feedserver token --help' mints dev tokens.",
    )
    p.add_argument("--config", help="config file (default: $FEED_CONFIG or ./config.toml)")
    p.add_argument("--host", help="listen address (overrides [server] host)")
    p.add_argument("--port", type=int, help="listen port (overrides [server] port)")
    p.add_argument("--workers", type=int, help="worker processes sharing one Redis (overrides [server] workers)")
    return p


def _token_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="feedserver token", description="Mint a JWT signed with the configured secret.")
    p.add_argument("--config", help="config file (default: $FEED_CONFIG or ./config.toml)")
    p.add_argument("--sub", required=True, help="the identity (JWT 'sub')")
    p.add_argument(
        "--feed",
        action="append",
        default=[],
        metavar="PATTERN=RIGHTS",
        help="feed rights, e.g. 'booking:*=read,write' (repeatable)",
    )
    p.add_argument("--role", action="append", default=[], help="a role (repeatable)")
    p.add_argument("--name", help="display name (enriches the actor)")
    p.add_argument("--picture", help="avatar URL (enriches the actor)")
    p.add_argument("--admin", action="store_true", help="global admin")
    p.add_argument("--ttl", type=float, default=24 * 3600, help="lifetime in seconds (default 1 day)")
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    server = {k: v for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers)) if v is not None}
    return {"server": server} if server else {}


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``feedserver`` and ``python -m server``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "token":
        sys.exit(_token(_token_parser().parse_args(argv[1:])))
    if argv and argv[0] == "serve":
        argv = argv[1:]
    args = _serve_parser().parse_args(argv)
    try:
        settings = load_settings(args.config, **_overrides(args))
    except FileNotFoundError as exc:
        sys.exit(f"feedserver: {exc}")
    serve(settings, args.config)


def _token(args: argparse.Namespace) -> int:
    from .auth import mint_token

    settings = load_settings(args.config)
    if not settings.auth.jwt_secret:
        print(
            "feedserver token: no [auth] jwt_secret configured (set it, or FEED_AUTH__JWT_SECRET)",
            file=sys.stderr,
        )
        return 2
    feeds: dict[str, list[str]] = {}
    for spec in args.feed:
        pattern, sep, rights = spec.partition("=")
        if not sep or not pattern:
            print(f"feedserver token: --feed wants PATTERN=RIGHTS, got {spec!r}", file=sys.stderr)
            return 2
        feeds.setdefault(pattern, []).extend(r.strip() for r in rights.split(",") if r.strip())
    try:
        token = mint_token(
            settings.auth.jwt_secret,
            args.sub,
            feeds=feeds,
            roles=args.role,
            name=args.name,
            picture=args.picture,
            admin=args.admin,
            ttl=args.ttl,
        )
    except ValueError as exc:
        print(f"feedserver token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def serve(settings: Settings, config_path: str | None = None) -> None:
    """Run uvicorn with the WebSocket implementation and limits from ``settings``."""
    import uvicorn

    level = settings.server.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    s = settings.server
    options = uvicorn_options(settings)
    embedded = None
    if not settings.auth.jwt_secret and "HS256" in settings.auth.jwt_algorithms:
        secret = secrets.token_urlsafe(32)
        os.environ["FEED_AUTH__JWT_SECRET"] = secret
        settings = settings.model_copy(update={"auth": settings.auth.model_copy(update={"jwt_secret": secret})})
        _print_dev_credentials(secret, s.host, s.port)
    if not settings.redis.url:
        from .embedded import data_dir_in_use

        if busy := data_dir_in_use(settings.redis.data_dir):
            sys.exit(f"feedserver: {busy}")
    try:
        if s.workers > 1:
            if not settings.redis.url:  # one embedded server shared by every worker
                from .embedded import DataDirBusy, EmbeddedRedis

                try:
                    embedded = EmbeddedRedis(settings.redis.data_dir, appendfsync=settings.redis.appendfsync).start()
                except DataDirBusy as exc:
                    sys.exit(f"feedserver: {exc}")
                os.environ["FEED_REDIS__URL"] = embedded.url
            if config_path:
                os.environ[CONFIG_ENV] = str(Path(config_path).resolve())
            os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="feedserver-metrics-"))
            uvicorn.run("server.app:app_from_env", factory=True, workers=s.workers, **options)
        else:
            from .app import create_app

            uvicorn.run(create_app(settings), **options)
    finally:
        if embedded is not None:
            embedded.stop()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn settings derived from ``[server]`` (shared by the CLI and the test fixtures)."""
    s = settings.server
    return {
        "host": s.host,
        "port": s.port,
        "ws": WebSocketsSansIOProtocol,
        "ws_max_size": s.max_frame_bytes,
        "ws_ping_interval": s.ping_interval or None,
        "ws_ping_timeout": s.ping_timeout,
        "ws_per_message_deflate": s.per_message_deflate,
        "lifespan": "on",
        "log_level": s.log_level,
        "timeout_graceful_shutdown": s.shutdown_timeout,
        "access_log": s.log_level == "debug",
    }


def _print_dev_credentials(secret: str, host: str, port: int) -> None:
    from .auth import mint_token

    token = mint_token(secret, "dev", name="Developer", feeds={"*": ["read", "write", "member"]}, ttl=24 * 3600)
    print(
        "\n  No [auth] jwt_secret configured: this run uses a random secret (dev only).\n"
        f"  Secret:     {secret}\n"
        f"  Dev token (sub 'dev', read/write/member on every feed, valid 24 h):\n  {token}\n"
        f"  Try:        curl -H 'Authorization: Bearer <token>' http://{host}:{port}/v1/feeds/demo:lobby/activities\n"
        "  Mint more:  FEED_AUTH__JWT_SECRET=<secret> feedserver token --sub alice --feed 'demo:*=read,write'\n",
        flush=True,
    )
