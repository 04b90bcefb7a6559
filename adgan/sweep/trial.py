"""The trial function run by Ray Tune, and the per-process data cache.

A trial trains one configuration with ``adgan.train.train`` (never scoring the test split) and reports
every epoch with ``ray.tune.report``; an epoch that improves validation AUPRC also reports its detector
directory as a Tune checkpoint, so the best model reaches the sweep's storage whichever node ran it.

Data reach trials without going through the object store per trial: each worker process loads a split
once and keeps it (:func:`splits_for`), and Tune reuses trial actors, so a worker serves many trials of
the same class from memory.

An exception inside training is this configuration's failure: reported as ``errored``, not retried. A
failure to reach the sweep's storage (restoring the last checkpoint, Tune persisting one in
``tune.report``: an object store unreachable for a while) is not the configuration's: it is raised, so that
Tune retries the trial from its last checkpoint (``FailureConfig(max_failures)``).
"""

from __future__ import annotations

import filecmp
import functools
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adgan.data.types import Splits
from adgan.jsontext import nulls_as_nan
from adgan.runfiles import FINISHED, RUN_LOGS, RUN_STATE_FILES, TRAIN_STATE
from adgan.sweep.results import EPOCH_REPORTS
from adgan.sweep.storage import IO_ERRORS

SUMMARY_KEYS = ("status", "message", "epochs_run", "fit_seconds", "score_seconds", "wall_seconds")
HOLD_ENV = "ADGAN_TEST_HOLD"  # a test hook: see _hold_if_asked


class StorageError(RuntimeError):
    """The sweep's storage could not be reached by this trial (not a failure of its configuration)."""


@functools.lru_cache(maxsize=4)
def _load(
    dataset: str,
    anomaly_class: int,
    seed: int,
    data_dir: str | None,
    image_size: int | None,
    scale: bool | None,
    max_train: int | None,
) -> Splits:
    from adgan.data import load_dataset

    return load_dataset(
        dataset,
        anomaly_class,
        seed,
        data_dir=data_dir,
        image_size=image_size,
        scale=scale,
        max_train=max_train,
    )


def as_started(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial config of a sweep as its sweep meant it: one started before declared tables were scaled by
    default carries no ``scale`` key and trained on raw features (its resumed trials and the scoring of its
    checkpoints must too); sweeps since record ``scale`` in every trial config (``trial_config``)."""
    return {"scale": False, **config}


def splits_for(config: Mapping[str, Any]) -> Splits:
    """The splits a (resolved) trial config trains on, loaded once per process."""
    return _load(
        config["dataset"],
        int(config["anomaly_class"]),
        int(config["seed"]),
        config.get("data_dir"),
        config.get("image_size"),
        config.get("scale"),
        config.get("max_train"),
    )


def _load_plugins(context: Mapping[str, Any]) -> None:
    """Import the sweep's plugins in this worker (another process: register what the spec names). Module
    names may live in the driver's working directory: it goes at the end of the path, after the installed
    packages, which ``adgan`` itself comes from (``adgan.sweep.runner._neutral_cwd``); and relative paths
    in what they register resolve against it."""
    from adgan import plugins

    cwd = context.get("driver_cwd")
    if cwd and cwd not in sys.path:
        sys.path.append(cwd)
    here = os.getcwd()
    # Imported from the driver's working directory where this node has it (the driver's machine, a shared
    # file system): a plugin registering a dataset by a relative path resolves it as the driver did, not
    # against Tune's trial folder.
    moved = bool(cwd) and os.path.isdir(cwd)
    if moved:
        os.chdir(cwd)
    try:
        plugins.load(context.get("plugins") or [])
    finally:
        if moved:
            os.chdir(here)


def run_trial(config: dict[str, Any], context: dict[str, Any]) -> None:
    """Ray Tune function trainable: train ``config`` and report each epoch.

    Args:
        config: Trial config from the grouped searcher (``adgan.train`` keys plus the group id).
        context: Sweep-wide settings passed once with ``tune.with_parameters``: ``sweep``, ``plugins``,
            ``results_dir``, ``wandb`` (None or ``{"project", "mode"}``).
    """
    from ray import tune

    from adgan.models import DETECTORS
    from adgan.sweep.grouped import GROUP_KEY
    from adgan.train import resolve_config, train

    _load_plugins(context)
    # Tune logs every persisted checkpoint at INFO level from each worker; the sweep's progress lines
    # say what matters.
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    train_config = as_started({k: v for k, v in config.items() if k != GROUP_KEY})
    tune_context = tune.get_context()
    trial_id = tune_context.get_trial_id()
    # adgan.train writes its run directory to a private temporary place; its logs are copied into the
    # trial directory (synced to the sweep's storage by Tune) and the checkpoints travel as Tune checkpoints.
    out = Path(tempfile.mkdtemp(prefix=f"adgan-{trial_id}-"))
    facts = _trial_facts(trial_id)  # carried by every report of the trial
    resume = _start_attempt(out)
    if resume is None:
        return
    reporter = _Reporter(out, Path(tune_context.get_trial_dir()), _wandb_run(context, config, trial_id))
    # Every report carries the searcher's metric: Tune refuses a result without it, which would end the
    # whole sweep on one failed trial. NaN until an epoch was scored.
    exit_code, final, best_so_far = 0, {}, {"best_val_auprc": float("nan")}
    try:
        resolved = resolve_config(train_config)
        splits = splits_for(resolved)
        facts.update(_data_facts(splits), resolved_config=json.dumps(resolved, sort_keys=True, default=str))
        if resume is True:  # the epochs before the checkpoint, in case the driver never recorded them
            reporter.history = [{**facts, **_epoch_metrics(r)} for r in _logged_epochs(out)]
        model_cls = DETECTORS.get(resolved["model"])
        n_epochs = int(resolved.get("epochs", 1)) if model_cls.is_iterative else 1
        records = train(
            train_config, splits=splits, out=out, evaluate_test=False, save_state=model_cls.is_iterative,
            resume=resume,
        )
        for rec in records:
            if rec["kind"] == "summary":  # diverged, or fewer epochs than planned
                final = _summary(rec)
                reporter.last({**facts, **best_so_far, **final}, final, None, None)
                break
            best_so_far["best_val_auprc"] = rec["best_val_auprc"]
            metrics = {**facts, **_epoch_metrics(rec)}
            if rec["epoch"] >= n_epochs:
                # Pull the summary before reporting the last epoch: the scheduler stops a trial at
                # max_t, and the summary (its status) must travel with a report the driver receives.
                final = _summary(next(records))
                reporter.last({**metrics, **final}, final, _stage(out, rec["epoch"]), rec["epoch"])
                break
            reporter.epoch(metrics, _stage(out, rec["epoch"]), rec["epoch"])
            _hold_if_asked(trial_id, rec["epoch"])
    except StorageError:
        exit_code = 1
        raise  # Tune retries the trial from its last checkpoint
    except Exception as exc:  # an error of this configuration: recorded, not retried
        exit_code = 1
        message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        final = {"status": "errored", "message": message[-2000:]}
        reporter.send({**facts, **best_so_far, **final}, None)
    finally:
        _copy_logs(out, reporter.trial_dir)
        shutil.rmtree(out, ignore_errors=True)
        reporter.close(final, exit_code)


def _trial_facts(trial_id: str) -> dict[str, Any]:
    """What every report of the trial carries from its start: where it runs and which code (its data and
    resolved config, the row's ``config``: every default filled in, are added once known)."""
    import ray

    from adgan.version import code_version

    node_id = ray.get_runtime_context().get_node_id()
    return {"trial_id": trial_id, "node_ip": _node_ip(node_id), "node_id": node_id,
            "code_version": code_version()}


def _start_attempt(out: Path) -> bool | None:
    """This attempt's start: whether it continues from a training state laid out in ``out`` (a trial
    restarted after a resume or a lost node continues from its last reported epoch), or None when the trial
    had ended (its driver was killed before Tune recorded that) and its outcome was reported again.

    Raises:
        StorageError: The checkpoint could not be fetched (Tune retries the trial from it).
    """
    from ray import tune

    try:
        resume = _restore(tune.get_checkpoint(), out)
    except StorageError:
        shutil.rmtree(out, ignore_errors=True)
        raise
    if isinstance(resume, dict):
        shutil.rmtree(out, ignore_errors=True)
        # Tune overwrites time_total_s with this attempt's; the row keeps the trial's own.
        _tune_report({**resume, "finished_time_total_s": resume.get("time_total_s")}, None)
        return None
    return resume


def _wandb_run(context: Mapping[str, Any], config: Mapping[str, Any], trial_id: str) -> Any:
    """The trial's W&B run (``adgan.sweep.wandb_log.TrialRun``), or None when the sweep logs none."""
    if not context.get("wandb"):
        return None
    from adgan.sweep.grouped import GROUP_KEY
    from adgan.sweep.wandb_log import TrialRun, run_parent

    return TrialRun(
        context["wandb"]["project"],
        run_parent(context["results_dir"]),
        context["wandb"]["mode"],
        context["sweep"],
        config[GROUP_KEY],
        trial_id,
        {k: v for k, v in config.items() if k != GROUP_KEY},
    )


def _data_facts(splits: Splits) -> dict[str, Any]:
    """Provenance of the trial's data, carried by its reports into ``trials.parquet``."""
    return {
        "data_source": splits.info.source,
        "data_sha256": splits.info.sha256,
        "data_n_samples": splits.info.n_samples,
        "n_train": len(splits.train),
        "n_val": len(splits.val),
        "n_val_anomalies": int(splits.val.y.sum()),
    }


class _Reporter:
    """A trial's reports to Tune and to its W&B run, in the order a killed driver needs.

    Before each report the trial's own log is in place in its trial directory: a trial that the scheduler
    stops ends inside ``tune.report``, while Tune is already copying that directory to storage.
    """

    def __init__(self, out: Path, trial_dir: Path, run: Any) -> None:
        self.out, self.trial_dir, self.run = out, trial_dir, run
        # A trial restarted from a checkpoint: the reports of the epochs before it, sent along with its
        # first report. A driver killed between a report and its next write of the tables (and of Tune's
        # result.json to storage) has them nowhere else; the driver fills its gaps from them.
        self.history: list[dict[str, Any]] = []

    def send(self, metrics: dict[str, Any], checkpoint: str | None) -> None:
        """Report to Tune (the first report of a restarted trial carries :attr:`history`)."""
        if self.history:
            metrics = {**metrics, EPOCH_REPORTS: self.history}
            self.history = []
        _tune_report(metrics, checkpoint)

    def epoch(self, metrics: dict[str, Any], checkpoint: str | None, epoch: int) -> None:
        """One epoch that is not the trial's last."""
        _copy_logs(self.out, self.trial_dir)
        if self.run is not None:
            self.run.log(metrics, step=epoch)
        self.send(metrics, checkpoint)

    def last(
        self, metrics: dict[str, Any], final: dict[str, Any], checkpoint: str | None, epoch: int | None
    ) -> None:
        """The trial's last report (its last epoch, or its summary alone when ``epoch`` is None): the W&B
        run is closed (written out) before Tune learns that the trial ended, so a driver killed right
        after still finds the trial's whole W&B record."""
        _copy_logs(self.out, self.trial_dir)
        if self.run is not None:
            if epoch is not None:
                self.run.log(metrics, step=epoch)
            self.run.finish(final, exit_code=0)
            self.run = None
        self.send(metrics, checkpoint)

    def close(self, final: dict[str, Any], exit_code: int) -> None:
        """Close a W&B run still open (the trial failed, or ended without a last report)."""
        if self.run is not None:
            self.run.finish(final, exit_code=exit_code)
            self.run = None


def _hold_if_asked(trial_id: str, epoch: int) -> None:
    """Test hook, set by tests only: with ``ADGAN_TEST_HOLD=<epoch>:<directory>`` in the sweep's
    environment, a trial that has reported epoch ``<epoch>`` (not its last) writes
    ``<directory>/<trial id>.held`` and waits until ``<directory>/release`` (every trial) or
    ``<directory>/<trial id>.release`` (this one) exists. A test can then act (kill the driver or a node,
    start a second sweep) while trials are provably in flight at a known epoch, whatever the machine's
    load, instead of racing the sweep."""
    hold = os.environ.get(HOLD_ENV)
    if not hold:
        return
    at, _, folder = hold.partition(":")
    if int(at) != epoch:
        return
    (Path(folder) / f"{trial_id}.held").write_text(str(os.getpid()))
    while not any((Path(folder) / name).exists() for name in ("release", f"{trial_id}.release")):
        time.sleep(0.05)


def _stage(out: Path, epoch: int) -> str | None:
    """A directory for this epoch's Tune checkpoint: the best detector so far (at the top, so that the
    checkpoint loads as a detector) and the run's state after this epoch. Tune copies it to storage
    inside ``tune.report``; the previous epoch's staging directory is removed here."""
    best = out / "checkpoint"
    for old in out.glob("tune-checkpoint-*"):
        shutil.rmtree(old, ignore_errors=True)
    if not (best / "detector.json").is_file():
        return None  # no scored epoch yet
    stage = out / f"tune-checkpoint-{epoch}"
    stage.mkdir()
    files = [*best.iterdir(), *(out / name for name in RUN_STATE_FILES if (out / name).is_file())]
    for src in files:
        if src.name == "metrics.jsonl":
            shutil.copy2(src, stage / src.name)  # appended to in place: a copy, not a link
        else:
            try:
                os.link(src, stage / src.name)  # replaced (never rewritten) by adgan.train: a link is safe
            except OSError:
                shutil.copy2(src, stage / src.name)
    return str(stage)


def _restore(checkpoint: Any, out: Path) -> bool | dict[str, Any]:
    """Lay out a restarted trial's last Tune checkpoint as ``adgan.train``'s run directory ``out``;
    returns whether it holds a training state to resume from, or the trial's final report when the
    checkpoint says the trial had ended (``finished.json``, written by the driver; see
    ``adgan.sweep.callback``).

    Raises:
        StorageError: The checkpoint could not be fetched from the sweep's storage.
    """
    if checkpoint is None:
        return False
    try:
        with checkpoint.as_directory() as src:
            src = Path(src)
            if (src / FINISHED).is_file():
                return json.loads((src / FINISHED).read_text())
            if not (src / TRAIN_STATE).is_file():
                return False  # a one-shot baseline (or an older checkpoint): train from the start
            (out / "checkpoint").mkdir(parents=True, exist_ok=True)
            for f in src.iterdir():
                if f.is_file():
                    dest = out / f.name if f.name in RUN_STATE_FILES else out / "checkpoint" / f.name
                    shutil.copy2(f, dest)
    except IO_ERRORS as exc:
        raise StorageError(f"cannot fetch the trial's checkpoint {checkpoint.path}: {exc}") from exc
    return True


def _copy_logs(out: Path, trial_dir: Path) -> None:
    """Copy ``adgan.train``'s logs (not its checkpoint) into the Tune trial directory."""
    if not trial_dir.is_dir():
        # ``get_trial_dir`` is the driver's staging directory, absent on another node: there the logs go
        # to the trial's working directory (the cwd Tune gives it), which Tune uploads to storage.
        trial_dir = Path.cwd()
    for name in RUN_LOGS:
        src, dst = out / name, trial_dir / name
        if not src.is_file() or (dst.is_file() and filecmp.cmp(src, dst, shallow=False)):
            continue
        # Tune may be uploading the trial directory right now (a stopped trial's thread runs on while Tune
        # syncs it): a file copied in place would be seen truncated. Copy to a place of the same filesystem
        # that Tune does not upload, then rename into place, which readers see whole or not at all.
        tmp = _scratch_dir(trial_dir) / f".{trial_dir.name}.{name}.tmp"
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)


# Tune 2.60 stages trial directories in ``<experiment>/driver_artifacts/<trial>`` (uploaded whole with the
# experiment's state) and runs trials in ``<experiment>/working_dirs/<trial>``: a temporary file beside the
# trial directory would be listed by an upload and gone when copied (an error in the driver's log).
_UPLOADED_PARENTS = ("driver_artifacts", "working_dirs")


def _scratch_dir(trial_dir: Path) -> Path:
    """A directory on ``trial_dir``'s filesystem that Tune does not upload."""
    parent = trial_dir.parent
    return parent.parent if parent.name in _UPLOADED_PARENTS else parent


@functools.cache
def _node_ip(node_id: str) -> str:
    """The address the node registered with the cluster (``ray.util.get_node_ip_address`` would guess the
    machine's outward address instead of the 127.0.0.1 a loopback cluster uses)."""
    import ray

    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            return str(node.get("NodeManagerAddress"))
    return ray.util.get_node_ip_address()


def _epoch_metrics(rec: Mapping[str, Any]) -> dict[str, Any]:
    """What an epoch's report carries of ``adgan.train``'s record of it."""
    return {k: v for k, v in rec.items() if k not in ("kind", "checkpoint")}


def _logged_epochs(out: Path) -> list[dict[str, Any]]:
    """The epoch records of the run log ``out/metrics.jsonl`` (restored from a checkpoint)."""
    log = out / "metrics.jsonl"
    lines = log.read_text().splitlines() if log.is_file() else []
    # (a non-finite number was written as null: NaN again for Tune and the epochs table)
    return [nulls_as_nan(r) for r in map(json.loads, filter(str.strip, lines)) if r.get("kind") == "epoch"]


def _summary(rec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: rec[k] for k in SUMMARY_KEYS if k in rec}


def _tune_report(metrics: dict[str, Any], checkpoint: str | None) -> None:
    """``tune.report`` with ``checkpoint`` (a directory) as a Tune checkpoint.

    Raises:
        StorageError: Tune could not persist the checkpoint (or the trial's files) to the sweep's storage.
    """
    from ray import tune

    try:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(checkpoint) if checkpoint else None)
    except IO_ERRORS as exc:
        raise StorageError(f"cannot write to the sweep's storage: {exc}") from exc
