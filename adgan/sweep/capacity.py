"""Whether any node can ever run one trial of a sweep: refuse, before any trial, a request no node (and
no node type an autoscaler may add) can give, instead of waiting forever at "finished 0/N".

Ray 2.60 has no public call listing an autoscaling cluster's node types. Two places hold them, read here
when present: the cluster config that Ray's autoscaler (v2) reports to the GCS (read with
``ray._private.state.state.get_cluster_config()``, guarded: a private call), and the cluster launcher's
config on the head node (``~/ray_bootstrap_config.yaml``, written by ``ray up``, read by the autoscaler),
which is where ``make cluster-sweep`` runs the driver. A node type whose resources are left to detection
(``resources: {}``, e.g. an AWS instance type) is taken as able to fit. On a cluster joined with
``--address`` where neither is visible, adgan waits a while for a fitting node to join (workers of a
just-started cluster, or of a KubeRay worker group scaled from zero) before refusing.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from adgan.errors import ConfigError

BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")
JOIN_WAIT_S = 180.0  # how long a cluster joined with --address may take to show a node that fits
GPU_WAIT_S = 900.0  # how long for a GPU node an autoscaler may add (a CUDA image pulled on a new instance)


@dataclasses.dataclass(frozen=True)
class NodeType:
    """A node type an autoscaler may add; ``resources`` None = detected when the node starts (unknown)."""

    name: str
    resources: Mapping[str, float] | None


def fits(request: Mapping[str, float], resources: Mapping[str, float]) -> bool:
    """Whether a node with ``resources`` (``{"CPU": .., "GPU": ..}``) can hold one trial's ``request``."""
    return all(float(resources.get(k, 0.0)) >= v for k, v in request.items() if v > 0)


def _amounts(resources: Mapping[str, float]) -> str:
    return f"{float(resources.get('CPU', 0)):g} CPUs, {float(resources.get('GPU', 0)):g} GPUs"


def refusal(
    request: Mapping[str, float], nodes: Sequence[Mapping[str, float]], node_types: Sequence[NodeType]
) -> str | None:
    """Why no trial can ever run (None when a node, or a node type that may be added, fits one)."""
    if any(fits(request, n) for n in nodes):
        return None
    if any(t.resources is None or fits(request, t.resources) for t in node_types):
        return None
    largest = max(nodes, key=lambda n: (float(n.get("CPU", 0)), float(n.get("GPU", 0))), default={})
    asked = f"a trial asks for {request.get('CPU', 0):g} CPUs and {request.get('GPU', 0):g} GPUs"
    have = f"the largest node has {_amounts(largest)}" if nodes else "the cluster has no node"
    types = "; ".join(f"{t.name}: {_amounts(t.resources or {})}" for t in node_types)
    declared = f" and no node type the autoscaler may add fits ({types})" if node_types else ""
    return f"{asked}, but {have}{declared}"


def declared_node_types() -> list[NodeType]:
    """The node types an autoscaler may add (see the module docstring; empty when none is visible)."""
    found: list[NodeType] = []
    try:
        import ray._private.state as ray_state

        config = ray_state.state.get_cluster_config()
        for group in config.node_group_configs if config is not None else []:
            if group.max_count != 0:
                found.append(NodeType(group.name, {k: float(v) for k, v in group.resources.items()} or None))
    except Exception:  # noqa: BLE001 (a private Ray call: its absence or failure means "not visible")
        pass
    return found or bootstrap_node_types(BOOTSTRAP_CONFIG.expanduser())


def bootstrap_node_types(path: Path) -> list[NodeType]:
    """The worker node types of a cluster launcher config (``available_node_types``; the head type
    excluded: the head is a node already)."""
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return []
    if not isinstance(config, dict) or not isinstance(config.get("available_node_types"), dict):
        return []
    out = []
    for name, entry in config["available_node_types"].items():
        if name == config.get("head_node_type") or not isinstance(entry, dict):
            continue
        if entry.get("max_workers", config.get("max_workers", 0)) == 0:
            continue
        resources = entry.get("resources") or None  # {}: detected from the instance type when it starts
        out.append(NodeType(str(name), {k: float(v) for k, v in resources.items()} if resources else None))
    return out


def _alive_nodes() -> list[dict[str, Any]]:
    import ray

    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def check_cluster(request: Mapping[str, float], *, local: bool, where: str) -> None:
    """Refuse (``ConfigError``, prefixed by ``where``) when no node of the running Ray and no declared node
    type can hold one trial; Ray is initialised. ``local``: a Ray this process started (no other node
    will ever join it), so there is nothing to wait for."""
    reason = refusal(request, _alive_nodes(), declared_node_types())
    if reason is None:
        return
    if not local:
        print(f"adgan: no node can run a trial yet ({reason}); waiting up to {JOIN_WAIT_S:.0f} s for one to "
              "join", file=sys.stderr)
        deadline = time.monotonic() + JOIN_WAIT_S
        while reason is not None and time.monotonic() < deadline:
            time.sleep(5)
            reason = refusal(request, _alive_nodes(), [])
        if reason is None:
            return
    raise ConfigError(f"{where}: {reason}; lower the request (resources.cpus, --gpu) or add such a node")


def gpu_node_types(node_types: Sequence[NodeType]) -> list[str]:
    """The names of the node types an autoscaler may add that declare GPUs (a type whose resources are
    left to detection may as well be CPU only: no sweep waits for it)."""
    return [t.name for t in node_types if t.resources is not None and float(t.resources.get("GPU", 0)) > 0]


def effective_gpu(
    asked: float,
    gpus_now: Callable[[], float],
    node_types: Sequence[NodeType],
    *,
    local: bool,
    name: str,
    wait_s: float = GPU_WAIT_S,
    poll_s: float = 10.0,
    ask: Callable[[bool], None] | None = None,
) -> float:
    """The GPU share per trial a sweep runs with: ``asked`` when the cluster has a GPU; on a cluster whose
    autoscaler may still add a node with one (workers of a just-started cluster pull a CUDA image for
    minutes), ``asked`` once such a node joined, waiting up to ``wait_s``; 0 (trials on CPU, said) on a
    local Ray or a cluster that can never have one. ``ask(True)`` asks the autoscaler for a GPU node while
    waiting (nothing else would: no trial has asked yet) and ``ask(False)`` withdraws that.

    Raises:
        ConfigError: A GPU was asked for, the cluster declares node types that may have one, and none
            joined within ``wait_s`` (a sweep run on the GPU workers' CPUs would cost GPU prices).
    """
    if asked <= 0 or gpus_now() > 0:
        return asked
    types = ", ".join(gpu_node_types(node_types))
    if local or not types:
        print(f"[{name}] trials ask for {asked:g} GPU each (resources.gpu or --gpu) but the cluster has "
              "none: running on CPU", file=sys.stderr)
        return 0.0
    print(f"[{name}] trials ask for {asked:g} GPU each but no node with a GPU has joined yet; waiting up to "
          f"{wait_s:.0f} s for one of the node types the autoscaler may add ({types}); --gpu 0 runs on CPU "
          "instead", file=sys.stderr)
    if ask is not None:
        ask(True)
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            time.sleep(poll_s)
            if gpus_now() > 0:
                print(f"[{name}] a node with a GPU joined", file=sys.stderr)
                return asked
    finally:
        if ask is not None:
            ask(False)  # the trials' own requests keep what they need from now on
    raise ConfigError(
        f"{name}: trials ask for {asked:g} GPU each, but no node with a GPU joined the cluster within "
        f"{wait_s:.0f} s although its autoscaler may add one ({types}); see why in the autoscaler's log "
        "(`ray status`, monitor.log on the head), or run on CPU with --gpu 0"
    )


def check_local(cpus_per_trial: float, cpus: int, where: str) -> None:
    """Before starting a local Ray of ``cpus`` CPUs: refuse a trial that asks for more."""
    if cpus_per_trial > cpus:
        raise ConfigError(
            f"{where}: a trial asks for {cpus_per_trial:g} CPUs, but the local Ray has {cpus} (this "
            "machine's CPUs, or --cpus); lower resources.cpus or run on a cluster with --address"
        )
