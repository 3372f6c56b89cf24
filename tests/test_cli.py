"""The command line as a new user meets it: version, help, the banner's commands pasted as printed."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import httpx
import pytest

from server.devsecret import dev_secret
from server.embedded import free_port

FEEDSERVER = Path(sys.executable).with_name("feedserver")


async def run(*args: str, cwd: Path, env: dict[str, str] | None = None, shell: bool = False) -> tuple[int, str]:
    """Run a command to completion (30 s at most); its exit code and output."""
    if shell:
        proc = await asyncio.create_subprocess_shell(
            args[0], cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
    else:
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode()


def clean_env() -> dict[str, str]:
    """The environment without FEED_* settings (as in a new shell)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}


async def test_version_and_token_help(tmp_path):
    """--version prints the version; token --help lists every right and example commands."""
    code, out = await run(str(FEEDSERVER), "--version", cwd=tmp_path, env=clean_env())
    assert code == 0 and re.fullmatch(r"feedserver \d+\.\d+\.\d+\S*\n", out)
    code, out = await run(str(FEEDSERVER), "token", "--help", cwd=tmp_path, env=clean_env())
    assert code == 0
    for right in ("read", "write", "member", "admin"):
        assert re.search(rf"^\s+{right}\s+\S", out, re.M), right
    assert "examples:" in out and "feedserver token --sub alice --feed" in out


def test_dev_secret_is_created_once(tmp_path):
    """The dev secret is written once (mode 0600) and read back by every later call."""
    first = dev_secret(tmp_path / "data")
    again = dev_secret(tmp_path / "data")
    assert first.created and not again.created and first.secret == again.secret and len(first.secret) >= 32
    assert first.path == (tmp_path / "data" / "dev-jwt-secret").resolve()
    assert first.path.stat().st_mode & 0o777 == 0o600


@pytest.mark.slow
async def test_banner_commands_work_as_pasted_and_survive_a_restart(tmp_path, redis_url, prefix):
    """Without a jwt_secret, the banner's curl and mint commands work as printed, and tokens outlive a restart."""
    port = free_port()
    config = tmp_path / "feed.toml"
    config.write_text(
        f'[server]\nport = {port}\nlog_level = "warning"\ndemo = true\n'
        f'[redis]\nurl = "{redis_url}"\nkey_prefix = "{prefix}"\ndata_dir = "{tmp_path / "data"}"\n'
    )
    env = clean_env()

    async def start() -> tuple[asyncio.subprocess.Process, str]:
        proc = await asyncio.create_subprocess_exec(
            str(FEEDSERVER), "--config", str(config), cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert proc.stdout is not None
        banner = ""
        async with asyncio.timeout(30):
            while "Dashboard:" not in banner:
                line = await proc.stdout.readline()
                assert line, banner
                banner += line.decode()
            async with httpx.AsyncClient() as http:  # wait until it answers
                while True:
                    try:
                        if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
        return proc, banner

    async def stop(proc: asyncio.subprocess.Process) -> None:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)

    proc, banner = await start()
    try:
        assert "created now" in banner and str(tmp_path / "data" / "dev-jwt-secret") in banner
        curl = re.search(r"Try:\s+(curl .*)", banner)
        mint = re.search(r"Mint more:\s+(.*)", banner)
        assert curl and mint, banner
        code, out = await run(curl.group(1) + " -s -w ' %{http_code}'", cwd=tmp_path, env=env, shell=True)
        assert code == 0 and out.endswith(" 200"), out
        code, token = await run(mint.group(1), cwd=tmp_path, env=env, shell=True)
        assert code == 0, token
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            auth = {"Authorization": f"Bearer {token.strip()}"}
            posted = await http.post("/v1/feeds/demo:lobby/activities", json={"verb": "x", "object": "y"}, headers=auth)
            assert posted.status_code == 201, posted.text
            root = await http.get("/")
            assert root.json()["docs"] == "/docs" and root.json()["demo"] == "/demo/"
            dashboard = re.search(r"Dashboard:\s+(\S+)", banner)
            assert dashboard and (await http.get(dashboard.group(1))).status_code == 200
    finally:
        await stop(proc)
    proc, banner = await start()
    try:
        assert "reused" in banner
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            listed = await http.get("/v1/feeds/demo:lobby/activities", headers=auth)
            assert listed.status_code == 200 and len(listed.json()["results"]) == 1
    finally:
        await stop(proc)


def test_access_log_is_opt_in():
    """[server] access_log turns uvicorn's access log on; it is off by default (and on at debug)."""
    from server.cli import uvicorn_options
    from server.config import load_settings

    assert uvicorn_options(load_settings(None))["access_log"] is False
    assert uvicorn_options(load_settings(None, server={"access_log": True}))["access_log"] is True
    assert uvicorn_options(load_settings(None, server={"log_level": "debug"}))["access_log"] is True
