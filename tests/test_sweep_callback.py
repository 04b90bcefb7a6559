"""The driver callback's test evaluation of finished groups, run in a background thread."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adgan.sweep.callback import SweepCallback
from adgan.sweep.grouped import GROUP_KEY
from adgan.sweep.results import read_table
from adgan.sweep.spec import parse_spec
from adgan.train import train

ROOT = Path(__file__).resolve().parent.parent
GID = "synthetic-images/c0/knn/default/s0"


def _spec():
    raw = yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())
    raw["models"] = {"knn": raw["models"]["knn"]}
    raw["budget"]["trials_per_group"] = 2
    return parse_spec(raw, "smoke.yaml")


def _finish_trial(cb: SweepCallback, trial_id: str, k: int, checkpoint: str, val_auprc: float) -> None:
    config = {"model": "knn", "dataset": "synthetic-images", "anomaly_class": 0, "seed": 0,
              "max_train": 256, "k": k, GROUP_KEY: GID}
    results = [{"trial_id": trial_id, "epoch": 1, "val_auprc": val_auprc, "val_auroc": 0.9,
                "best_val_auprc": val_auprc, "status": "completed", "time_total_s": 1.0}]
    cb.record_trial(trial_id, config, results, None, checkpoint)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("knn")
    for _ in train({"model": "knn", "dataset": "synthetic-images", "max_train": 256, "k": 3}, out=out):
        pass
    return str(out / "checkpoint")


def test_finished_group_is_scored_in_the_background(tmp_path: Path, checkpoint: str) -> None:
    cb = SweepCallback(_spec(), str(tmp_path), background=True)
    cb.setup()
    _finish_trial(cb, "a", 3, checkpoint, 0.8)
    assert not cb._pending and not read_table(tmp_path, "best", missing_ok=True)  # group not complete
    _finish_trial(cb, "b", 3, checkpoint, 0.9)
    assert GID in cb._pending  # scoring runs beside Tune's loop, not in it
    cb.on_experiment_end([])
    (best,) = read_table(tmp_path, "best")
    assert best["trial_id"] == "b" and 0.0 <= best["test_auprc"] <= 1.0 and best["n_test"] > 0


def test_a_failed_background_evaluation_is_reported_and_retried_later(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cb = SweepCallback(_spec(), str(tmp_path), background=True)
    cb.setup()
    _finish_trial(cb, "a", 3, str(tmp_path / "missing"), 0.8)
    _finish_trial(cb, "b", 3, str(tmp_path / "missing"), 0.9)
    cb.on_experiment_end([])
    assert "test evaluation failed" in capsys.readouterr().err
    assert not read_table(tmp_path, "best", missing_ok=True)
    # The end-of-sweep reconciliation evaluates in the driver again and lets the error surface.
    again = SweepCallback(_spec(), str(tmp_path))
    again.setup()
    with pytest.raises(Exception, match="missing"):
        again.finish_group(GID)
