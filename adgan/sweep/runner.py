"""Running a sweep: Ray set-up, one Tuner with the grouped searcher and scheduler, results as they come.

``run_sweep`` starts (or joins, with ``address``) a Ray cluster and builds one ``tune.Tuner`` whose
searcher and scheduler route each trial to its group's Optuna search and ASHA (``adgan.sweep.grouped``),
with a driver-side callback (``adgan.sweep.callback``) that writes Parquet rows as results arrive, scores
each finished group's chosen checkpoint once on test and prints progress. ``resume=True`` continues a
killed sweep with ``Tuner.restore``; afterwards every row is reconciled with Tune's record of each trial."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Any

from adgan.errors import ConfigError
from adgan.models import DETECTORS
from adgan.sweep.callback import SweepCallback, reconcile
from adgan.sweep.grouped import GroupedScheduler, GroupedSearcher
from adgan.sweep.spec import SweepSpec, trial_config

METRIC, MODE = "best_val_auprc", "max"
EXPERIMENT = "tune"  # Tune's experiment directory inside results/<sweep>/


def init_ray(address: str | None, num_cpus: int | None = None, dashboard: bool = False) -> None:
    """Start a local Ray on 127.0.0.1 with token authentication, or join the cluster at ``address``.

    Token authentication (Ray >= 2.52): every Ray process needs ``RAY_AUTH_MODE=token`` and the token
    (``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``). For a local cluster we
    create the token file ourselves (owner-only permissions) when none exists; for ``--address`` the
    cluster's token must be given to this process the same way.
    """
    import ray
    from ray._raylet import AuthenticationMode, Config, get_authentication_mode

    if os.environ.get("RAY_AUTH_MODE", "token") != "token":
        print(
            f"adgan: warning: RAY_AUTH_MODE={os.environ['RAY_AUTH_MODE']}: Ray's token authentication is off",
            file=sys.stderr,
        )
    else:
        os.environ["RAY_AUTH_MODE"] = "token"
        if get_authentication_mode() != AuthenticationMode.TOKEN:
            Config.initialize("")  # Ray was imported before the variable was set: re-read it, as Ray does
        if address is None and not os.environ.get("RAY_AUTH_TOKEN"):
            path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(32))
    if ray.is_initialized():
        return
    if address is None:
        if os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
            print(
                "adgan: warning: Ray was not told to run local-only "
                "(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before "
                "importing ray): its node address will be this machine's outward address, not 127.0.0.1",
                file=sys.stderr,
            )
        ray.init(
            num_cpus=num_cpus or os.cpu_count(),
            include_dashboard=dashboard,
            _node_ip_address="127.0.0.1",
            configure_logging=True,
            logging_level="WARNING",
            log_to_driver=True,
        )
    else:
        ray.init(address=address, logging_level="WARNING")  # run_sweep checked it answers


def _check_reachable(address: str) -> None:
    """Refuse a ``HOST:PORT`` address where nothing listens, in seconds: Ray itself retries for minutes."""
    host, sep, port = address.rpartition(":")
    if address == "auto" or "://" in address or not sep or not port.isdigit():
        return  # "auto", ray:// clients and other forms: Ray resolves and reports those
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=10):
            pass
    except OSError as exc:
        raise ConfigError(
            f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}); start one with "
            "`ray start --head` on that machine, or check the address and port (the head's GCS port, 6379 "
            "by default)"
        ) from None


def _cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))


def build_groups(spec: SweepSpec, device: str, threads: int) -> dict[str, tuple[dict[str, Any], dict, int]]:
    """``{group id: (base config, optuna space, budget)}`` for the grouped searcher."""
    out = {}
    for g in spec.groups():
        m = spec.model(g.model)
        base = trial_config(spec, g, {})
        base["device"] = device if DETECTORS.get(g.model).uses_accelerator else "cpu"
        base["threads"] = threads
        space = {p: d.to_optuna() for p, d in m.search.items()}
        out[g.id] = (base, space, spec.trials(g))
    return out


def run_sweep(
    spec: SweepSpec,
    *,
    address: str | None = None,
    max_concurrent: int | None = None,
    results_root: str | None = None,
    resume: bool = False,
    use_wandb: bool = True,
    num_cpus: int | None = None,
    max_failures: int = 2,
    progress_every: float = 30.0,
    dashboard: bool = False,
) -> Path:
    """Run (or resume) ``spec``; returns ``results/<sweep-name>``. See the module docstring."""
    from ray import tune

    if address is not None:
        _check_reachable(address)  # before anything is written

    results_dir = (Path(results_root or spec.results) / spec.name).resolve()
    exp_dir = results_dir / EXPERIMENT
    if resume and not tune.Tuner.can_restore(str(exp_dir)):
        raise ConfigError(f"{spec.path}: --resume: no sweep to resume in {exp_dir}")
    if not resume and exp_dir.exists():
        raise ConfigError(
            f"{results_dir} already holds sweep {spec.name!r}; continue it with --resume or "
            f"remove the directory"
        )
    spec = _with_available_dataset(spec, results_dir, resume)
    import ray

    from adgan.sweep import provenance
    from adgan.version import code_version

    started_ray = not ray.is_initialized()
    init_ray(address, num_cpus, dashboard)
    resources = ray.cluster_resources()
    run_index = provenance.start_run(
        results_dir,
        sweep=spec.name,
        spec_file=str(spec.path),
        budget=spec.budget_name,
        trial_resources={"cpus": spec.cpus, "gpu": spec.gpu},  # as asked (spec or --gpu)
        resume=resume,
        address=address,
        max_concurrent=max_concurrent,
        wandb=use_wandb,
        code_version=code_version(),
        cluster={
            "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
            "cpus": resources.get("CPU", 0.0),
            "gpus": resources.get("GPU", 0.0),
        },
    )
    status = "failed"
    try:
        out = _run(
            spec,
            results_dir,
            exp_dir,
            resume=resume,
            max_concurrent=max_concurrent,
            use_wandb=use_wandb,
            max_failures=max_failures,
            progress_every=progress_every,
        )
        status = "finished"
        return out
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        provenance.end_run(results_dir, run_index, status)
        if started_ray:
            ray.shutdown()  # the local cluster (or this driver's connection) ends with the sweep


def _run(
    spec: SweepSpec,
    results_dir: Path,
    exp_dir: Path,
    *,
    resume: bool,
    max_concurrent: int | None,
    use_wandb: bool,
    max_failures: int,
    progress_every: float,
) -> Path:
    """Build (or restore) the Tuner and run it; Ray is up."""
    from ray import tune

    from adgan.sweep.trial import run_trial
    from adgan.sweep.wandb_log import wandb_mode

    gpu = spec.gpu
    if gpu > 0 and _cluster_gpus() == 0:
        print(
            f"[{spec.name}] the spec asks for {gpu} GPU per trial but the cluster has none: running on CPU",
            file=sys.stderr,
        )
        gpu = 0.0
    device = "cuda" if gpu > 0 else "cpu"
    threads = max(1, math.ceil(spec.cpus))
    mode = wandb_mode() if use_wandb else "disabled"
    context = {
        "sweep": spec.name,
        "results_dir": str(results_dir),
        "wandb": {"project": spec.wandb_project, "mode": mode} if use_wandb and mode != "disabled" else None,
    }
    trainable = tune.with_resources(
        # One request for every trial: a per-trial request (a callable) would spare CPU-only models their
        # GPU share, but with it Ray Tune 2.60 ran one trial at a time (measured on the loopback cluster).
        tune.with_parameters(run_trial, context=context), {"cpu": spec.cpus, "gpu": gpu}
    )
    # Tune snapshots its state whenever a trial replaces its one kept checkpoint; that is wanted (a resume
    # must not point at deleted checkpoints), the warning about it is not.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    callback = SweepCallback(spec, str(results_dir), progress_every=progress_every, background=True)
    groups = build_groups(spec, device, threads)
    n_total = sum(b for _, _, b in groups.values())
    print(
        f"[{spec.name}] {len(groups)} groups, {n_total} trials on {spec.dataset}, "
        f"up to {spec.budget.max_epochs} epochs (ASHA grace {spec.budget.grace_period}, "
        f"reduction {spec.budget.reduction_factor:g}); results in {results_dir}; "
        f"W&B {mode if use_wandb else 'off'}",
        file=sys.stderr,
    )
    if resume:
        tuner = tune.Tuner.restore(
            str(exp_dir),
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=False,
        )
    else:
        scheduler = GroupedScheduler(
            METRIC,
            MODE,
            "epoch",
            spec.budget.max_epochs,
            spec.budget.grace_period,
            spec.budget.reduction_factor,
            group_grace={
                g.id: grace for g in spec.groups() if (grace := spec.model(g.model).grace_period) is not None
            },
        )
        searcher = GroupedSearcher(groups, METRIC, MODE, spec.search_seed, scheduler=scheduler)
        results_dir.mkdir(parents=True, exist_ok=True)
        # The spec as parsed, plus the budget actually used (a named budget overrides the spec's own).
        meta = {
            **spec.raw, "budget_name": spec.budget_name, "effective_budget": dataclasses.asdict(spec.budget),
            "effective_resources": {"cpus": spec.cpus, "gpu": gpu},  # after --gpu and the no-GPU fallback
        }
        (results_dir / "spec.json").write_text(json.dumps(meta, indent=2, default=str))
        tuner = tune.Tuner(
            trainable,
            param_space={},
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=n_total,
                max_concurrent_trials=max_concurrent,
                reuse_actors=True,
                trial_dirname_creator=lambda t: t.trial_id,
            ),
            run_config=tune.RunConfig(
                name=EXPERIMENT,
                storage_path=str(results_dir),
                callbacks=[callback],
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                sync_config=tune.SyncConfig(sync_artifacts=True, sync_artifacts_on_checkpoint=False),
            ),
        )
    grid = tuner.fit()
    reconcile(spec, results_dir, grid)
    return results_dir


def _with_available_dataset(spec: SweepSpec, results_dir: Path, resume: bool) -> SweepSpec:
    """The spec's dataset when its files load, else its fallback (saying so); a resumed sweep keeps the
    dataset it started with. Missing data without a fallback is refused here, before Ray starts.

    Raises:
        DataError: The dataset cannot be loaded and the spec has no fallback.
    """
    from adgan.errors import DataError
    from adgan.sweep.trial import splits_for
    from adgan.train import resolve_config

    record = results_dir / "dataset.json"
    if resume and record.is_file():
        used = json.loads(record.read_text())["dataset"]
        return spec if used == spec.dataset else spec.with_dataset(used)
    try:
        splits_for(resolve_config(trial_config(spec, spec.groups()[0], {})))
    except DataError as exc:
        if spec.fallback is None:
            raise
        print(
            f"[{spec.name}] dataset {spec.dataset!r} is not available ({exc}); using {spec.fallback!r}",
            file=sys.stderr,
        )
        spec = spec.with_dataset(spec.fallback)
    else:
        print(f"[{spec.name}] using dataset {spec.dataset!r}", file=sys.stderr)
    results_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"dataset": spec.dataset}))
    return spec
