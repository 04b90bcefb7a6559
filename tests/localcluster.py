"""A real multi-node Ray cluster on this machine, bound to 127.0.0.1, with token authentication.

Test infrastructure (not part of the adgan package): for tests and benchmarks of cluster behaviour (trials
spread over nodes, a node lost mid-sweep) without a second machine. Each node is a ``ray start --block``
process in a session of its own, so it can be killed alone; every process of a node (raylet, agents, the
workers running trials) stays in that session and carries an environment marker naming the node, which is
how ``kill_node`` and ``shutdown`` find them. Nothing is ever killed by process name: ``ray stop`` would
stop every Ray process of the machine, other users' clusters included.

Why a wrapper around ``ray start``: Ray 2.60 replaces a loopback ``--node-ip-address`` and a loopback
``--address`` by the machine's outward address, unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which in
turn makes ``ray start --address`` refuse to join a cluster. ``python tests/localcluster.py start ...``
runs Ray's own ``ray start`` with that replacement switched off, so both nodes register and listen
on 127.0.0.1 only. Drivers joining the cluster need ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (it is in
``LoopbackCluster.env``) for the same reason.

Example::

    with LoopbackCluster() as cluster:
        head = cluster.add_node(num_cpus=1, resources={"head_slot": 1})
        worker = cluster.add_node(num_cpus=1)
        subprocess.run(["adgan", "sweep", spec, "--address", cluster.address], env=cluster.env)
        cluster.kill_node(worker)
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

MARKER = "ADGAN_LOOPBACK_NODE"  # environment variable naming the node a process belongs to
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it)."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1 that are free now: all sockets stay bound until every port is
    picked, so the OS cannot hand out the same port twice (one bound and closed at a time, it can)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind((LOOPBACK, 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def node_processes(session: int, marker: str) -> list[int]:
    """PIDs of the processes in session ``session`` or whose environment holds ``MARKER=marker``.

    The session is the reliable part (Ray's processes do not leave the session of ``ray start``); the
    marker catches a process that would. It is not enough alone: a process that renames itself
    (``ray::IDLE``, ``ray::DashboardAgent``) may overwrite its environment in /proc.
    """
    needle = f"{MARKER}={marker}".encode() + b"\0"
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                # Fields after the command name (which may hold spaces): state ppid pgrp session ...
                fields = f.read().rsplit(b")", 1)[1].split()
            if fields[0] == b"Z":  # dead already, waiting to be reaped
                continue
            if int(fields[3]) == session:
                pids.append(int(entry))
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read() + b"\0":
                    pids.append(int(entry))
        except (OSError, IndexError, ValueError):  # gone meanwhile, or not readable
            continue
    return pids


def listening_sockets(pids: set[int]) -> list[tuple[str, int]]:
    """``(local address, pid)`` of every listening TCP socket (``ss -ltnpH``) owned by one of ``pids``."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 6:
            continue
        for chunk in parts[5].split("pid=")[1:]:
            pid = int(chunk.split(",")[0])
            if pid in pids:
                found.append((parts[3], pid))
    return found


@dataclass
class Node:
    """One ``ray start --block`` process and what it started."""

    name: str
    marker: str
    proc: subprocess.Popen
    log: Path
    temp_dir: Path
    resources: dict[str, float] = field(default_factory=dict)

    def pids(self) -> list[int]:
        """Every live process of the node (found by its environment marker)."""
        return node_processes(self.proc.pid, self.marker)


class LoopbackCluster:
    """Nodes on 127.0.0.1 sharing one token; the first ``add_node`` is the head.

    Args:
        root: Directory for the token, the nodes' logs and Ray's temp dirs (short path: Ray's socket
            paths must stay under 107 characters). Default: a new directory in /tmp, removed at shutdown.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="adgan-lc-", dir="/tmp"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.id = secrets.token_hex(4)
        self.token_path = self.root / "ray_token"
        fd = os.open(self.token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        self.port = free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        self.nodes: list[Node] = []

    @property
    def env(self) -> dict[str, str]:
        """Environment for a driver joining this cluster (token auth, loopback addresses kept)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != MARKER}
        env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=str(self.token_path),
            RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
            RAY_USAGE_STATS_ENABLED="0",
        )
        return env

    def add_node(
        self,
        num_cpus: int = 1,
        resources: dict[str, float] | None = None,
        timeout: float = 90,
        extra_env: dict[str, str] | None = None,
    ) -> Node:
        """Start a node (the head first) and wait until it has joined the cluster. ``extra_env`` is added to
        the node's environment, which the Ray workers it starts (the trials run there) inherit.

        Raises:
            RuntimeError: The node did not start within ``timeout`` seconds (the message holds its log).
        """
        name = "head" if not self.nodes else f"worker{len(self.nodes)}"  # unique: a killed node's name stays
        temp_dir = self.root / name
        temp_dir.mkdir(exist_ok=True)
        names = ("--node-manager-port", "--object-manager-port", "--metrics-export-port",
                 "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port")
        picked = [p for p in free_ports(len(names) + 1) if p != self.port][: len(names)]  # not the head's
        ports = dict(zip(names, picked, strict=True))
        cmd = [sys.executable, str(Path(__file__).resolve()), "start", "--block"]
        cmd += [f"--node-ip-address={LOOPBACK}", f"--num-cpus={num_cpus}", "--num-gpus=0"]
        cmd += [f"--temp-dir={temp_dir}", "--disable-usage-stats", "--log-style=record"]
        cmd += [f"{k}={v}" for k, v in ports.items()]
        # A resource naming the node, so that ``describe`` can tell nodes with the same address apart.
        resources = {**(resources or {}), f"loopback_{name}": 1}
        cmd.append(f"--resources={json.dumps(resources)}")
        if not self.nodes:
            cmd += ["--head", f"--port={self.port}", "--include-dashboard=false"]
        else:
            cmd.append(f"--address={self.address}")
        env = self.env
        env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")  # `ray start --address` refuses to run with it
        marker = f"{self.id}/{name}"
        env[MARKER] = marker
        env.update(extra_env or {})
        log = self.root / f"{name}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.root
            )
        node = Node(name, marker, proc, log, temp_dir, resources)
        self.nodes.append(node)
        deadline = time.monotonic() + timeout
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"Ray node {name} did not start:\n{log.read_text(errors='replace')[-4000:]}"
                )
            time.sleep(0.3)
        return node

    def kill_node(self, node: Node) -> None:
        """SIGKILL every process of ``node`` (its raylet, agents and trial workers) at once."""
        for _ in range(10):  # processes forked while we kill are caught by the next round
            pids = node.pids()
            if node.proc.poll() is None:
                pids.append(node.proc.pid)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.3)
        node.proc.wait(timeout=30)

    def shutdown(self) -> None:
        """Kill every node's processes (workers first, then the head) and remove an own temp root."""
        for node in reversed(self.nodes):
            self.kill_node(node)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def describe(self, timeout: float = 120) -> dict[str, dict]:
        """``{node name: {"node_id", "address", "alive"}}`` as the cluster's GCS sees its nodes (a dead
        node under its node id).

        Asked by a short driver process (so this process never imports Ray); a node is recognised by the
        custom resource ``loopback_<name>`` that ``add_node`` gives it.
        """
        code = (
            "import json, sys, ray\n"
            "ray.init(address=sys.argv[1], logging_level='ERROR')\n"
            "print(json.dumps([{'node_id': n['NodeID'], 'address': n['NodeManagerAddress'], "
            "'alive': n['Alive'], 'resources': n['Resources']} for n in ray.nodes()]))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, self.address],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
        found: dict[str, dict] = {}
        for n in json.loads(out.strip().splitlines()[-1]):
            # A dead node lists no resources any more: it is keyed by its node id.
            names = [r.removeprefix("loopback_") for r in n["resources"] if r.startswith("loopback_")]
            found[names[0] if names else n["node_id"]] = {k: n[k] for k in ("node_id", "address", "alive")}
        return found

    def pids(self) -> set[int]:
        """Every live process of every node."""
        return {pid for node in self.nodes for pid in node.pids()}

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _ray_start() -> int:
    """``ray start`` with loopback addresses kept as given (see the module docstring)."""
    import ray._private.services as services
    from ray.scripts.scripts import main

    services.resolve_ip_for_localhost = lambda host: host
    sys.argv = ["ray", *sys.argv[1:]]
    return main()


if __name__ == "__main__":
    sys.exit(_ray_start())
