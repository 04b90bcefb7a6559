"""``train(config)``: the training loop, readable top to bottom.

One flat config of plain values drives a run: the run keys below plus the model's hyperparameters
(its ``Config`` dataclass). Unknown keys are refused before anything is loaded. The loop trains one
epoch at a time, scores the validation split, keeps the best detector by validation AUPRC and, only at
the end, scores the test split with that selected detector. Model selection never sees test labels.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
import numbers
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adgan import metrics
from adgan.atomic import write_atomic
from adgan.data import (
    class_index,
    dataset_classes,
    dataset_kind,
    default_scale,
    list_datasets,
    load_dataset,
    normalize_declaration,
    register_declared,
)
from adgan.data.types import Split, Splits
from adgan.errors import ConfigError, DivergedError, did_you_mean
from adgan.jsontext import json_text
from adgan.models import DETECTORS, Detector, create_detector
from adgan.models.base import device_name, load_tensors, refuse_foreign_folder, scores_of, torch_device
from adgan.runfiles import TRAIN_STATE
from adgan.runkeys import RUN_DEFAULTS, SEEDS, is_seed
from adgan.version import code_version


def resolve_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Fill defaults and validate; returns a flat dict of plain values.

    Raises:
        ConfigError: Missing model/dataset, unknown keys, bad values or an anomaly class the dataset lacks.
    """
    cfg = dict(config)
    if cfg.get("dataset_decl"):
        # The declaration travels with the config, so any process (a Ray worker) can load the data from it.
        cfg["dataset_decl"] = normalize_declaration(cfg["dataset_decl"])
        cfg["dataset"] = register_declared(cfg["dataset_decl"])
    for key in ("model", "dataset"):
        if not cfg.get(key):
            raise ConfigError(f"config key {key!r} is required")
    if cfg["model"] not in DETECTORS:
        raise ConfigError(f"unknown model {cfg['model']!r}{did_you_mean(cfg['model'], DETECTORS.names())}; "
                          f"expected one of: {', '.join(DETECTORS.names())} (a detector of one's own is "
                          "registered by loading its plugin: ADGAN_PLUGINS, or a sweep spec's plugins:)")
    if cfg["dataset"] not in list_datasets():
        known = ", ".join(list_datasets())
        raise ConfigError(f"unknown dataset {cfg['dataset']!r}; expected one of: {known}")
    model_cls = DETECTORS.get(cfg["model"])
    hparams = {k: v for k, v in cfg.items() if k not in RUN_DEFAULTS}
    fields = {f.name for f in dataclasses.fields(model_cls.Config)}
    for key in sorted(set(hparams) - fields):  # a misspelt run key, or a hyperparameter of another model
        raise ConfigError(f"config key {key!r} is neither a run key nor a hyperparameter of {cfg['model']!r}"
                          + did_you_mean(key, [*RUN_DEFAULTS, *fields])
                          + f"; run keys: {', '.join(RUN_DEFAULTS)}; its hyperparameters: "
                          f"{', '.join(sorted(fields))}")
    detector = model_cls(**hparams)  # validates hyperparameter types, ranges and the loss case
    if model_cls.is_iterative and int(getattr(detector.config, "epochs", 1)) < 1:
        raise ConfigError(f"epochs: a training run needs at least 1 epoch, got {detector.config.epochs}")
    run = {k: cfg.get(k, default) for k, default in RUN_DEFAULTS.items()}
    classes = dataset_classes(run["dataset"])
    if isinstance(run["anomaly_class"], str):  # as a user wrote it: a name, or a number (class_index)
        run["anomaly_class"] = class_index(classes, run["anomaly_class"], run["dataset"])
    elif isinstance(run["anomaly_class"], bool) or not isinstance(run["anomaly_class"], numbers.Integral):
        raise ConfigError(f"anomaly_class must be an index or a class name of {run['dataset']!r} "
                          f"({', '.join(classes)}), got {run['anomaly_class']!r}")
    run["anomaly_class"] = int(run["anomaly_class"])  # (numpy integers too)
    if not 0 <= run["anomaly_class"] < len(classes):
        raise ConfigError(
            f"anomaly_class {run['anomaly_class']} does not exist in {run['dataset']!r}; "
            f"expected 0..{len(classes) - 1} ({', '.join(classes)})"
        )
    kind = dataset_kind(run["dataset"])
    if run["scale"] is None:  # resolved here, so that the saved config says what was done
        run["scale"] = default_scale(run["dataset"])
    if kind not in model_cls.input_kinds:
        raise ConfigError(f"model {cfg['model']!r} does not accept {kind} data ({run['dataset']!r})")
    if run["image_size"] is None and kind == "image":
        run["image_size"] = model_cls.preferred_image_size
    if run["image_size"] not in (None, 28, 32):
        raise ConfigError(f"image_size must be 28 or 32, got {run['image_size']!r}")
    run["device"] = device_name(run["device"])  # (its form: the GPU is checked where the run runs)
    _check_run_values(run)
    return {**run, **detector.config.to_dict()}


def _check_run_values(run: dict[str, Any]) -> None:
    """The run keys' types and ranges, at the call (a string "false" for bf16 was taken as true, a
    negative thread count failed deep in torch, a seed scikit-learn cannot take in the baselines' fit);
    numpy's integers and booleans become Python's (the config is saved as JSON).

    Raises:
        ConfigError: Naming the key, what was expected and the value.
    """
    for key in ("seed", "max_train", "threads"):
        if isinstance(run[key], np.integer):
            run[key] = int(run[key])
    for key in ("bf16", "scale"):
        if isinstance(run[key], np.bool_):
            run[key] = bool(run[key])

    def whole(value: Any) -> bool:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)

    checks = (
        ("seed", is_seed(run["seed"]), SEEDS),
        ("max_train", run["max_train"] is None or (whole(run["max_train"]) and run["max_train"] >= 1),
         "a whole number >= 1, or null (every training normal)"),
        ("threads", run["threads"] is None or (whole(run["threads"]) and run["threads"] >= 1),
         "a whole number >= 1, or null (the CPUs this process may use)"),
        ("bf16", isinstance(run["bf16"], bool), "true or false"),
        ("scale", run["scale"] is None or isinstance(run["scale"], bool), "true, false or null"),
        ("data_dir", run["data_dir"] is None or isinstance(run["data_dir"], str | os.PathLike),
         "a folder path, or null"),
    )
    for key, ok, expected in checks:
        if not ok:
            raise ConfigError(f"{key} must be {expected}, got {run[key]!r}")


def cpus_available() -> int:
    """CPUs this process may run on (the affinity mask, which Ray and containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class RunDir:
    """The files of one training run in ``out`` (or none when ``out`` is None): ``config.json``,
    ``metrics.jsonl`` (one line per epoch, then the summary), the best ``checkpoint/``, ``summary.json`` and,
    for resumable runs, ``train_state.pt``. Every whole-file write is atomic."""

    def __init__(self, out: str | os.PathLike[str] | None) -> None:
        self.dir = Path(out) if out is not None else None

    @property
    def checkpoint(self) -> Path | None:
        return self.dir / "checkpoint" if self.dir is not None else None

    def start(self, provenance: Mapping[str, Any]) -> None:
        """A new run: its provenance in ``config.json`` and an empty log."""
        if self.dir is not None:
            from adgan.version import save_uncommitted_diff

            refuse_foreign_folder(self.dir / "checkpoint")  # (found at the start, not after an epoch)
            self.dir.mkdir(parents=True, exist_ok=True)
            # A .dirty code version: its diff kept in the run directory, so that its code can be rebuilt.
            diff = save_uncommitted_diff(lambda name, data: write_atomic(self.dir / name, data))
            _write_json(self.dir / "config.json", {**provenance, **({"code_diff": diff} if diff else {})})
            write_atomic(self.dir / "metrics.jsonl", "")

    def log(self, record: Mapping[str, Any]) -> None:
        if self.dir is not None:
            with open(self.dir / "metrics.jsonl", "a") as f:
                f.write(json_text(record, default=_json_default) + "\n")

    def save_state(
        self, detector: Detector, cfg: dict[str, Any], splits: Splits, run: dict[str, Any]
    ) -> None:
        """``train_state.pt``: the detector's training state plus the loop's own counters."""
        assert self.dir is not None
        payload = {
            "training": detector.training_state(),
            "run": run,
            "config": _identity(cfg),
            "data_sha256": splits.info.sha256,
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        write_atomic(self.dir / TRAIN_STATE, buffer.getvalue())

    def saved_state(self, cfg: Mapping[str, Any]) -> tuple[Path, dict[str, Any]]:
        """The saved state's path and contents, refused unless saved by a run of this very config."""
        if self.dir is None:
            raise ConfigError("resume needs the run directory (out)")
        path = self.dir / TRAIN_STATE
        if not path.is_file():
            raise ConfigError(f"{path}: no saved training state to resume from (the run ended before its "
                              "first epoch, or kept no state); start it again (adgan train --overwrite)")
        saved = load_tensors(path, "training state", "cpu")
        if saved.get("config") != _identity(cfg):
            now, then = json.loads(_identity(cfg)), json.loads(saved.get("config") or "{}")
            differ = sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
            shown = ", ".join(f"{k} {then.get(k)!r} -> {now.get(k)!r}" for k in differ[:6])
            raise ConfigError(f"{path}: saved by a run of another config ({shown}); resume needs the same "
                              "config, or --overwrite to start over")
        return path, saved

    def load_state(self, cfg: dict[str, Any], splits: Splits) -> dict[str, Any]:
        """The saved state of the run, refused unless it is of this very config and data; the log is cut
        back to the epochs that state holds."""
        path, saved = self.saved_state(cfg)
        if saved.get("data_sha256") != splits.info.sha256:
            raise ConfigError(f"{path}: saved by a run on other data (sha256 differs); resume needs the same")
        self._check_same_features(path, splits)
        _keep_epochs(self.dir / "metrics.jsonl", int(saved["training"]["epoch"]))
        return saved

    def _check_same_features(self, path: Path, splits: Splits) -> None:
        """The same file may be encoded otherwise by another adgan (a table's categories, learnt from its
        training rows alone since 2026-12): the run's recorded input shape and columns must be these."""
        try:
            then = json.loads((self.dir / "config.json").read_text()).get("data") or {}  # type: ignore[operator]
        except (OSError, ValueError):
            return  # (a run directory without its provenance: the sha256 check above is what there is)
        now = splits.info.to_dict()
        was_cols, now_cols = ((d.get("preprocessing") or {}).get("columns") for d in (then, now))
        was, shape = then.get("input_shape"), list(now["input_shape"])
        if (was is not None and list(was) != shape) or (was_cols is not None and list(was_cols) != now_cols):
            raise ConfigError(f"{path}: the run's data were encoded otherwise (input shape "
                              f"{tuple(was or ())} then, {tuple(shape)} now: an adgan "
                              "that encoded the file another way, e.g. a table's categories from the whole "
                              "file); it cannot be resumed: --overwrite to start over")

    def finish(self, summary: Mapping[str, Any]) -> None:
        if self.dir is not None:
            self.log(summary)
            _write_json(self.dir / "summary.json", summary)


class Selection:
    """Model selection on validation: the best epoch so far by validation AUPRC, saved as the run's
    checkpoint, and kept in memory when the test split will be scored at the end.

    Args:
        checkpoint: Where the best detector is saved (None: nowhere).
        keep: Keep a copy of the best detector (to score test; also when there is no checkpoint).
        provenance: Stored in the detector's metadata.
        best: The best so far of an interrupted run (``{"val_auprc", "epoch", "val_auroc"}``).
    """

    def __init__(self, checkpoint: Path | None, keep: bool, provenance: dict[str, Any],
                 best: dict[str, Any] | None = None) -> None:
        self.checkpoint, self.keep, self.provenance = checkpoint, keep, provenance
        self.best = best or {"val_auprc": -math.inf, "epoch": 0, "val_auroc": math.nan}
        self.detector: Detector | None = None
        if keep and self.best["epoch"] and checkpoint is not None:
            self.detector = Detector.load(checkpoint)

    def offer(self, detector: Detector, epoch: int, val: Mapping[str, float], val_split: Split,
              val_scores: np.ndarray) -> bool:
        """Keep ``detector`` if its validation AUPRC beats the best so far; returns whether it did. A kept
        detector's metadata holds the score cutoffs chosen on validation (``metrics.cutoffs``) for flagging
        new data (``adgan score --flag``)."""
        if not val["auprc"] > self.best["val_auprc"]:
            return False
        self.best = {"val_auprc": val["auprc"], "epoch": epoch, "val_auroc": val["auroc"]}
        detector.meta = {
            **self.provenance, "best_epoch": epoch, "val_auprc": val["auprc"],
            "cutoffs": metrics.cutoffs(val_split.y, val_scores),
            "cutoffs_from": {"split": "validation", "n": len(val_split),
                             "n_anomalies": int(val_split.y.sum())},
        }
        if self.checkpoint is not None:
            detector.save(self.checkpoint)
        if self.keep or self.checkpoint is None:
            self.detector = copy.deepcopy(detector)
        return True

    def so_far(self, is_best: bool) -> dict[str, Any]:
        """An epoch record's view of the selection (the checkpoint only on the epoch that wrote it)."""
        saved = is_best and self.checkpoint is not None
        return {"best_val_auprc": self.best["val_auprc"], "best_epoch": self.best["epoch"],
                "checkpoint": str(self.checkpoint) if saved else None}

    def summary(self, test: Split | None) -> dict[str, Any]:
        """The best epoch's figures and, given the test split, the selected detector's test metrics."""
        found = bool(self.best["epoch"])
        out: dict[str, Any] = {
            "best_epoch": self.best["epoch"], "best_val_auprc": self.best["val_auprc"] if found else math.nan,
            "best_val_auroc": self.best["val_auroc"],
            "checkpoint": str(self.checkpoint) if self.checkpoint is not None and found else None,
        }
        if test is not None and self.detector is not None:  # test metrics for the selected detector, once
            t0 = time.perf_counter()
            scores = scores_of(self.detector, test.x)
            out.update({f"test_{k}": v for k, v in metrics.evaluate(test.y, scores).items()})
            out["test_at_cutoffs"] = figures_at_cutoffs(self.detector, test.y, scores)
            out["test_seconds"] = time.perf_counter() - t0
        return out


def figures_at_cutoffs(detector: Detector, y: np.ndarray, scores: np.ndarray) -> dict[str, dict[str, float]]:
    """The figures on test (labels ``y`` (N,), the detector's ``scores`` (N,)) of flagging at each score
    cutoff the detector's metadata records (chosen on validation); empty for a detector without them."""
    return {name: metrics.at_cutoff(y, scores, c["cutoff"])
            for name, c in (detector.meta.get("cutoffs") or {}).items()}


def train(
    config: Mapping[str, Any],
    *,
    splits: Splits | None = None,
    out: str | os.PathLike[str] | None = None,
    evaluate_test: bool = True,
    save_state: bool = False,
    resume: bool = False,
) -> Iterator[dict[str, Any]]:
    """Train one detector, yielding one record per epoch (``"kind": "epoch"``: losses, validation metrics,
    timings, the selection so far) and then a summary (``"kind": "summary"``, ``"status"``: ``completed`` or
    ``diverged``, the selected epoch, test metrics when ``evaluate_test``, provenance).

    ``config``: flat run keys (``RUN_DEFAULTS``) plus the model's hyperparameters; ``splits``: preloaded
    data (else loaded from ``config``); ``out``: the run directory (``RunDir``; None writes nothing);
    ``save_state``: write ``train_state.pt`` after every epoch (iterative detectors), from which
    ``resume`` continues the run in ``out`` exactly as the uninterrupted run would have gone on.

    The config, and preloaded splits against it, are checked here, at the call (``ConfigError``); the run
    happens as the records are consumed: ``for record in train(config): ...``, or
    ``summary = list(train(config))[-1]``.
    """
    cfg = resolve_config(config)
    if splits is not None:
        _check_splits_match(cfg, splits)
    return _run(cfg, splits, out, evaluate_test, save_state, resume)


def _run(
    cfg: dict[str, Any],
    splits: Splits | None,
    out: str | os.PathLike[str] | None,
    evaluate_test: bool,
    save_state: bool,
    resume: bool,
) -> Iterator[dict[str, Any]]:
    """The run of ``train`` (a resolved config), top to bottom."""
    started = time.perf_counter()
    device = torch_device(cfg["device"])
    # Also on CUDA: data handling and some models' scoring run on the CPU, and Ray's cluster launcher
    # exports OMP_NUM_THREADS=1, which would otherwise leave one thread whatever the trial reserved.
    # Recorded as used: training's floating-point sums, so its figures in the last digits, depend on it.
    # The device too as used ("auto" names none: protocol.md's Reproducibility).
    cfg = {**cfg, "device": str(device), "threads": int(cfg["threads"] or cpus_available())}
    torch.set_num_threads(cfg["threads"])
    splits = splits if splits is not None else load_splits(cfg)
    detector = detector_for(cfg)
    run_dir = RunDir(out)
    provenance = {"config": cfg, "data": splits.info.to_dict(), "code_version": code_version()}
    counters, epoch, training, best = {"fit_seconds": 0.0, "score_seconds": 0.0}, 0, None, None
    if resume:  # what the interrupted run had reached: its training state, best so far, counters
        saved = run_dir.load_state(cfg, splits)
        training, best, epoch = saved["training"], saved["run"]["best"], int(saved["training"]["epoch"])
        counters = {k: saved["run"][k] for k in counters}
    else:
        run_dir.start(provenance)
    selection = Selection(run_dir.checkpoint, evaluate_test, provenance, best)
    epochs = detector.fit_epochs(splits.train.x, seed=cfg["seed"], device=device, bf16=cfg["bf16"],
                                 resume=training)
    status, message = "completed", ""
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
        epoch += 1

        # Validation: the only signal model selection (and a sweep's searcher) ever sees.
        t0 = time.perf_counter()
        val_scores = scores_of(detector, splits.val.x)
        eval_seconds = time.perf_counter() - t0
        counters["fit_seconds"] += epoch_seconds
        counters["score_seconds"] += eval_seconds
        bad = ~np.isfinite(val_scores)
        if bad.any():  # (a GAN that diverged; for a one-step detector, its score's own doing)
            status, message = "diverged", (
                f"{cfg['model']}: {int(bad.sum())} of {bad.size} validation scores not finite after epoch "
                f"{epoch} (the first: validation sample {int(np.argmax(bad))}, {val_scores[bad][0]})"
                + ("" if detector.is_iterative else "; score() must give every sample a finite score"))
            break
        val = metrics.evaluate(splits.val.y, val_scores)
        is_best = selection.offer(detector, epoch, val, splits.val, val_scores)
        record = {
            "kind": "epoch", "epoch": epoch, **_loss_columns(losses), **_val_columns(val),
            "epoch_seconds": epoch_seconds, "eval_seconds": eval_seconds,
            "samples_per_s": len(splits.train) / epoch_seconds if epoch_seconds > 0 else math.nan,
            "is_best": is_best, **selection.so_far(is_best),
        }
        run_dir.log(record)
        if save_state and run_dir.dir is not None and detector.is_iterative:
            run_dir.save_state(detector, cfg, splits, {"best": selection.best, **counters})
        yield record

    summary = {
        "kind": "summary", "status": status, "message": message, "epochs_run": epoch,
        **selection.summary(splits.test if evaluate_test else None),
        **counters, "wall_seconds": time.perf_counter() - started, **provenance,
    }
    run_dir.finish(summary)
    yield summary


def _check_splits_match(cfg: Mapping[str, Any], splits: Splits) -> None:
    """Preloaded splits are those the config names: the run records the config beside the data's facts,
    and metrics of one dataset, class or seed filed under another would be silently wrong."""
    info = splits.info
    prep = info.preprocessing
    pairs = [("dataset", info.name), ("anomaly_class", info.anomaly_class), ("seed", info.seed),
             ("max_train", prep.get("max_train"))]
    if info.kind == "image":  # (the size the images were brought to: the model's input)
        pairs.append(("image_size", info.input_shape[-1]))
    elif "scale" in prep:
        pairs.append(("scale", bool(prep["scale"])))
    differ = [f"{key} {cfg[key]!r} (splits: {theirs!r})" for key, theirs in pairs if cfg[key] != theirs]
    if differ:
        raise ConfigError(f"train(config, splits=...): the splits are not the config's: {'; '.join(differ)}. "
                          "Give the config the splits' dataset, anomaly_class, seed, max_train, image_size "
                          "and scale, or omit splits")


def detector_for(cfg: Mapping[str, Any]) -> Detector:
    """The unfitted detector of a resolved config (its model and hyperparameters, the run keys aside)."""
    return create_detector(cfg["model"], **{k: v for k, v in cfg.items() if k not in RUN_DEFAULTS})


def load_splits(cfg: Mapping[str, Any]) -> Splits:
    """The splits a resolved config trains on, loaded by the data layer."""
    return load_dataset(
        cfg["dataset"], cfg["anomaly_class"], cfg["seed"], data_dir=cfg["data_dir"],
        image_size=cfg["image_size"], scale=cfg["scale"], max_train=cfg["max_train"],
    )


def _loss_columns(losses: Mapping[str, float]) -> dict[str, float]:
    """A detector's per-epoch losses as ``loss_*`` record keys (timings such as ``fit_seconds`` dropped)."""
    return {k if k.startswith("loss") else f"loss_{k}": float(v) for k, v in losses.items()
            if not k.endswith("_seconds")}


def _val_columns(val: Mapping[str, float]) -> dict[str, float]:
    return {"val_auprc": val["auprc"], "val_auroc": val["auroc"], "val_auprc_trapz": val["auprc_trapz"]}


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
    """Atomic JSON write: a reader sees the old file or the new one, never half of one; NaN as null."""
    write_atomic(path, json_text(obj, indent=2, sort_keys=True, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
