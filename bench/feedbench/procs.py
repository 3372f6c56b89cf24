"""Processes and /proc: start, find, measure and -- above all -- reliably stop.

Every process the harness starts goes through :class:`Managed`, which

- puts it in its own session/process group (so one ``killpg`` also reaches worker processes it
  forks, e.g. ``--workers 2``), and
- asks the kernel to SIGKILL it if the harness itself dies (``PR_SET_PDEATHSIG``), so even a
  ``kill -9`` of the harness leaves nothing behind,

and registers it so :func:`stop_all` (called from ``finally``, ``atexit`` and signal handlers)
terminates whatever is still running.

Cost figures come straight from the kernel: CPU time is ``utime + stime`` from
``/proc/<pid>/stat`` (clock ticks), memory is ``VmRSS`` from ``/proc/<pid>/status``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")


def raise_nofile(want: int = 65536) -> int:
    """Raise the soft open-files limit as far as the hard limit allows (10k sockets need it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- /proc readers -----------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces or parentheses: split after the last ')'.
    return data[data.rindex(")") + 2 :].split()


def cpu_ticks(pids: list[int]) -> int:
    """Total user+system CPU clock ticks of ``pids`` (fields 14 and 15 of /proc/<pid>/stat)."""
    total = 0
    for pid in pids:
        f = _stat_fields(pid)
        if f is not None:
            total += int(f[11]) + int(f[12])
    return total


def host_busy_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of the whole machine, all CPUs, from /proc/stat.

    Lets a step report how much CPU *other* processes took meanwhile: on a shared 2-core host that
    is the usual reason for an outlier.
    """
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - idle, total


def cpu_seconds(pids: list[int]) -> float:
    return cpu_ticks(pids) / CLK_TCK


def rss_kib(pids: list[int]) -> int:
    """Sum of VmRSS (KiB) over ``pids``."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def proc_tree(root: int) -> list[int]:
    """``root`` and all its live descendants (found through the ppid field of /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            f = _stat_fields(int(entry))
            if f is not None:
                children.setdefault(int(f[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if _stat_fields(pid) is None:
            continue
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


# -- ports ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def http_get(port: int, path: str, host: str = "127.0.0.1", timeout: float = 2.0) -> tuple[int, bytes]:
    """One tiny blocking HTTP/1.1 GET (for readiness checks); returns (status, body)."""
    return http_request(port, "GET", path, host=host, timeout=timeout)


# -- managed processes --------------------------------------------------------------------------------

_REGISTRY: list[Managed] = []


def _child_setup() -> None:
    """Runs in the child between fork and exec: die with the harness."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Managed:
    """A child process the harness owns. Stopped by :meth:`stop` or, failing that, :func:`stop_all`."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = None,
        new_session: bool = True,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log
        self._log = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=stdin,
            stdout=stdout if stdout is not None else self._log,
            stderr=self._log,
            start_new_session=new_session,
            preexec_fn=_child_setup,
        )
        self.pid = self.proc.pid
        self.new_session = new_session
        _REGISTRY.append(self)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tree(self) -> list[int]:
        return proc_tree(self.pid)

    def log_tail(self, n: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, wait up to ``grace`` s, then SIGKILL everything left."""
        pids = self.tree()  # remember descendants before the parent goes (they get re-parented)
        if self.alive():
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5)
        deadline = time.monotonic() + grace
        for pid in pids:
            while _stat_fields(pid) is not None and _state(pid) != "Z" and time.monotonic() < deadline:
                time.sleep(0.05)
            if _stat_fields(pid) is not None and _state(pid) != "Z":
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if self._log is not subprocess.DEVNULL:
            self._log.close()  # type: ignore[union-attr]
        if self in _REGISTRY:
            _REGISTRY.remove(self)

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.new_session:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)


def _state(pid: int) -> str:
    f = _stat_fields(pid)
    return f[0] if f else "X"


def stop_all() -> None:
    """Stop every process still registered, newest first (servers before the Redis they use)."""
    for p in list(reversed(_REGISTRY)):
        with contextlib.suppress(Exception):
            p.stop(grace=3.0)


def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """One blocking HTTP/1.1 request with ``Connection: close`` (set-up calls, not load)."""
    hdrs = {"Host": f"{host}:{port}", "Connection": "close", "Content-Length": str(len(body)), **(headers or {})}
    if body:
        hdrs.setdefault("Content-Type", "application/json")
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(head.encode() + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head_b, _, resp_body = data.partition(b"\r\n\r\n")
    return int(head_b.split(b" ", 2)[1]), resp_body
