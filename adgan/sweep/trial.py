"""The trial function run by Ray Tune, and the per-process data cache.

A trial trains one configuration with ``adgan.train.train`` (never scoring the test split) and reports
every epoch with ``ray.tune.report``; an epoch that improves validation AUPRC also reports its detector
directory as a Tune checkpoint, so the best model reaches the sweep's storage whichever node ran it.

Data reach trials without going through the object store per trial: each worker process loads a split
once and keeps it (:func:`splits_for`), and Tune reuses trial actors, so a worker serves many trials of
the same class from memory.
"""

from __future__ import annotations

import filecmp
import functools
import logging
import os
import shutil
import tempfile
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adgan.data.types import Splits
from adgan.runfiles import RUN_STATE_FILES, TRAIN_STATE

SUMMARY_KEYS = ("status", "message", "epochs_run", "fit_seconds", "score_seconds", "wall_seconds")


@functools.lru_cache(maxsize=4)
def _load(
    dataset: str,
    anomaly_class: int,
    seed: int,
    data_dir: str | None,
    image_size: int | None,
    scale: bool,
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


def splits_for(config: Mapping[str, Any]) -> Splits:
    """The splits a (resolved) trial config trains on, loaded once per process."""
    return _load(
        config["dataset"],
        int(config["anomaly_class"]),
        int(config["seed"]),
        config.get("data_dir"),
        config.get("image_size"),
        bool(config.get("scale", False)),
        config.get("max_train"),
    )


def run_trial(config: dict[str, Any], context: dict[str, Any]) -> None:
    """Ray Tune function trainable: train ``config`` and report each epoch.

    Args:
        config: Trial config from the grouped searcher (``adgan.train`` keys plus the group id).
        context: Sweep-wide settings passed once with ``tune.with_parameters``: ``sweep``,
            ``results_dir``, ``wandb`` (None or ``{"project", "mode"}``).
    """
    import ray
    from ray import tune

    from adgan.models import DETECTORS
    from adgan.sweep.grouped import GROUP_KEY
    from adgan.train import resolve_config, train
    from adgan.version import code_version

    # Tune logs every persisted checkpoint at INFO level from each worker; the sweep's progress lines
    # say what matters.
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    cfg = {k: v for k, v in config.items() if k != GROUP_KEY}
    group_id = config[GROUP_KEY]
    tctx = tune.get_context()
    trial_id = tctx.get_trial_id()
    # adgan.train writes its run directory to a private temporary place; its logs are copied into the
    # trial directory (synced to the sweep's storage by Tune) and the checkpoints travel as Tune checkpoints.
    trial_dir = Path(tctx.get_trial_dir())
    out = Path(tempfile.mkdtemp(prefix=f"adgan-{trial_id}-"))
    node_id = ray.get_runtime_context().get_node_id()
    static: dict[str, Any] = {
        "trial_id": trial_id,
        "node_ip": _node_ip(node_id),
        "node_id": node_id,
        "code_version": code_version(),
    }
    run = None
    if context.get("wandb"):
        from adgan.sweep.wandb_log import TrialRun

        run = TrialRun(
            context["wandb"]["project"],
            context["results_dir"],
            context["wandb"]["mode"],
            context["sweep"],
            group_id,
            trial_id,
            cfg,
        )
    # Every report carries the searcher's metric: Tune refuses a result without it, which would end the
    # whole sweep on one failed trial. NaN until an epoch was scored.
    exit_code, final, best_so_far = 0, {}, {"best_val_auprc": float("nan")}
    try:
        resolved = resolve_config(cfg)
        splits = splits_for(resolved)
        static.update(
            {
                "data_source": splits.info.source,
                "data_sha256": splits.info.sha256,
                "data_n_samples": splits.info.n_samples,
                "n_train": len(splits.train),
                "n_val": len(splits.val),
                "n_val_anomalies": int(splits.val.y.sum()),
            }
        )
        model_cls = DETECTORS.get(resolved["model"])
        n_epochs = int(resolved.get("epochs", 1)) if model_cls.is_iterative else 1
        # A trial restarted after a resume or a lost node continues from its last reported epoch.
        resume = _restore(tune.get_checkpoint(), out)
        records = train(
            cfg, splits=splits, out=out, evaluate_test=False, save_state=model_cls.is_iterative, resume=resume
        )
        for rec in records:
            if rec["kind"] == "summary":  # diverged, or fewer epochs than planned
                final = _summary(rec)
                _copy_logs(out, trial_dir)
                if run is not None:  # as for the last epoch below: W&B first, then Tune
                    run.finish(final, exit_code=0)
                    run = None
                _report({**static, **best_so_far, **final}, None, run, None)
                break
            best_so_far["best_val_auprc"] = rec["best_val_auprc"]
            metrics = {**static, **{k: v for k, v in rec.items() if k not in ("kind", "checkpoint")}}
            if rec["epoch"] >= n_epochs:
                # Pull the summary before reporting the last epoch: the scheduler stops a trial at
                # max_t, and the summary (its status) must travel with a report the driver receives.
                final = _summary(next(records))
                metrics.update(final)
            # The trial's own log is in place before each report: a trial that the scheduler stops
            # ends inside ``tune.report``, while Tune is already copying its directory to storage.
            _copy_logs(out, trial_dir)
            if "status" in metrics and run is not None:
                # Last report: the W&B run is closed (written out) before Tune learns that the trial
                # ended, so a driver killed right after still finds the trial's whole W&B record.
                run.log(metrics, step=rec["epoch"])
                run.finish(final, exit_code=0)
                run = None
            _report(metrics, _stage(out, rec["epoch"]), run, rec["epoch"])
            if "status" in metrics:
                break
    except Exception as exc:  # an error of this configuration: recorded, not retried
        exit_code = 1
        message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        final = {"status": "errored", "message": message[-2000:]}
        _report({**static, **best_so_far, **final}, None, run, None)
    finally:
        _copy_logs(out, trial_dir)
        shutil.rmtree(out, ignore_errors=True)
        if run is not None:
            run.finish(final, exit_code=exit_code)


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


def _restore(checkpoint: Any, out: Path) -> bool:
    """Lay out a restarted trial's last Tune checkpoint as ``adgan.train``'s run directory ``out``;
    returns whether it holds a training state to resume from."""
    if checkpoint is None:
        return False
    with checkpoint.as_directory() as src:
        src = Path(src)
        if not (src / TRAIN_STATE).is_file():
            return False  # a one-shot baseline (or an older checkpoint): train from the start
        (out / "checkpoint").mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.is_file():
                dest = out / f.name if f.name in RUN_STATE_FILES else out / "checkpoint" / f.name
                shutil.copy2(f, dest)
    return True


def _copy_logs(out: Path, trial_dir: Path) -> None:
    """Copy ``adgan.train``'s logs (not its checkpoint) into the Tune trial directory."""
    if not trial_dir.is_dir():
        # ``get_trial_dir`` is the driver's staging directory, absent on another node: there the logs go
        # to the trial's working directory (the cwd Tune gives it), which Tune uploads to storage.
        trial_dir = Path.cwd()
    for name in ("config.json", "metrics.jsonl", "summary.json"):
        src, dst = out / name, trial_dir / name
        if not src.is_file() or (dst.is_file() and filecmp.cmp(src, dst, shallow=False)):
            continue
        # Tune may be uploading the trial directory right now (a stopped trial's thread runs on while Tune
        # syncs it): a file copied in place would be seen truncated. Copy beside the trial directory (same
        # filesystem, not uploaded), then rename into place, which readers see whole or not at all.
        tmp = trial_dir.parent / f".{trial_dir.name}.{name}.tmp"
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)


@functools.cache
def _node_ip(node_id: str) -> str:
    """The address the node registered with the cluster (``ray.util.get_node_ip_address`` would guess the
    machine's outward address instead of the 127.0.0.1 a loopback cluster uses)."""
    import ray

    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            return str(node.get("NodeManagerAddress"))
    return ray.util.get_node_ip_address()


def _summary(rec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: rec[k] for k in SUMMARY_KEYS if k in rec}


def _report(metrics: dict[str, Any], checkpoint: str | None, run: Any, epoch: int | None) -> None:
    from ray import tune

    if run is not None and epoch is not None:
        run.log(metrics, step=epoch)
    ckpt = tune.Checkpoint.from_directory(checkpoint) if checkpoint else None
    tune.report(metrics, checkpoint=ckpt)
