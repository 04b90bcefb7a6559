"""``train(config)``: the training loop, readable top to bottom.

One flat config of plain values drives a run: the run keys below plus the model's hyperparameters
(its ``Config`` dataclass). Unknown keys are refused before anything is loaded. The loop trains one
epoch at a time, scores the validation split, keeps the best detector by validation AUPRC and, only at
the end, scores the test split with that selected detector. Model selection never sees test labels.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adgan import metrics
from adgan.atomic import write_atomic
from adgan.data import dataset_classes, dataset_kind, list_datasets, load_dataset
from adgan.data.types import Split, Splits
from adgan.errors import ConfigError, DivergedError
from adgan.models import DETECTORS, Detector, create_detector
from adgan.models.base import load_tensors
from adgan.runfiles import TRAIN_STATE
from adgan.version import code_version

# Keys of a run that are not model hyperparameters, with their defaults.
RUN_DEFAULTS: dict[str, Any] = {
    "model": None,  # registry name, required
    "dataset": None,  # registry name, required
    "anomaly_class": 0,  # index into the dataset's classes
    "seed": 0,  # seeds the split, the initialisation and the minibatch order
    "data_dir": None,  # explicit data directory (else ADGAN_DATA_DIR, cache, system copies)
    "image_size": None,  # 28 or 32; None = the model's preferred size
    "scale": False,  # KDD99 min-max scaling fitted on train (off as in the published figures)
    "max_train": None,  # seeded subsample of the training normals, for quick runs
    "device": "auto",  # "auto" = CUDA when present, else CPU
    "bf16": False,  # bfloat16 autocast on CPU or CUDA
    "threads": None,  # torch CPU threads; None = the CPUs this process may use
}


def resolve_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Fill defaults and validate; returns a flat dict of plain values.

    Raises:
        ConfigError: Missing model/dataset, unknown keys, bad values or an anomaly class the dataset lacks.
    """
    cfg = dict(config)
    for key in ("model", "dataset"):
        if not cfg.get(key):
            raise ConfigError(f"config key {key!r} is required")
    if cfg["model"] not in DETECTORS:
        raise ConfigError(f"unknown model {cfg['model']!r}; expected one of: {', '.join(DETECTORS.names())}")
    if cfg["dataset"] not in list_datasets():
        known = ", ".join(list_datasets())
        raise ConfigError(f"unknown dataset {cfg['dataset']!r}; expected one of: {known}")
    model_cls = DETECTORS.get(cfg["model"])
    hparams = {k: v for k, v in cfg.items() if k not in RUN_DEFAULTS}
    detector = model_cls(**hparams)  # validates hyperparameter names, types and the loss case
    run = {k: cfg.get(k, default) for k, default in RUN_DEFAULTS.items()}
    classes = dataset_classes(run["dataset"])
    if isinstance(run["anomaly_class"], str) and run["anomaly_class"] in classes:
        run["anomaly_class"] = classes.index(run["anomaly_class"])  # a class name, as specs allow
    try:
        run["anomaly_class"] = int(run["anomaly_class"])
    except (TypeError, ValueError):
        raise ConfigError(
            f"anomaly_class must be an index or a class name of {run['dataset']!r} ({', '.join(classes)}), "
            f"got {run['anomaly_class']!r}"
        ) from None
    if not 0 <= run["anomaly_class"] < len(classes):
        raise ConfigError(
            f"anomaly_class {run['anomaly_class']} does not exist in {run['dataset']!r}; "
            f"expected 0..{len(classes) - 1} ({', '.join(classes)})"
        )
    kind = dataset_kind(run["dataset"])
    if kind not in model_cls.input_kinds:
        raise ConfigError(f"model {cfg['model']!r} does not accept {kind} data ({run['dataset']!r})")
    if run["image_size"] is None and kind == "image":
        run["image_size"] = model_cls.preferred_image_size
    if run["image_size"] not in (None, 28, 32):
        raise ConfigError(f"image_size must be 28 or 32, got {run['image_size']!r}")
    if run["device"] not in ("auto", "cpu", "cuda") and not str(run["device"]).startswith("cuda:"):
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {run['device']!r}")
    return {**run, **detector.config.to_dict()}


def pick_device(device: str) -> torch.device:
    """``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` -> a device torch has; CUDA runs in full fp32.

    Raises:
        ConfigError: CUDA asked for where torch sees none, or a ``cuda:N`` beyond the visible GPUs.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} was asked for but torch sees no CUDA device")
        index = device.partition(":")[2]
        if index and not (index.isdigit() and int(index) < torch.cuda.device_count()):
            raise ConfigError(
                f"device {device!r}: expected cuda:0..cuda:{torch.cuda.device_count() - 1} (the GPUs this "
                "process sees)"
            )
        # TF32 convolutions (cuDNN's default on Ampere and later) round inputs to 10-bit mantissas: scores
        # would then depend on batch composition and differ run to run. bf16 autocast is the speed option.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return torch.device(device)


def cpus_available() -> int:
    """CPUs this process may run on (the affinity mask, which Ray and containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def evaluate(detector: Detector, split: Split, q: float | None = None) -> dict[str, float]:
    """Score ``split`` and compute every metric of ``adgan.metrics.evaluate``."""
    return metrics.evaluate(split.y, detector.score(split.x), q=q)


def train(
    config: Mapping[str, Any],
    *,
    splits: Splits | None = None,
    out: str | os.PathLike[str] | None = None,
    evaluate_test: bool = True,
    save_state: bool = False,
    resume: bool = False,
) -> Iterator[dict[str, Any]]:
    """Train one detector, yielding one record per epoch and a final summary record.

    Args:
        config: Flat config (run keys of ``RUN_DEFAULTS`` plus the model's hyperparameters).
        splits: Preloaded data (sweeps load once per worker); loaded from ``config`` when None.
        out: Directory for ``config.json``, ``metrics.jsonl``, the best ``checkpoint/`` and
            ``summary.json``; nothing is written when None.
        evaluate_test: Score the test split with the selected detector at the end.
        save_state: After every epoch also write ``train_state.pt`` to ``out`` (iterative detectors):
            what ``resume`` needs to continue the run.
        resume: Continue the run in ``out`` from its ``train_state.pt`` (same config, data and seed):
            the epochs after it are trained and yielded, and the result is what the uninterrupted run
            would have given. Epoch records beyond the saved state are dropped from ``metrics.jsonl``.

    Yields:
        ``{"kind": "epoch", "epoch", "loss_*", "val_auprc", "val_auroc", "val_auprc_trapz",
        "epoch_seconds", "eval_seconds", "samples_per_s", "is_best", "best_val_auprc", "best_epoch",
        "checkpoint"}`` per epoch, then ``{"kind": "summary", "status": "completed" | "diverged", ...}``.
    """
    started = time.perf_counter()
    cfg = resolve_config(config)
    device = pick_device(cfg["device"])
    # Also on CUDA: data handling and some models' scoring run on the CPU, and Ray's cluster launcher
    # exports OMP_NUM_THREADS=1, which would otherwise leave one thread whatever the trial reserved.
    torch.set_num_threads(int(cfg["threads"] or cpus_available()))
    if splits is None:
        splits = load_dataset(
            cfg["dataset"], cfg["anomaly_class"], cfg["seed"], data_dir=cfg["data_dir"],
            image_size=cfg["image_size"], scale=cfg["scale"], max_train=cfg["max_train"],
        )
    hparams = {k: v for k, v in cfg.items() if k not in RUN_DEFAULTS}
    detector = create_detector(cfg["model"], **hparams)
    out_dir = Path(out) if out is not None else None
    provenance = {"config": cfg, "data": splits.info.to_dict(), "code_version": code_version()}
    best: dict[str, Any] = {"val_auprc": -math.inf, "epoch": 0, "val_auroc": math.nan}
    best_detector: Detector | None = None
    checkpoint = out_dir / "checkpoint" if out_dir is not None else None
    status, message, epoch, fit_seconds, score_seconds = "completed", "", 0, 0.0, 0.0
    training = None
    if resume:
        # What the interrupted run had reached: its training state, best so far, and its log up to there.
        if out_dir is None:
            raise ConfigError("resume needs the run directory (out)")
        saved = _load_train_state(out_dir, cfg, splits)
        training, counters = saved["training"], saved["run"]
        epoch, best = int(training["epoch"]), counters["best"]
        fit_seconds, score_seconds = counters["fit_seconds"], counters["score_seconds"]
        if evaluate_test and best["epoch"]:
            best_detector = Detector.load(out_dir / "checkpoint", device=device)
        _keep_epochs(out_dir / "metrics.jsonl", epoch)
    elif out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_json(out_dir / "config.json", provenance)
        (out_dir / "metrics.jsonl").write_text("")
    epochs = detector.fit_epochs(
        splits.train.x, seed=cfg["seed"], device=device, bf16=cfg["bf16"], resume=training
    )
    while True:
        t0 = time.perf_counter()
        try:
            losses = next(epochs)
        except StopIteration:
            break
        except DivergedError as exc:
            status, message = "diverged", str(exc)
            break
        epoch_seconds = time.perf_counter() - t0
        fit_seconds += epoch_seconds
        epoch += 1

        # Validation: the only signal model selection (and a sweep's searcher) ever sees.
        t0 = time.perf_counter()
        val_scores = detector.score(splits.val.x)
        eval_seconds = time.perf_counter() - t0
        score_seconds += eval_seconds
        if not np.all(np.isfinite(val_scores)):
            status, message = "diverged", f"{cfg['model']}: non-finite validation scores after epoch {epoch}"
            break
        val = metrics.evaluate(splits.val.y, val_scores)
        is_best = val["auprc"] > best["val_auprc"]
        if is_best:
            best = {"val_auprc": val["auprc"], "epoch": epoch, "val_auroc": val["auroc"]}
            detector.meta = {**provenance, "best_epoch": epoch, "val_auprc": val["auprc"]}
            if checkpoint is not None:
                detector.save(checkpoint)
            if evaluate_test or checkpoint is None:
                best_detector = copy.deepcopy(detector)
        record = {
            "kind": "epoch", "epoch": epoch,
            **{k if k.startswith("loss") else f"loss_{k}": float(v) for k, v in losses.items()
               if not k.endswith("_seconds")},
            "val_auprc": val["auprc"], "val_auroc": val["auroc"], "val_auprc_trapz": val["auprc_trapz"],
            "epoch_seconds": epoch_seconds, "eval_seconds": eval_seconds,
            "samples_per_s": len(splits.train) / epoch_seconds if epoch_seconds > 0 else math.nan,
            "is_best": is_best, "best_val_auprc": best["val_auprc"], "best_epoch": best["epoch"],
            "checkpoint": str(checkpoint) if is_best and checkpoint is not None else None,
        }
        _append_jsonl(out_dir, record)
        if save_state and out_dir is not None and detector.is_iterative:
            run_state = {"best": best, "fit_seconds": fit_seconds, "score_seconds": score_seconds}
            _save_train_state(out_dir, detector, cfg, splits, run_state)
        yield record

    summary: dict[str, Any] = {
        "kind": "summary", "status": status, "message": message, "epochs_run": epoch,
        "best_epoch": best["epoch"], "best_val_auprc": best["val_auprc"] if best["epoch"] else math.nan,
        "best_val_auroc": best["val_auroc"],
    }
    # Test metrics only for the selected detector, once, at the end.
    if evaluate_test and best_detector is not None:
        t0 = time.perf_counter()
        test = evaluate(best_detector, splits.test)
        summary["test_seconds"] = time.perf_counter() - t0
        summary.update({f"test_{k}": v for k, v in test.items()})
    summary.update({
        "fit_seconds": fit_seconds, "score_seconds": score_seconds,
        "wall_seconds": time.perf_counter() - started,
        "checkpoint": str(checkpoint) if checkpoint is not None and best["epoch"] else None,
        **provenance,
    })
    if out_dir is not None:
        _append_jsonl(out_dir, summary)
        _write_json(out_dir / "summary.json", summary)
    yield summary


def _save_train_state(
    out_dir: Path, detector: Detector, cfg: dict[str, Any], splits: Splits, run: dict[str, Any]
) -> None:
    """``train_state.pt``: the detector's training state plus the loop's own counters, written atomically."""
    payload = {
        "training": detector.training_state(),
        "run": run,
        "config": _identity(cfg),
        "data_sha256": splits.info.sha256,
    }
    tmp = out_dir / f".{TRAIN_STATE}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, out_dir / TRAIN_STATE)


def _load_train_state(out_dir: Path, cfg: dict[str, Any], splits: Splits) -> dict[str, Any]:
    """The saved state of the run in ``out_dir``, refused unless it is of this very config and data."""
    path = out_dir / TRAIN_STATE
    if not path.is_file():
        raise ConfigError(f"{path}: no saved training state to resume from")
    saved = load_tensors(path, "training state", "cpu")
    if saved.get("config") != _identity(cfg):
        raise ConfigError(f"{path}: saved by a run of another config; resume needs the same config")
    if saved.get("data_sha256") != splits.info.sha256:
        raise ConfigError(f"{path}: saved by a run on other data (sha256 differs); resume needs the same")
    return saved


def _identity(cfg: Mapping[str, Any]) -> str:
    """The config keys that decide a run's result (not where it runs: device, threads, data_dir)."""
    return json.dumps({k: v for k, v in cfg.items() if k not in ("device", "threads", "data_dir")},
                      sort_keys=True, default=str)


def _keep_epochs(path: Path, last_epoch: int) -> None:
    """Drop from a ``metrics.jsonl`` what was logged after ``last_epoch`` (and any summary)."""
    lines = path.read_text().splitlines() if path.is_file() else []
    kept = [ln for ln in lines if ln.strip() and (rec := json.loads(ln)).get("kind") == "epoch"
            and int(rec["epoch"]) <= last_epoch]
    write_atomic(path, "".join(f"{ln}\n" for ln in kept))


def _write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write: a reader sees the old file or the new one, never half of one."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default))


def _append_jsonl(out_dir: Path | None, record: dict[str, Any]) -> None:
    if out_dir is not None:
        with open(out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
