"""W&B as its users expect, read back from offline runs (no server): best-epoch summaries, filterable
config and tags, and the chosen trials' test metrics through the public API (online, faked here)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from wandb_records import read_runs

from adgan.sweep.wandb_log import TrialRun, add_test_metrics, describe, run_tags


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    return tmp_path / "results"


def test_a_trial_run_summarises_its_best_epoch_not_its_last(offline: Path) -> None:
    config = {"model": "ganomaly", "dataset": "synthetic-images", "anomaly_class": 1, "lr": 1e-3}
    run = TrialRun("adgan-test", str(offline), "offline", "smoke", "synthetic-images/c1/ganomaly/fm/s0",
                   "abc_00001", config)
    # (val AUPRC, val AUROC) per epoch: the best AUPRC is epoch 2's; the last epoch is worse on AUPRC and
    # best on AUROC.
    epochs = [(0.5, 0.6), (0.8, 0.7), (0.6, 0.9)]
    best, best_epoch = float("-inf"), 0
    for epoch, (auprc, auroc) in enumerate(epochs, 1):
        is_best = auprc > best
        if is_best:
            best, best_epoch = auprc, epoch
        run.log({"epoch": epoch, "val_auprc": auprc, "val_auroc": auroc, "is_best": is_best,
                 "best_val_auprc": best, "best_epoch": best_epoch, "loss_g": 1.0 / epoch,
                 "node_ip": "127.0.0.1"}, step=epoch)
    run.finish({"status": "completed", "epochs_run": 3})

    (rec,) = read_runs(offline / "wandb")
    assert rec.finished and rec.name == "abc_00001" and rec.job_type == "trial"
    assert rec.group == "smoke/synthetic-images/c1/ganomaly/fm/s0"
    s = rec.summary
    assert s["val_auprc"] == {"max": 0.8} and s["best_val_auprc"] == 0.8 and s["best_epoch"] == 2
    assert s["best_val_auroc"] == 0.7  # the AUROC of the epoch whose checkpoint the trial delivers
    assert s["val_auroc"] == {"max": 0.9}
    assert s["status"] == "completed" and s["epochs_run"] == 3
    assert [h["val_auprc"] for h in rec.history] == [0.5, 0.8, 0.6]  # the curve itself is every epoch
    # Filterable without parsing the group name.
    c = rec.config
    assert c["class_name"] == describe(config)["class_name"] != "1" and c["family"] == "gan"
    assert c["sweep"] == "smoke" and c["trial_id"] == "abc_00001" and c["lr"] == 1e-3
    assert c["group_id"] == "synthetic-images/c1/ganomaly/fm/s0"
    assert rec.tags == run_tags("smoke", "synthetic-images") == ["sweep:smoke", "dataset:synthetic-images"]


def test_describe_gives_baselines_their_family_and_survives_unknown_names() -> None:
    knn = describe({"model": "knn", "dataset": "synthetic-images", "anomaly_class": 0})
    assert knn == {"class_name": "hstripes", "family": "baseline"}
    unknown = describe({"model": "nope", "dataset": "nope", "anomaly_class": 3})
    assert unknown == {"class_name": "3", "family": None}


class _FakeApi:
    """``wandb.Api`` as far as :func:`add_test_metrics` uses it."""

    default_entity = "me"

    def __init__(self) -> None:
        self.queries: list[tuple[str, dict[str, Any]]] = []
        self.updates: list[tuple[str, dict[str, Any]]] = []

    def runs(self, path: str, filters: dict[str, Any]) -> list[Any]:
        self.queries.append((path, filters))
        name = filters["display_name"]
        summary = SimpleNamespace(update=lambda values: self.updates.append((name, values)))
        return [SimpleNamespace(summary=summary)]


def test_online_the_chosen_trials_run_gets_its_test_metrics() -> None:
    rows = [
        {"group_id": "d/c0/knn/default/s0", "trial_id": "t1", "test_auprc": 0.9, "test_auroc": 0.95,
         "n_test": 80, "val_auprc": 0.8},
        {"group_id": "d/c1/knn/default/s0", "trial_id": None},  # no trial finished with a checkpoint
    ]
    api = _FakeApi()
    assert add_test_metrics("proj", "smoke", rows, api=api) == 1
    assert api.queries == [("me/proj", {"display_name": "t1", "group": "smoke/d/c0/knn/default/s0"})]
    assert api.updates == [("t1", {"test_auprc": 0.9, "test_auroc": 0.95, "n_test": 80, "chosen": True})]


def test_offline_runs_cannot_be_resumed_by_id(offline: Path) -> None:
    """Why the test metrics of offline sweeps live in the summary run: W&B 0.31 does not resume an offline
    run (``resumed`` stays False and a second, empty run of the same id is written). When this fails, W&B
    learnt to resume offline runs: revisit ``add_test_metrics`` (docs/sweeps.md, Weights & Biases)."""
    import wandb

    settings = wandb.Settings(console="off", silent=True, x_disable_stats=True)
    first = wandb.init(project="p", dir=str(offline), mode="offline", settings=settings)
    first.log({"x": 1.0})
    first.finish()
    again = wandb.init(project="p", dir=str(offline), mode="offline", id=first.id, resume="must",
                       settings=settings)
    resumed = again.resumed
    again.finish()
    wandb.teardown()
    assert not resumed
    runs = read_runs(offline / "wandb")
    assert len(runs) == 2 and runs[0].run_id == runs[1].run_id and not runs[1].history


def test_a_sweep_resumed_without_new_answers_logs_no_second_summary_run(
    offline: Path, capsys: pytest.CaptureFixture
) -> None:
    from test_recommend import planted_sweep
    from test_report import write_tables

    from adgan.sweep.wandb_log import log_sweep_summary

    rows = planted_sweep(offline)
    first = log_sweep_summary(offline, project="p", mode="offline", sweep="fake", dataset="mnist-5k")
    assert first and Path(first).is_dir()
    again = log_sweep_summary(offline, project="p", mode="offline", sweep="fake", dataset="mnist-5k")
    assert again == first and len(list((offline / "wandb").glob("offline-run-*"))) == 1
    assert "the summary run of these results exists" in capsys.readouterr().err
    other = log_sweep_summary(offline, project="q", mode="offline", sweep="fake", dataset="mnist-5k")
    assert other != first  # another W&B project gets its own
    rows["best"][0]["test_auprc"] = 0.123  # the results changed (a resumed sweep finished more groups)
    write_tables(offline, rows, ("best",))
    third = log_sweep_summary(offline, project="p", mode="offline", sweep="fake", dataset="mnist-5k")
    assert third and third not in (first, other) and len(list((offline / "wandb").glob("offline-run-*"))) == 3
