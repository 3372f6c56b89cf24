"""Shared setup of the GetStream tests: a server with ``[getstream]`` on, and the official clients."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

GS_KEY = "gs-test-key"
GS_SECRET = "gs-test-secret-" + "s" * 24
GS_APP = "4242"
GETSTREAM = {"api_key": GS_KEY, "api_secret": GS_SECRET, "app_id": GS_APP, "bayeux_timeout": 2.0}
JS_DIR = Path(__file__).resolve().parent / "getstream_js"
TIMEOUT = 20.0

T = TypeVar("T")


async def in_thread(fn: Callable[[], T], timeout: float = TIMEOUT) -> T:
    """Run a blocking client call off the event loop (the server runs in it), with a timeout."""
    return await asyncio.wait_for(asyncio.to_thread(fn), timeout)


def js_ready() -> None:
    """Skip when node or the installed npm client is missing (``scripts/test`` runs ``npm ci``)."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not (JS_DIR / "node_modules" / "getstream").is_dir():
        pytest.skip("tests/getstream_js/node_modules missing: run `npm ci` in tests/getstream_js (scripts/test does)")


class NodeRun:
    """One ``node run.js <scenario>`` process: a first line (optional), then the final JSON line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next JSON line the script prints."""
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        assert raw, "node exited without output"
        value: dict[str, Any] = json.loads(raw)
        assert "crashed" not in value, value
        return value

    async def finish(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The final result (and the process's exit)."""
        result = await self.line(timeout)
        await asyncio.wait_for(self.proc.wait(), timeout)
        return result

    def kill(self) -> None:
        """Stop the script if it is still running."""
        if self.proc.returncode is None:
            self.proc.kill()


async def start_node(scenario: str, base: str, **cfg: Any) -> NodeRun:
    """Start ``run.js`` against the server at ``base`` with the test app's key and secret."""
    config = {"base": base, "key": GS_KEY, "secret": GS_SECRET, "appId": GS_APP, **cfg}
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(JS_DIR / "run.js"),
        scenario,
        json.dumps(config),
        stdout=subprocess.PIPE,
        cwd=JS_DIR,
    )
    return NodeRun(proc)
