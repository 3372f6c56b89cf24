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
    """Valkey processes serving ``data_dir``: Valkey renames its process title (no ``--dir`` left to
    match), but it runs with ``data_dir`` as its working directory."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if "valkey" in (proc / "comm").read_text() and (proc / "cwd").resolve() == data_dir.resolve():
                pids.append(int(proc.name))
        except OSError:
            continue
    return [p for p in pids if _running(p)]


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


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _lock_info(data: Path) -> dict:
    import json

    return json.loads((data / "feedserver.lock").read_text())


def _config(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    config = tmp_path / "config.toml"
    config.write_text(f'[redis]\nurl = ""\ndata_dir = "{data}"\n[auth]\njwt_secret = "{SECRET}"\n')
    return config, data


@pytest.mark.slow
def test_kill_9_of_feedserver_takes_its_embedded_server_down(tmp_path):
    """`kill -9` of feedserver stops its Valkey too; the next feedserver starts on the same data_dir."""
    config, data = _config(tmp_path)
    proc = _start(config, free_port(), tmp_path / "server.log")
    [valkey] = _valkey_pids(data)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 15
    while _running(valkey) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _running(valkey):  # don't leave the orphan behind when this fails
        os.kill(valkey, signal.SIGKILL)
        raise AssertionError("the embedded Valkey outlived its feedserver")
    proc = _start(config, free_port(), tmp_path / "server.log")
    assert _lock_info(data)["pid"] == proc.pid
    _stop(proc)


@pytest.mark.slow
def test_second_feedserver_on_one_data_dir_is_refused(tmp_path):
    """A second feedserver on a data_dir in use exits with a message saying what to do; the first runs on."""
    config, data = _config(tmp_path)
    port = free_port()
    proc = _start(config, port, tmp_path / "server.log")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
        second = subprocess.run(
            [sys.executable, "-m", "server", "--config", str(config), "--port", str(free_port())],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode != 0
        assert f"in use by the embedded server of feedserver pid {proc.pid}" in second.stderr, second.stderr
        assert "[redis] url" in second.stderr and "data_dir" in second.stderr
        assert len(_valkey_pids(data.resolve())) == 1
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    finally:
        _stop(proc)


def test_embedded_wrapper_refuses_a_second_server_on_one_data_dir(tmp_path):
    """Two EmbeddedRedis on one data_dir: the second raises DataDirBusy; after the first stops, it starts."""
    from server.embedded import DataDirBusy

    with EmbeddedRedis(tmp_path) as first:
        with pytest.raises(DataDirBusy, match="in use"):
            EmbeddedRedis(tmp_path).start(timeout=1)
        assert first.pid is not None and _running(first.pid)
    with EmbeddedRedis(tmp_path):
        pass
