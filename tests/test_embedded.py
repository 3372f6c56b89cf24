"""The embedded default: `feedserver` with no Redis URL starts Valkey, and data survives a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, SECRET

from server.auth import mint_token
from server.embedded import EmbeddedRedis, free_port


def _start(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "--config", str(config), "--port", str(port)],
            cwd=config.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"server not ready: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def _valkey_pids(data_dir: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"--dir {data_dir}"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.mark.slow
def test_cli_embedded_server_keeps_data_across_restart(tmp_path):
    """Two runs of `feedserver` on the embedded default share the data dir; the second sees the first's writes."""
    data = tmp_path / "data"
    config = tmp_path / "config.toml"
    config.write_text(f'[redis]\nurl = ""\ndata_dir = "{data}"\n[auth]\njwt_secret = "{SECRET}"\n')
    token = mint_token(SECRET, "alice", feeds={"notes:*": ["read", "write"]})
    headers = {"Authorization": f"Bearer {token}"}
    port = free_port()
    proc = _start(config, port, tmp_path / "server.log")
    try:
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/feeds/notes:1/activities",
            headers=headers,
            json={"verb": "note", "object": "n:1", "text": "survives"},
            timeout=5,
        )
        assert r.status_code == 201
        written = r.json()["activities"][0]
    finally:
        _stop(proc)
    assert (data / "appendonlydir").is_dir()
    assert not _valkey_pids(data), "the embedded server must stop with feedserver"
    proc = _start(config, port, tmp_path / "server.log")
    try:
        page = httpx.get(f"http://127.0.0.1:{port}/v1/feeds/notes:1/activities", headers=headers, timeout=5).json()
        assert page["results"] == [written]
    finally:
        _stop(proc)


def test_embedded_wrapper_persists_with_append_only_file(tmp_path):
    """EmbeddedRedis writes an append-only file and reloads it on start."""
    import redis

    with EmbeddedRedis(tmp_path) as server:
        client = redis.Redis.from_url(server.url)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        client.set("k", "v")
        client.close()
    with EmbeddedRedis(tmp_path) as server:
        client = redis.Redis.from_url(server.url)
        assert client.get("k") == b"v"
        client.close()


def test_configured_url_starts_nothing(tmp_path):
    """With a Redis URL configured the app builds no embedded server."""
    from server.app import create_app
    from server.config import load_settings

    app = create_app(
        load_settings(
            None,
            redis={"url": "redis://127.0.0.1:1/0", "data_dir": str(tmp_path)},
            auth={"jwt_secret": SECRET},
        )
    )
    assert app.embedded is None and app.redis_url == "redis://127.0.0.1:1/0"
    assert ROOT.is_dir()
