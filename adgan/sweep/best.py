"""Choosing, testing, printing and exporting each group's best configuration.

The choice uses validation AUPRC only (:func:`select_best`); the chosen checkpoint is then scored once on
the test split (:func:`evaluate_best`). Exports are plain detector directories (``detector.json`` +
``state.pt``, whose metadata holds the config, data provenance and preprocessing facts) plus a
``sweep_result.json`` with the sweep's metrics; ``adgan score`` loads them with neither Ray nor W&B.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from adgan.errors import DataError
from adgan.runfiles import RUN_STATE_FILES
from adgan.sweep.results import read_table

BASELINES = ("knn", "iforest", "pca", "ocsvm")


def select_best(trials: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The trial with the highest validation AUPRC among those with a checkpoint (ties: lowest id).

    Only ``best_val_auprc`` is read: test metrics, if a row carries any, play no part.
    """
    usable = [
        t
        for t in trials
        if t.get("checkpoint") and _finite(t.get("best_val_auprc")) and t.get("status") != "errored"
    ]
    if not usable:
        return None
    return min(usable, key=lambda t: (-float(t["best_val_auprc"]), str(t["trial_id"])))


def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, int | float) and math.isfinite(v)


def evaluate_best(group_trials: list[Mapping[str, Any]], class_name: str) -> dict[str, Any]:
    """The ``best.parquet`` row of one finished group: its chosen trial scored once on test."""
    from adgan import metrics
    from adgan.models import Detector
    from adgan.sweep.trial import splits_for
    from adgan.train import resolve_config

    first = group_trials[0]
    counts = {
        s: sum(t.get("status") == s for t in group_trials)
        for s in ("completed", "stopped early", "diverged", "errored")
    }
    row: dict[str, Any] = {
        **{
            k: first.get(k)
            for k in ("sweep", "group_id", "model", "dataset", "anomaly_class", "loss_case", "seed")
        },
        "class_name": class_name,
        "n_trials": len(group_trials),
        "n_completed": counts["completed"],
        "n_stopped": counts["stopped early"],
        "n_diverged": counts["diverged"],
        "n_errored": counts["errored"],
    }
    best = select_best(group_trials)
    if best is None:
        return row
    config = json.loads(best["config"]) if isinstance(best["config"], str) else dict(best["config"])
    splits = splits_for(resolve_config(config))
    detector = Detector.load(best["checkpoint"])
    test = metrics.evaluate(splits.test.y, detector.score(splits.test.x))
    row.update(
        {
            "trial_id": best["trial_id"],
            "params": best["params"],
            "config": best["config"],
            "val_auprc": best["best_val_auprc"],
            "val_auroc": best["best_val_auroc"],
            "best_epoch": best["best_epoch"],
            "checkpoint": best["checkpoint"],
            "n_test": len(splits.test),
            "data_source": best.get("data_source"),
            "code_version": best.get("code_version"),
            **{
                f"test_{k}": test.get(k)
                for k in ("auprc", "auroc", "auprc_trapz", "f1", "precision", "recall", "threshold", "q")
            },
        }
    )
    return row


def _fmt(v: Any, digits: int = 4) -> str:
    return f"{v:.{digits}f}" if _finite(v) else "-"


def _params(p: Any) -> str:
    d = json.loads(p) if isinstance(p, str) else (p or {})
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(d.items()))


def best_table(results_dir: str | Path) -> str:
    """The per-group and per-class tables printed by ``adgan best`` (chosen on validation)."""
    rows = sorted(
        read_table(results_dir, "best"), key=lambda r: (r["anomaly_class"], r["model"], r["group_id"])
    )
    if not rows:
        return f"{results_dir}: no group has finished yet"
    lines = [
        f"{'class':<14} {'model':<9} {'loss case':<12} {'seed':>4} {'val AUPRC':>9} {'test AUPRC':>10} "
        f"{'AUROC':>6} {'F1':>6}  hyperparameters"
    ]
    for r in rows:
        cls = f"{r['anomaly_class']} {r['class_name'] or ''}"[:14]
        lines.append(
            f"{cls:<14} {r['model']:<9} {r['loss_case']:<12} {r['seed']:>4} {_fmt(r['val_auprc']):>9} "
            f"{_fmt(r['test_auprc']):>10} {_fmt(r['test_auroc'], 3):>6} {_fmt(r['test_f1'], 3):>6}  "
            f"{_params(r['params'])}"
        )
    lines += [
        "",
        "per class: best GAN vs best baseline (each chosen on validation AUPRC; test AUPRC shown)",
        f"{'class':<14} {'GAN':<9} {'test':>6} {'baseline':<9} {'test':>6} {'GAN - baseline':>14}",
    ]
    for cls in sorted({r["anomaly_class"] for r in rows}):
        mine = [r for r in rows if r["anomaly_class"] == cls and r["checkpoint"]]
        gan = select_best([_as_trial(r) for r in mine if r["model"] not in BASELINES])
        base = select_best([_as_trial(r) for r in mine if r["model"] in BASELINES])
        diff = (
            (gan["test_auprc"] - base["test_auprc"])
            if gan and base and _finite(gan["test_auprc"]) and _finite(base["test_auprc"])
            else None
        )
        name = f"{cls} {mine[0]['class_name'] if mine else ''}"[:14]
        lines.append(
            f"{name:<14} {(gan or {}).get('model', '-'):<9} {_fmt((gan or {}).get('test_auprc'), 3):>6} "
            f"{(base or {}).get('model', '-'):<9} {_fmt((base or {}).get('test_auprc'), 3):>6} "
            f"{_fmt(diff, 3):>14}"
        )
    return "\n".join(lines)


def _as_trial(best_row: Mapping[str, Any]) -> dict[str, Any]:
    return {**best_row, "best_val_auprc": best_row["val_auprc"]}


def export(results_dir: str | Path, out: str | Path, *, per: str = "group") -> list[Path]:
    """Copy each group's (``per="group"``) or each class's (``per="class"``, best over models and seeds
    by validation AUPRC) chosen checkpoint to ``out/<name>/`` with a ``sweep_result.json``.

    Raises:
        DataError: No results, or a chosen checkpoint directory is missing.
    """
    if per not in ("group", "class"):
        raise DataError(f"export: per must be 'group' or 'class', got {per!r}")
    rows = [r for r in read_table(results_dir, "best") if r["checkpoint"]]
    if not rows:
        raise DataError(f"{results_dir}: no group has a chosen checkpoint yet")
    if per == "class":
        chosen = []
        for cls in sorted({r["anomaly_class"] for r in rows}):
            pick = select_best([_as_trial(r) for r in rows if r["anomaly_class"] == cls])
            if pick is not None:
                chosen.append(pick)
    else:
        chosen = rows
    out = Path(out)
    written = []
    for r in chosen:
        src = Path(r["checkpoint"])
        if not (src / "detector.json").is_file():
            raise DataError(f"{src}: chosen checkpoint of {r['group_id']} is missing (moved results?)")
        name = f"{r['dataset']}_c{r['anomaly_class']}" + (
            "" if per == "class" else f"_{r['model']}_{r['loss_case']}_s{r['seed']}"
        )
        dest = out / name
        if dest.exists():
            shutil.rmtree(dest)
        # The detector only: a trial's checkpoint also holds what a restarted trial needs to continue
        # (train_state.pt with the optimisers, the trial's logs), which a deployed model does not.
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*RUN_STATE_FILES))
        result = {k: v for k, v in r.items() if k != "best_val_auprc"}
        for key in ("params", "config"):
            if isinstance(result.get(key), str):
                result[key] = json.loads(result[key])
        (dest / "sweep_result.json").write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
        written.append(dest)
    return written
