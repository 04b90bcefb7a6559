"""Running a sweep: Ray set-up, one Tuner with the grouped searcher and scheduler, results as they come.

``run_sweep`` starts (or joins, with ``address``) a Ray cluster and builds one ``tune.Tuner`` whose
searcher and scheduler route each trial to its group's Optuna search and ASHA (``adgan.sweep.grouped``),
with a driver-side callback (``adgan.sweep.callback``) that writes Parquet rows as results arrive, scores
each finished group's chosen checkpoint once on test and prints progress. ``resume=True`` continues a
killed sweep with ``Tuner.restore``; afterwards every row is reconciled with Tune's record of each trial.

The results directory is a local (or NFS) path or an object-store URI (``s3://bucket/prefix``, ``gs://``,
anything ``pyarrow.fs`` opens; ``adgan.sweep.storage``): Tune's experiment and checkpoints, the Parquet
tables, ``runs.json``, ``spec.json`` and ``dataset.json`` all go there. The Optuna journal cannot (it is
appended to under a file lock, which an object store does not offer): with results on a URI it stays on the
driver's disk (:func:`journal_path`) and a copy goes to the store whenever a run of the sweep ends (see
:func:`_journal_for_resume` for what a resume on another machine can do with it)."""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import secrets
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from adgan.atomic import write_atomic
from adgan.data.types import Splits
from adgan.errors import ConfigError
from adgan.models import DETECTORS
from adgan.runfiles import TUNE_EXPERIMENT
from adgan.sweep import provenance, records
from adgan.sweep.callback import SweepCallback, reconcile
from adgan.sweep.capacity import check_cluster, check_local, declared_node_types, effective_gpu
from adgan.sweep.grouped import OPTUNA_JOURNAL, GroupedScheduler, GroupedSearcher
from adgan.sweep.lock import results_lock
from adgan.sweep.reaper import LocalRayGuard
from adgan.sweep.results import read_table
from adgan.sweep.snapshot import restore_named_checkpoints
from adgan.sweep.spec import SweepSpec, check_configs_on_data, trial_config
from adgan.sweep.storage import Location, local_state_dir, location

METRIC, MODE = "best_val_auprc", "max"
KEPT_CHECKPOINTS = 2  # per trial, by Tune (see _new_tuner)


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
        with _neutral_cwd():
            ray.init(
                num_cpus=num_cpus or os.cpu_count(),
                include_dashboard=dashboard,
                _node_ip_address="127.0.0.1",
                configure_logging=True,
                logging_level="WARNING",
                log_to_driver=True,
            )
    else:
        with _neutral_cwd():
            ray.init(address=address, logging_level="WARNING")  # run_sweep checked it answers


_EMPTY_DIR: str | None = None  # the working directory of this process's ray.init (_neutral_cwd)


@contextlib.contextmanager
def _neutral_cwd() -> Iterator[None]:
    """``ray.init`` in an empty directory: Ray puts the driver's working directory first on every worker's
    ``sys.path``, so trials started from a checkout would import its ``adgan`` instead of the installed one
    the driver runs (code versions differing within one sweep). The trials add the driver's directory at
    the end of their path instead, for plugins named as modules (``adgan.sweep.trial``)."""
    global _EMPTY_DIR
    here = os.getcwd()
    if _EMPTY_DIR is None or not os.path.isdir(_EMPTY_DIR):
        # This process's own (mkdtemp: new, private, empty; a fixed name in /tmp could be planted by
        # another user), kept while it runs: the local Ray's processes and workers start in it, and a
        # deleted working directory breaks os.getcwd there.
        _EMPTY_DIR = tempfile.mkdtemp(prefix="adgan-ray-cwd-")
        atexit.register(shutil.rmtree, _EMPTY_DIR, ignore_errors=True)
    os.chdir(_EMPTY_DIR)
    try:
        yield
    finally:
        os.chdir(here)


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


def _ask_autoscaler_for_a_gpu(on: bool) -> None:
    """Ask the cluster's autoscaler for one GPU (``on``), or withdraw the request; a cluster without an
    autoscaler ignores it."""
    from ray.autoscaler.sdk import request_resources

    with contextlib.suppress(Exception):  # (no autoscaler to ask: the wait alone then)
        request_resources(bundles=[{"GPU": 1}] if on else [])


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
    optuna_storage: str | None = None,
) -> Path | str:
    """Run (or resume) ``spec``; returns ``results/<sweep-name>`` (a ``Path``, or the URI when
    ``results_root`` is one). See the module docstring.

    Args:
        optuna_storage: The Optuna journal file (default: ``optuna.journal`` in the results directory, or
            on this machine when the results are on an object store: :func:`journal_path`).

    Raises:
        ConfigError: Nothing to resume (or, without ``resume``, a sweep already there), another sweep
            holding the results directory (``adgan.sweep.lock``), a trial that no node can run
            (``adgan.sweep.capacity``), or a resume whose Optuna journal is on another machine; each before
            any trial starts.
    """
    where = f"{spec.path}: resources"
    if address is not None:
        _check_reachable(address)  # before anything is written
    else:
        check_local(spec.cpus, num_cpus or os.cpu_count() or 1, where)
    results = location(results_root or spec.results).child(spec.name)
    journal = journal_path(results, optuna_storage)
    if resume:
        check_resumable(spec, results_root)  # (before the lock creates the directory)
    with results_lock(results):
        _check_start(spec, results, resume)
        if resume:
            records.warn_if_plugins_changed(spec, results)
            if optuna_storage is None:
                journal = _recorded_journal(results, journal)
            _journal_for_resume(results, journal, named=optuna_storage is not None)
            _check_journal_is_the_sweeps(results, journal)
        elif not results.is_local:
            _set_aside_stale_journal(journal)
        spec = _with_available_dataset(spec, results, resume)
        with _ray_session(address, num_cpus, dashboard):
            gpu = effective_gpu(spec.gpu, _cluster_gpus, declared_node_types(), local=address is None,
                                name=spec.name, ask=_ask_autoscaler_for_a_gpu)
            check_cluster({"CPU": spec.cpus, "GPU": gpu}, local=address is None, where=where)
            run_index = _start_record(spec, results, journal, resume, address, max_concurrent, use_wandb)
            status = "failed"
            try:
                _run(
                    spec,
                    results,
                    gpu,
                    journal,
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
                # The journal's copy first: a run recorded as ended promises a copy at least that new.
                _upload_journal(results, journal)
                provenance.end_run(results, run_index, status)
    return Path(results.path) if results.is_local else results.uri


def check_resumable(spec: SweepSpec, results_root: str | None) -> None:
    """What ``--resume`` (and its ``--dry-run``) needs of the results: a sweep of this name there, started
    with this spec (``records.check_same_spec``).

    Raises:
        ConfigError: No such sweep, or a spec that differs from the recorded one.
    """
    results = location(results_root or spec.results).child(spec.name)
    experiment = results.child(TUNE_EXPERIMENT)
    if not experiment.exists():
        raise ConfigError(f"{spec.path}: --resume: no sweep to resume in {experiment.uri}")
    records.check_same_spec(spec, results)


def journal_path(results: Location, optuna_storage: str | None = None) -> Path:
    """The Optuna journal of the sweep in ``results``: ``optuna_storage`` when given (a file, or a directory
    holding ``optuna.journal``); else ``optuna.journal`` in a local results directory; else, results on an
    object store, on this machine: ``$ADGAN_HOME/sweeps/<name>-<hash of the URI>/optuna.journal``."""
    if optuna_storage:
        path = Path(optuna_storage).expanduser()
        return (path / OPTUNA_JOURNAL if path.is_dir() else path).resolve()
    if results.is_local:
        return Path(results.path) / OPTUNA_JOURNAL
    return local_state_dir(results.uri) / OPTUNA_JOURNAL


def _recorded_journal(results: Location, default: Path) -> Path:
    """The journal a resume without ``--optuna-storage`` continues: the one the sweep's last run on this
    machine used (``runs.json``), when it was started with ``--optuna-storage``; else ``default``. A fresh
    journal would hold none of the sweep's studies: its trials in flight could not report to them.

    Raises:
        ConfigError: That journal is gone.
    """
    mine = [r for r in provenance.read_runs(results) if r.get("host") in (None, socket.gethostname())]
    recorded = mine[-1].get("journal") if mine else None
    if not recorded or Path(recorded) == default:
        return default
    path = Path(recorded)
    if not path.is_file() and not results.is_local:
        return default  # the store keeps a copy of the journal (_journal_for_resume takes it)
    if not path.is_file():
        raise ConfigError(
            f"{results.uri}: --resume: the sweep's Optuna journal was {path} (--optuna-storage), which is "
            "gone; name where it is now with --optuna-storage"
        )
    print(f"adgan: continuing the sweep's Optuna journal {path} (as its last run, --optuna-storage)",
          file=sys.stderr)
    return path


def _resume_command(spec: SweepSpec, results: Location) -> str:
    """The command that resumes this sweep: this one with ``--resume`` when it was ``adgan sweep``, else
    the spec and the results root (which a bare ``adgan sweep SPEC --resume`` might not find)."""
    args = sys.argv[1:]
    if args[:1] == ["sweep"]:
        return shlex.join(["adgan", *args, *([] if "--resume" in args else ["--resume"])])
    root = results.uri.rstrip("/").rsplit("/", 1)[0]
    return shlex.join(["adgan", "sweep", str(spec.path), "--results", root, "--resume"])


def _check_journal_is_the_sweeps(results: Location, journal: Path) -> None:
    """Refuse a resume whose journal holds no study of a group that ran trials (another sweep's journal,
    or a new one): the resumed trials in flight would report to studies that do not exist."""
    started = {r["group_id"] for r in read_table(results, "epochs", missing_ok=True)}
    if not started:
        return
    stored: set[str] = set()
    if journal.is_file():
        import optuna

        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
        stored = {s.study_name for s in storage.get_all_studies()}
    missing = sorted(started - stored)
    if missing:
        raise ConfigError(
            f"{results.uri}: --resume: the Optuna journal {journal} holds no study of {len(missing)} "
            f"group(s) that ran trials (e.g. {missing[0]}): it is not this sweep's journal; name the one "
            "the sweep ran with (--optuna-storage FILE)"
        )


def _journal_for_resume(results: Location, journal: Path, named: bool = False) -> None:
    """Make sure the journal a resume continues is the sweep's newest, results on an object store.

    The journal is append-only, so of two copies of one sweep's journal the longer holds the shorter. The
    copy in the store (``<results>/optuna.journal``) is written when a run of the sweep ends, however it
    ends short of being killed; the local one is what this machine's driver appended to. A run that was
    killed (its record in ``runs.json`` still says ``running``) may have appended more than any copy holds,
    and only on its own machine: resuming elsewhere without that file would lose the trials in flight's
    studies, so it is refused with what to do. Elsewhere, a journal here is taken as that file when named
    (``named``: ``--optuna-storage``) or written since the killed run started (a copy of it; a journal an
    earlier run left on this machine is older).

    Raises:
        ConfigError: The sweep's last driver was killed on another machine (or its journal is gone).
    """
    if results.is_local:
        return
    copy = results.child(OPTUNA_JOURNAL)
    local_size = journal.stat().st_size if journal.is_file() else -1
    copy_size = copy.fs.get_file_info(copy.path).size if copy.is_file() else -1
    runs = provenance.read_runs(results)
    last = runs[-1] if runs else {}
    killed = last.get("status") in ("running", "killed")
    elsewhere = last.get("host") not in (None, socket.gethostname())
    started = float(last.get("started_unix") or 0)
    copied_here = local_size >= 0 and (named or 0 < started <= journal.stat().st_mtime)
    if killed and (local_size < 0 or (elsewhere and not copied_here)):
        raise ConfigError(
            f"{results.uri}: --resume: the sweep's last driver (PID {last.get('pid')} on "
            f"{last.get('host', '?')}) was killed and its Optuna journal, which the resumed trials continue, "
            f"is on that machine ({last.get('journal', '?')}), not here. Resume on that machine, or copy "
            f"that file to {journal} (or name it with --optuna-storage) and run this again"
        )
    if copy_size > local_size:
        write_atomic(journal, copy.read_bytes())
        print(f"adgan: Optuna journal of {results.uri} taken from the store ({copy_size} bytes)",
              file=sys.stderr)


def _set_aside_stale_journal(journal: Path) -> None:
    """A new sweep on an object store whose journal on this machine is left from an earlier sweep on the
    same URI (that was removed from the store): moved aside, not continued and not deleted."""
    if journal.is_file() and journal.stat().st_size > 0:
        old = journal.with_name(f"{journal.name}.{time.strftime('%Y%m%d-%H%M%S')}.old")
        os.replace(journal, old)
        print(f"adgan: {journal} was left by an earlier sweep on these results; moved to {old}",
              file=sys.stderr)


def _upload_journal(results: Location, journal: Path) -> None:
    """Copy the local journal to ``<results>/optuna.journal`` (results on an object store): the record of
    the search beside the tables, and what a resume on another machine starts from. Never raises."""
    if results.is_local or not journal.is_file():
        return
    try:
        results.child(OPTUNA_JOURNAL).upload_file(journal)
    except Exception as exc:  # noqa: BLE001 (the local journal is intact; the next run's end tries again)
        print(f"adgan: warning: Optuna journal not copied to {results.uri}: {exc}", file=sys.stderr)


def _check_start(spec: SweepSpec, results: Location, resume: bool) -> None:
    """``--resume`` needs a sweep to resume; a new sweep needs a directory without one."""
    from ray import tune

    exp = results.child(TUNE_EXPERIMENT)
    path, fs = exp.tune_storage
    if resume and not tune.Tuner.can_restore(path, storage_filesystem=fs):
        raise ConfigError(f"{spec.path}: --resume: no sweep to resume in {exp.uri}")
    if not resume and exp.exists():
        raise ConfigError(
            f"{results.uri} already holds sweep {spec.name!r}; continue it with --resume or "
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
    """The session directory of the Ray this process started (``session_...`` in Ray's temp dir): private
    in Ray 2.60, so None (the reaper then knows Ray's processes by their environment only) if it moves."""
    try:
        import ray._private.worker as ray_worker

        return str(ray_worker._global_node.get_session_dir_path())
    except Exception:  # noqa: BLE001
        return None


def _start_record(
    spec: SweepSpec,
    results: Location,
    journal: Path,
    resume: bool,
    address: str | None,
    max_concurrent: int | None,
    use_wandb: bool,
) -> int:
    """Open this invocation's record in ``runs.json`` (``adgan.sweep.provenance``); Ray is up."""
    import ray

    from adgan.version import code_version, save_uncommitted_diff

    resources = ray.cluster_resources()
    # A .dirty code version: its diff kept beside runs.json, so that the run's code can be rebuilt.
    diff = save_uncommitted_diff(lambda name, data: results.child(name).write_bytes(data))
    return provenance.start_run(
        results,
        sweep=spec.name,
        spec_file=str(spec.path),
        budget=spec.budget_name,
        trial_resources={"cpus": spec.cpus, "gpu": spec.gpu},  # as asked (spec or --gpu)
        resume=resume,
        address=address,
        max_concurrent=max_concurrent,
        wandb=use_wandb,
        code_version=code_version(),
        code_diff=diff,
        host=socket.gethostname(),
        pid=os.getpid(),
        journal=str(journal),
        cluster={
            "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
            "cpus": resources.get("CPU", 0.0),
            "gpus": resources.get("GPU", 0.0),
        },
    )


def _run(
    spec: SweepSpec,
    results: Location,
    gpu: float,
    journal: Path,
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
        "plugins": records.sweep_plugins(spec),  # imported by every trial before its config is resolved
        "driver_cwd": os.getcwd(),  # where module-name plugins may live (see _neutral_cwd)
        "results_dir": results.uri,  # (a local path, or the URI: trials then keep W&B runs on their node)
        "wandb": {"project": spec.wandb_project, "mode": mode} if use_wandb and mode != "disabled" else None,
    }
    trainable = tune.with_resources(
        # One request for every trial: a per-trial request (a callable) would spare CPU-only models their
        # GPU share, but with it Ray Tune 2.60 ran one trial at a time (measured on the loopback cluster).
        tune.with_parameters(run_trial, context=context), {"cpu": spec.cpus, "gpu": gpu}
    )
    # Tune snapshots its state (every trial's, so its cost grows with the trials) whenever a trial has saved
    # as many checkpoints as it keeps since the last snapshot (see _new_tuner); the warning about it is not
    # wanted.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    groups = build_groups(spec, "cuda" if gpu > 0 else "cpu", max(1, math.ceil(spec.cpus)))
    print(
        f"[{spec.name}] {len(groups)} groups, {sum(b for _, _, b in groups.values())} trials on "
        f"{spec.dataset}, up to {spec.budget.max_epochs} epochs (ASHA grace {spec.budget.grace_period}, "
        f"reduction {spec.budget.reduction_factor:g}); results in {results.uri}; "
        f"W&B {mode if use_wandb else 'off'}",
        file=sys.stderr,
    )
    if resume:
        tuner = _restored_tuner(spec, results, trainable, journal)
    else:
        records.write_spec_record(spec, results, gpu)
        callback = SweepCallback(spec, results.uri, progress_every=progress_every, background=True)
        tuner = _new_tuner(spec, results, trainable, groups, callback, max_concurrent, max_failures, journal)
    _only_the_json_logger(tuner)
    try:
        grid, interrupted = _fit(tuner)
    except KeyboardInterrupt:  # a second Ctrl-C, while Tune was saving: its last snapshot is what resumes
        print(f"[{spec.name}] interrupted again before Tune finished saving its state: continue from its "
              f"last saved state with the same command and --resume: {_resume_command(spec, results)}",
              file=sys.stderr)
        raise
    if interrupted:
        # Tune caught the Ctrl-C, saved its state and marked the trials in flight terminated: nothing is
        # reconciled or summarised from a sweep that is not done (the resume continues those trials).
        print(f"[{spec.name}] interrupted; Tune saved its state: continue with the same command and "
              f"--resume: {_resume_command(spec, results)}", file=sys.stderr)
        raise KeyboardInterrupt
    reconcile(spec, results, grid)
    if context["wandb"]:  # the sweep's summary run: per-class tables, test metrics, exported checkpoints
        from adgan.sweep.wandb_log import log_sweep_summary

        log_sweep_summary(
            results.uri, project=spec.wandb_project, mode=mode, sweep=spec.name, dataset=spec.dataset
        )
        if mode == "offline":
            from adgan.sweep.wandb_log import offline_hint

            hint = offline_hint(results.uri, spec.wandb_project, spec.name)
            if hint:
                print(hint, file=sys.stderr)


def _fit(tuner: Any) -> tuple[Any, bool]:
    """``tuner.fit()`` and whether it ended on a Ctrl-C (SIGINT).

    Tune catches the first SIGINT itself: it stops the loop, snapshots its state, marks the trials in flight
    terminated and returns as if the sweep were done. Its handler puts back the handler it found, so one of
    ours installed before ``fit`` is in place again afterwards exactly when Tune saw the signal (and, with
    ``TUNE_DISABLE_SIGINT_HANDLER`` set, ours is called and raises ``KeyboardInterrupt`` as Python's would).
    """
    if threading.current_thread() is not threading.main_thread():
        return tuner.fit(), False  # (no signal handlers outside the main thread; Tune installs none either)

    def ours(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def terminate(signum: int, frame: Any) -> None:
        # SIGTERM (a job scheduler, `kubectl delete`, `kill`) stops the sweep as Ctrl-C does, saving Tune's
        # state, instead of ending the process in the middle of Ray's shutdown.
        os.kill(os.getpid(), signal.SIGINT)

    before = signal.signal(signal.SIGINT, ours)
    before_term = signal.signal(signal.SIGTERM, terminate)
    quiet = _TuneAdvice()
    for name in _TuneAdvice.LOGGERS:
        logging.getLogger(name).addFilter(quiet)
    try:
        grid = tuner.fit()
        tune_caught = not int(os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") or 0)
        return grid, tune_caught and signal.getsignal(signal.SIGINT) is ours
    finally:
        signal.signal(signal.SIGINT, before)
        signal.signal(signal.SIGTERM, before_term)
        for name in _TuneAdvice.LOGGERS:
            logging.getLogger(name).removeFilter(quiet)


class _TuneAdvice(logging.Filter):
    """Drops Tune's messages that tell a user of ``adgan sweep`` the wrong thing: on Ctrl-C, to resume with
    ``Tuner.restore(path=...)`` (Python; adgan prints the command, ``--resume``), and after it, that the
    metrics of trials stopped before their first result could not be read (adgan reads them itself)."""

    LOGGERS = ("ray.tune.tune", "ray.tune.analysis.experiment_analysis")
    DROPPED = ("Experiment has been interrupted, but the most recent state was saved",
               "Failed to fetch metrics for ")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.DROPPED)


def _only_the_json_logger(tuner: Any) -> None:
    """Tune adds a CSV and a TensorBoard logger to every trial besides the JSON one (``result.json``, which
    the reconciliation reads): two more copies of every result per trial in the storage that nothing of
    adgan reads. A sweep started by this adgan passes its JSON logger itself (``_new_tuner``), so Tune's
    defaults are switched off; a sweep restored from an older ``tuner.pkl`` keeps them."""
    from ray.tune.logger import JsonLoggerCallback

    try:
        callbacks = tuner._local_tuner.get_run_config().callbacks or []
    except AttributeError:  # Ray's internals moved (tests/test_sweep_internals.py says so): keep defaults
        return
    if any(isinstance(c, JsonLoggerCallback) for c in callbacks):
        os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    else:
        os.environ.pop("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", None)


def _restored_tuner(spec: SweepSpec, results: Location, trainable: Any, journal: Path) -> Any:
    """The Tuner of a killed sweep, with its searcher, scheduler and callback as saved in ``tuner.pkl``:
    unfinished trials continue from their last checkpoint, errored ones stay errored. The searcher opens
    ``journal`` (this machine's), wherever the machine that started the sweep kept it, and learns which
    trials have a row in the results (``GroupedSearcher.recorded``).

    Raises:
        ConfigError: ``spec`` makes other groups than the sweep started with (a spec that reads the same
            but means other classes, e.g. after an upgrade of adgan).
    """
    from ray import tune

    for line in restore_named_checkpoints(results.child(TUNE_EXPERIMENT)):  # (a driver killed mid-checkpoint)
        print(f"adgan: {line}", file=sys.stderr)
    path, fs = results.child(TUNE_EXPERIMENT).tune_storage
    tuner = tune.Tuner.restore(
        path,
        trainable=trainable,
        resume_unfinished=True,
        resume_errored=False,
        restart_errored=False,
        storage_filesystem=fs,
    )
    tune_config = getattr(getattr(tuner, "_local_tuner", None), "_tune_config", None)  # (private in Ray 2.60)
    searcher = getattr(tune_config, "search_alg", None)
    if isinstance(searcher, GroupedSearcher):
        planned, started = {g.id for g in spec.groups()}, set(searcher.groups)
        if planned != started:
            differ = sorted(planned ^ started)
            raise ConfigError(
                f"{spec.path}: --resume: the spec makes other groups than sweep {spec.name!r} started with "
                f"({len(planned - started)} new, {len(started - planned)} gone; e.g. {differ[0]}); resume it "
                "with the spec it started with, or run this one as a new sweep"
            )
        if searcher.storage_path is not None:
            searcher.storage_path = str(journal)
        searcher.recorded = {r["trial_id"] for r in read_table(results, "trials", missing_ok=True)}
    return tuner


def _new_tuner(
    spec: SweepSpec,
    results: Location,
    trainable: Any,
    groups: dict[str, tuple[dict[str, Any], dict, int]],
    callback: SweepCallback,
    max_concurrent: int | None,
    max_failures: int,
    journal: Path,
) -> Any:
    """One Tuner for every group: the grouped searcher (one Optuna study each, stored in ``journal``) and
    scheduler (one ASHA each) route each trial to its group. Tune's storage is ``results`` (a local path,
    or an object store through its ``pyarrow.fs`` filesystem)."""
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

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
    searcher = GroupedSearcher(groups, METRIC, MODE, spec.search_seed, scheduler=scheduler, storage=journal)
    storage_path, storage_fs = results.tune_storage
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
            name=TUNE_EXPERIMENT,
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            callbacks=[callback, JsonLoggerCallback()],
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=max_failures),
            # Two checkpoints per trial, not one: Tune forces a snapshot of the whole experiment whenever a
            # trial has saved `num_to_keep` checkpoints since the last one (so that a snapshot never names a
            # deleted checkpoint). With one kept, every checkpoint of every trial forced a snapshot whose cost
            # grows with the trials already run: 73% of the driver's loop late in a 1,000-group sweep
            # (py-spy), the sweep slowing down as it went. With two, a trial forces one only after two
            # checkpoints between snapshots (a one-shot baseline never); snapshots otherwise follow Tune's
            # own period (at least 10 s, 5% of the time). The older checkpoint goes when the trial ends
            # (adgan.sweep.callback).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=KEPT_CHECKPOINTS),
            sync_config=tune.SyncConfig(sync_artifacts=True, sync_artifacts_on_checkpoint=False),
        ),
    )


def _with_available_dataset(spec: SweepSpec, results: Location, resume: bool) -> SweepSpec:
    """:func:`available_dataset`, recorded in ``dataset.json``; a resumed sweep keeps the dataset it
    started with."""
    record = results.child("dataset.json")
    if resume and record.is_file():
        recorded = json.loads(record.read_text())
        used = recorded["dataset"]
        spec = spec if used == spec.dataset else spec.with_dataset(used)
        if "sha256" in recorded:  # (recorded by sweeps started since the data's facts are kept here)
            _check_same_data(spec, recorded)
        return spec
    spec = available_dataset(spec)
    record.write_text(json.dumps({"dataset": spec.dataset, **_data_facts(spec)}))
    return spec


def _data_facts(spec: SweepSpec) -> dict[str, Any]:
    """What the sweep's data is: its source files' sha256, sample count and source line (the splits of
    the first group, loaded once per process: ``available_dataset`` loaded them already)."""
    info = _first_splits(spec).info
    return {"sha256": info.sha256, "n_samples": info.n_samples, "source": info.source,
            "classes": list(info.classes), "input_shape": list(info.input_shape),
            "columns": info.preprocessing.get("columns")}


def _first_splits(spec: SweepSpec) -> Splits:
    """The splits of the spec's first group, as its trial loads them (cached per process: the data's facts
    and input shape come from one load)."""
    from adgan.sweep.trial import splits_for
    from adgan.train import resolve_config

    return splits_for(resolve_config(trial_config(spec, spec.groups()[0], {})))


def _check_same_data(spec: SweepSpec, recorded: Mapping[str, Any]) -> None:
    """A resume trains on the data the sweep started with: files of one's own dataset edited since (images
    added or removed, a table rewritten) would mix two datasets in one sweep's results, the trials in
    flight continuing from checkpoints of the other one.

    Raises:
        ConfigError: The data's sha256 or sample count differs from the one recorded in ``dataset.json``.
    """
    now = _data_facts(spec)
    if (now["sha256"], now["n_samples"]) != (recorded["sha256"], recorded.get("n_samples")):
        raise ConfigError(
            f"{spec.path}: --resume: the data of dataset {spec.dataset!r} changed since sweep {spec.name!r} "
            f"started: it was {recorded.get('n_samples')} samples, sha256 {recorded['sha256'][:16]}... "
            f"({recorded.get('source')}); it is now {now['n_samples']} samples, sha256 "
            f"{now['sha256'][:16]}... ({now['source']}). A resume continues the sweep on the data it started "
            "with: restore that data, or run the sweep on the new data as a new sweep (another name or "
            "--results)"
        )
    if "classes" in recorded and list(recorded["classes"]) != now["classes"]:
        # The same files read into other class names (an adgan that reads labels differently): the group ids
        # (class indices) of the results would name other classes than the new trials'.
        raise ConfigError(
            f"{spec.path}: --resume: the classes of dataset {spec.dataset!r} were {recorded['classes']} when "
            f"sweep {spec.name!r} started and are read as {now['classes']} now (an adgan that reads labels "
            "differently); a resume cannot mix them: run it as a new sweep (another name or --results)"
        )
    if "input_shape" in recorded and (recorded["input_shape"], recorded.get("columns")) != (
            now["input_shape"], now["columns"]):
        # The same files encoded otherwise (an adgan that encodes a table's categories another way): the
        # checkpoints of the trials in flight take other inputs than the new trials'.
        raise ConfigError(
            f"{spec.path}: --resume: dataset {spec.dataset!r} was encoded into samples of shape "
            f"{tuple(recorded['input_shape'])} when sweep {spec.name!r} started and is encoded into "
            f"{tuple(now['input_shape'])} now (an adgan that encodes it otherwise); a resume cannot mix "
            "them: run it as a new sweep (another name or --results)"
        )

def available_dataset(spec: SweepSpec) -> SweepSpec:
    """The spec's dataset when its files load, else its fallback (saying so). Missing data without a
    fallback, and hyperparameters that cannot work on the data's samples (``check_configs_on_data``), are
    refused here, before Ray starts.

    Raises:
        DataError: The dataset cannot be loaded and the spec has no fallback.
        ConfigError: A model's setting refused by its detector for this data's input shape.
    """
    from adgan.errors import DataError

    try:
        input_shape = _first_splits(spec).info.input_shape
    except DataError as exc:
        if spec.fallback is None:
            raise
        print(
            f"[{spec.name}] dataset {spec.dataset!r} is not available ({exc}); using {spec.fallback!r}",
            file=sys.stderr,
        )
        spec = spec.with_dataset(spec.fallback)
        input_shape = _first_splits(spec).info.input_shape
    else:
        print(f"[{spec.name}] using dataset {spec.dataset!r}", file=sys.stderr)
    check_configs_on_data(spec, tuple(input_shape))
    _check_every_split(spec)
    return spec


def _check_every_split(spec: SweepSpec) -> None:
    """Every group's class and seed split as its trials will split them (cheap: indices of the data
    loaded above): a class too small for the protocol's validation or test part is refused here, naming
    it, rather than every trial of its groups failing on Ray; so is a setting that a class's own width
    (a declared table, whose categories come from each split's training rows) cannot take.

    Raises:
        DataError: ``<spec>: class <name>: <the protocol's reason>``.
        ConfigError: A model's setting refused for a class's width (``check_configs_on_data``).
    """
    from adgan.data import dataset_classes, split_indices
    from adgan.data.datasets import encoded_width
    from adgan.errors import ConfigError, DataError

    seen, widths = set(), {}
    for group in spec.groups():
        c = trial_config(spec, group, {})
        key = (c["dataset"], c["anomaly_class"], c.get("seed", 0), c.get("data_dir"), c.get("max_train"))
        if key in seen:
            continue
        seen.add(key)
        names, cls = dataset_classes(key[0]), key[1]
        label = f"{cls} ({names[cls]})" if isinstance(cls, int) and 0 <= cls < len(names) else cls
        try:
            idx = split_indices(key[0], key[1], key[2], data_dir=key[3], max_train=key[4])
        except DataError as exc:
            raise DataError(f"{spec.path}: class {label}, seed {key[2]}: {exc}; leave the class out of "
                            "the spec's 'classes'") from None
        # A table's categories are learnt from each split's training rows: its width varies by class.
        width = encoded_width(key[0], idx.train, data_dir=key[3])
        if width is not None and width not in widths:
            widths[width] = key
            try:
                check_configs_on_data(spec, (width,))
            except ConfigError as exc:
                raise ConfigError(f"{exc} (the training rows of class {label}, seed {key[2]}, give {width} "
                                  "features)") from None
