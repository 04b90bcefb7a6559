"""Running a sweep: Ray set-up, one Tuner with the grouped searcher and scheduler, results as they come.

``run_sweep`` starts (or joins, with ``address``) a Ray cluster and builds one ``tune.Tuner`` whose
searcher and scheduler route each trial to its group's Optuna search and ASHA (``adgan.sweep.grouped``),
with a driver-side callback (``adgan.sweep.callback``) that writes Parquet rows as results arrive, scores
each finished group's chosen checkpoint once on test and prints progress. ``resume=True`` continues a
killed sweep with ``Tuner.restore``; afterwards every row is reconciled with Tune's record of each trial."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import secrets
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adgan.errors import ConfigError
from adgan.models import DETECTORS
from adgan.sweep import provenance
from adgan.sweep.callback import SweepCallback, reconcile
from adgan.sweep.capacity import check_cluster, check_local
from adgan.sweep.grouped import OPTUNA_JOURNAL, GroupedScheduler, GroupedSearcher
from adgan.sweep.lock import ResultsLock
from adgan.sweep.reaper import LocalRayGuard
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
    """Run (or resume) ``spec``; returns ``results/<sweep-name>``. See the module docstring.

    Raises:
        ConfigError: Nothing to resume (or, without ``resume``, a sweep already there), another sweep
            holding the results directory (``adgan.sweep.lock``), or a trial that no node can run
            (``adgan.sweep.capacity``); each before any trial starts.
    """
    where = f"{spec.path}: resources"
    if address is not None:
        _check_reachable(address)  # before anything is written
    else:
        check_local(spec.cpus, num_cpus or os.cpu_count() or 1, where)
    results_dir = (Path(results_root or spec.results) / spec.name).resolve()
    with ResultsLock(results_dir):
        _check_start(spec, results_dir, resume)
        spec = _with_available_dataset(spec, results_dir, resume)
        with _ray_session(address, num_cpus, dashboard):
            gpu = _effective_gpu(spec)
            check_cluster({"CPU": spec.cpus, "GPU": gpu}, local=address is None, where=where)
            run_index = _start_record(spec, results_dir, resume, address, max_concurrent, use_wandb)
            status = "failed"
            try:
                _run(
                    spec,
                    results_dir,
                    gpu,
                    resume=resume,
                    max_concurrent=max_concurrent,
                    use_wandb=use_wandb,
                    max_failures=max_failures,
                    progress_every=progress_every,
                )
                status = "finished"
            except KeyboardInterrupt:
                status = "interrupted"
                raise
            finally:
                provenance.end_run(results_dir, run_index, status)
    return results_dir


def _check_start(spec: SweepSpec, results_dir: Path, resume: bool) -> None:
    """``--resume`` needs a sweep to resume; a new sweep needs a directory without one."""
    from ray import tune

    exp_dir = results_dir / EXPERIMENT
    if resume and not tune.Tuner.can_restore(str(exp_dir)):
        raise ConfigError(f"{spec.path}: --resume: no sweep to resume in {exp_dir}")
    if not resume and exp_dir.exists():
        raise ConfigError(
            f"{results_dir} already holds sweep {spec.name!r}; continue it with --resume or "
            f"remove the directory"
        )


@contextlib.contextmanager
def _ray_session(address: str | None, num_cpus: int | None, dashboard: bool) -> Iterator[None]:
    """Ray for the sweep: a local Ray this process starts (guarded so that its processes end with this
    driver, however it ends: ``adgan.sweep.reaper``) and stops at the end, or the cluster at ``address``
    (disconnected at the end). A Ray the caller initialised is used as it is and left running."""
    import ray

    started = not ray.is_initialized()
    guard = LocalRayGuard() if started and address is None else None
    try:
        if guard is not None:
            guard.start()
    except OSError as exc:  # e.g. a read-only home: the sweep runs, unguarded
        print(f"adgan: warning: cannot guard the local Ray ({exc}); if this driver is killed, Ray's "
              "agents may outlive it for a few minutes", file=sys.stderr)
        guard = None
    try:
        init_ray(address, num_cpus, dashboard)
        if guard is not None:
            guard.ray_started(_session_dir())
        yield
    finally:
        if started:
            ray.shutdown()  # the local cluster (or this driver's connection) ends with the sweep
        if guard is not None:
            guard.stop()


def _session_dir() -> str | None:
    """The session directory of the Ray this process started (``/tmp/ray/session_...``): private in Ray
    2.60, so None (the reaper then recognises Ray's processes by their environment only) if it moves."""
    try:
        import ray._private.worker as ray_worker

        return str(ray_worker._global_node.get_session_dir_path())
    except Exception:  # noqa: BLE001
        return None


def _effective_gpu(spec: SweepSpec) -> float:
    """The GPU share per trial: the spec's (or ``--gpu``), or 0 with a message on a cluster without GPUs."""
    if spec.gpu > 0 and _cluster_gpus() == 0:
        print(
            f"[{spec.name}] the spec asks for {spec.gpu} GPU per trial but the cluster has none: "
            "running on CPU",
            file=sys.stderr,
        )
        return 0.0
    return spec.gpu


def _start_record(
    spec: SweepSpec,
    results_dir: Path,
    resume: bool,
    address: str | None,
    max_concurrent: int | None,
    use_wandb: bool,
) -> int:
    """Open this invocation's record in ``runs.json`` (``adgan.sweep.provenance``); Ray is up."""
    import ray

    from adgan.version import code_version

    resources = ray.cluster_resources()
    return provenance.start_run(
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


def _run(
    spec: SweepSpec,
    results_dir: Path,
    gpu: float,
    *,
    resume: bool,
    max_concurrent: int | None,
    use_wandb: bool,
    max_failures: int,
    progress_every: float,
) -> None:
    """Build (or restore) the Tuner and run it; Ray is up, each trial gets ``spec.cpus`` and ``gpu``."""
    from ray import tune

    from adgan.sweep.trial import run_trial
    from adgan.sweep.wandb_log import wandb_mode

    mode = wandb_mode() if use_wandb else "disabled"
    context = {
        "sweep": spec.name,
        "plugins": list(spec.plugins),  # imported by every trial before its config is resolved
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
    groups = build_groups(spec, "cuda" if gpu > 0 else "cpu", max(1, math.ceil(spec.cpus)))
    print(
        f"[{spec.name}] {len(groups)} groups, {sum(b for _, _, b in groups.values())} trials on "
        f"{spec.dataset}, up to {spec.budget.max_epochs} epochs (ASHA grace {spec.budget.grace_period}, "
        f"reduction {spec.budget.reduction_factor:g}); results in {results_dir}; "
        f"W&B {mode if use_wandb else 'off'}",
        file=sys.stderr,
    )
    if resume:
        tuner = _restored_tuner(results_dir / EXPERIMENT, trainable)
    else:
        _write_spec_record(spec, results_dir, gpu)
        callback = SweepCallback(spec, str(results_dir), progress_every=progress_every, background=True)
        tuner = _new_tuner(spec, results_dir, trainable, groups, callback, max_concurrent, max_failures)
    grid = tuner.fit()
    reconcile(spec, results_dir, grid)
    if context["wandb"]:  # the sweep's summary run: per-class tables, test metrics, exported checkpoints
        from adgan.sweep.wandb_log import log_sweep_summary

        log_sweep_summary(
            results_dir, project=spec.wandb_project, mode=mode, sweep=spec.name, dataset=spec.dataset
        )


def _restored_tuner(exp_dir: Path, trainable: Any) -> Any:
    """The Tuner of a killed sweep, with its searcher, scheduler and callback as saved in ``tuner.pkl``:
    unfinished trials continue from their last checkpoint, errored ones stay errored."""
    from ray import tune

    return tune.Tuner.restore(
        str(exp_dir),
        trainable=trainable,
        resume_unfinished=True,
        resume_errored=False,
        restart_errored=False,
    )


def _write_spec_record(spec: SweepSpec, results_dir: Path, gpu: float) -> None:
    """``spec.json``: the spec as parsed, plus the budget actually used (a named budget overrides the
    spec's own) and the resources each trial got."""
    meta = {
        **spec.raw, "budget_name": spec.budget_name, "effective_budget": dataclasses.asdict(spec.budget),
        "effective_resources": {"cpus": spec.cpus, "gpu": gpu},  # after --gpu and the no-GPU fallback
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "spec.json").write_text(json.dumps(meta, indent=2, default=str))


def _new_tuner(
    spec: SweepSpec,
    results_dir: Path,
    trainable: Any,
    groups: dict[str, tuple[dict[str, Any], dict, int]],
    callback: SweepCallback,
    max_concurrent: int | None,
    max_failures: int,
) -> Any:
    """One Tuner for every group: the grouped searcher (one Optuna study each, stored in the results
    directory) and scheduler (one ASHA each) route each trial to its group."""
    from ray import tune

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
    searcher = GroupedSearcher(
        groups, METRIC, MODE, spec.search_seed, scheduler=scheduler, storage=results_dir / OPTUNA_JOURNAL
    )
    return tune.Tuner(
        trainable,
        param_space={},
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=sum(b for _, _, b in groups.values()),
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


def _with_available_dataset(spec: SweepSpec, results_dir: Path, resume: bool) -> SweepSpec:
    """:func:`available_dataset`, recorded in ``dataset.json``; a resumed sweep keeps the dataset it
    started with."""
    record = results_dir / "dataset.json"
    if resume and record.is_file():
        used = json.loads(record.read_text())["dataset"]
        return spec if used == spec.dataset else spec.with_dataset(used)
    spec = available_dataset(spec)
    results_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"dataset": spec.dataset}))
    return spec


def available_dataset(spec: SweepSpec) -> SweepSpec:
    """The spec's dataset when its files load, else its fallback (saying so). Missing data without a
    fallback is refused here, before Ray starts.

    Raises:
        DataError: The dataset cannot be loaded and the spec has no fallback.
    """
    from adgan.errors import DataError
    from adgan.sweep.trial import splits_for
    from adgan.train import resolve_config

    try:
        splits_for(resolve_config(trial_config(spec, spec.groups()[0], {})))
    except DataError as exc:
        if spec.fallback is None:
            raise
        print(
            f"[{spec.name}] dataset {spec.dataset!r} is not available ({exc}); using {spec.fallback!r}",
            file=sys.stderr,
        )
        return spec.with_dataset(spec.fallback)
    print(f"[{spec.name}] using dataset {spec.dataset!r}", file=sys.stderr)
    return spec
