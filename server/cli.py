"""Command line: ``feedserver [--config PATH] [--host H] [--port P] [--workers N]`` and ``feedserver token``."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import __version__
from .config import CONFIG_ENV, Settings, load_settings
from .devsecret import DevSecret, dev_secret
from .wsproto import WebSocketsSansIOProtocol

log = logging.getLogger("feedserver")


def _serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="feedserver",
        description="Run the activity feed server. Subcommand: 'feedserver token --help' mints dev tokens.",
    )
    p.add_argument("--version", action="version", version=f"feedserver {__version__}")
    p.add_argument("--config", help="config file (default: $FEED_CONFIG or ./config.toml)")
    p.add_argument("--host", help="listen address (overrides [server] host)")
    p.add_argument("--port", type=int, help="listen port (overrides [server] port)")
    p.add_argument("--workers", type=int, help="worker processes sharing one Redis (overrides [server] workers)")
    return p


TOKEN_EPILOG = """\
rights (comma-separated after PATTERN=):
  read     read the feed's history and subscribe to it (what the audience lets you see)
  write    add activities, and change or delete your own
  member   read, and see activities whose audience is "members"
  admin    everything: see every activity, write as another actor, change anyone's

feed patterns: an exact feed name, or a glob such as 'booking:*' or '*' (every feed).

examples:
  feedserver token --sub alice --feed 'demo:*=read,write,member' --name Alice
  feedserver token --sub bob --feed 'booking:*=read' --ttl 3600
  feedserver token --sub ops --admin
  feedserver token --sub carol --feed 'public:*=read' --role accounting

The token is signed with [auth] jwt_secret, or, when none is configured, with the dev secret the
server keeps in <data_dir>/dev-jwt-secret (both read from the same config as the server).
Use it as 'Authorization: Bearer <token>', or paste it into the dashboard (/demo/) or /docs.
"""


def _token_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="feedserver token",
        description="Mint a JWT for this server (prints it on stdout).",
        epilog=TOKEN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"feedserver {__version__}")
    p.add_argument("--config", help="config file (default: $FEED_CONFIG or ./config.toml)")
    p.add_argument("--sub", required=True, help="the identity (JWT 'sub')")
    p.add_argument(
        "--feed",
        action="append",
        default=[],
        metavar="PATTERN=RIGHTS",
        help="feed rights, e.g. 'booking:*=read,write' (repeatable; rights below)",
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

    try:
        settings = load_settings(args.config)
    except FileNotFoundError as exc:
        print(f"feedserver token: {exc}", file=sys.stderr)
        return 2
    secret = settings.auth.jwt_secret
    if not secret:
        if "HS256" not in settings.auth.jwt_algorithms:
            print("feedserver token: no [auth] jwt_secret configured, and HS256 is not accepted", file=sys.stderr)
            return 2
        secret = dev_secret(settings.redis.data_dir).secret  # the one the server uses (created if new)
    feeds: dict[str, list[str]] = {}
    for spec in args.feed:
        pattern, sep, rights = spec.partition("=")
        if not sep or not pattern:
            print(f"feedserver token: --feed wants PATTERN=RIGHTS, got {spec!r}", file=sys.stderr)
            return 2
        feeds.setdefault(pattern, []).extend(r.strip() for r in rights.split(",") if r.strip())
    try:
        token = mint_token(
            secret,
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
        kept = dev_secret(settings.redis.data_dir)
        os.environ["FEED_AUTH__JWT_SECRET"] = kept.secret
        settings = settings.model_copy(update={"auth": settings.auth.model_copy(update={"jwt_secret": kept.secret})})
        print(dev_banner(kept, s.host, s.port, config_path, demo=s.demo), flush=True)
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
        "access_log": s.access_log or s.log_level == "debug",
    }


def token_command(config_path: str | None = None) -> str:
    """``feedserver token`` as this shell can run it: the same program and config as this server."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "feedserver"
    if argv0.endswith("__main__.py") or argv0 == "-m":  # python -m server
        command = f"{shlex.quote(sys.executable)} -m server"
    else:
        found = shutil.which(os.path.basename(argv0))
        same = found is not None and os.path.realpath(found) == os.path.realpath(argv0)
        command = os.path.basename(argv0) if same else shlex.quote(argv0)
    command += " token"
    config = config_path or os.environ.get(CONFIG_ENV)
    if config:
        command += f" --config {shlex.quote(config)}"
    data_dir = os.environ.get("FEED_REDIS__DATA_DIR")
    if data_dir:  # the token command must find the same dev secret
        command = f"FEED_REDIS__DATA_DIR={shlex.quote(data_dir)} {command}"
    return command


def dev_banner(kept: DevSecret, host: str, port: int, config_path: str | None = None, *, demo: bool = True) -> str:
    """The startup banner of a run without ``[auth] jwt_secret``: where the dev secret lives, a token
    and commands that work as pasted."""
    from .auth import mint_token

    token = mint_token(kept.secret, "dev", name="Developer", feeds={"*": ["read", "write", "member"]}, ttl=24 * 3600)
    shown = "localhost" if host in ("0.0.0.0", "::", "") else host
    base = f"http://{shown}:{port}"
    state = "created now" if kept.created else "reused"
    lines = [
        "",
        "  No [auth] jwt_secret configured: using the dev secret (development only).",
        f"  Dev secret: {kept.path} ({state}; tokens stay valid across restarts)",
        "  Dev token (sub 'dev', read/write/member on every feed, valid 24 h):",
        f"    {token}",
        f"  Try:        curl -H 'Authorization: Bearer {token}' {base}/v1/feeds/demo:lobby/activities",
        f"  Mint more:  {token_command(config_path)} --sub alice --feed 'demo:*=read,write' --name Alice",
        f"  Docs:       {base}/docs#token={token}   (try the API, already authorized)",
        *([f"  Dashboard:  {base}/demo/?token={token}&feed=demo:lobby"] if demo else []),
        "",
    ]
    return "\n".join(lines)
