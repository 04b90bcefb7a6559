"""Datasets of one's own, declared in a sweep spec, are swept with their trials on Ray workers: PNG class
folders, an MVTec-style normal/anomaly folder, .npz arrays, and CSV and Parquet tables. The workers load
the data from the declaration the trial configs carry; nothing registers it for them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from localcluster import LoopbackCluster

from adgan.data.fakes import synthetic_class_images, write_image_folders, write_mvtec_folder, write_table
from adgan.sweep.best import export
from adgan.sweep.results import read_table

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def declarations(root: Path) -> dict[str, dict]:
    """One small dataset per format under ``root`` and its declaration (as a spec would write it)."""
    write_image_folders(root / "folders", per_class=24)
    write_mvtec_folder(root / "mvtec")
    x = np.concatenate([synthetic_class_images(c, 40) for c in ("disk", "ring")])
    np.savez(root / "arrays.npz", x=x, y=np.repeat([0, 1], 40))
    write_table(root / "table.csv", n=300)
    write_table(root / "table.parquet", n=300, seed=1)
    table = {"format": "table", "label_column": "label", "categorical": ["proto", "service"],
             "labels": "anomaly", "anomaly_values": ["scan", "flood"]}
    return {
        "folders": {"name": "own-folders", "format": "image-folder", "root": str(root / "folders"),
                    "channels": 1},
        "mvtec": {"name": "own-mvtec", "format": "normal-anomaly-folder", "root": str(root / "mvtec"),
                  "channels": 3, "min_per_class": 5},
        "npz": {"name": "own-npz", "format": "npz", "path": str(root / "arrays.npz")},
        "csv": {"name": "own-csv", "path": str(root / "table.csv"), **table},
        "parquet": {"name": "own-parquet", "path": str(root / "table.parquet"), **table},
    }


@pytest.fixture(scope="module")
def cluster() -> Iterator[LoopbackCluster]:
    """One loopback Ray node shared by the five sweeps (a Ray start-up each would triple the time)."""
    with LoopbackCluster() as c:
        c.add_node(num_cpus=2)
        yield c


@pytest.mark.parametrize("fmt", ["folders", "mvtec", "npz", "csv", "parquet"])
def test_a_declared_dataset_is_swept_on_ray_workers(
    fmt: str, cluster: LoopbackCluster, tmp_path: Path
) -> None:
    declaration = declarations(tmp_path / "data")[fmt]
    models = {"knn": {}} if fmt != "folders" else {
        "knn": {}, "ganomaly": {"fixed": {"base_filters": 8, "latent_dim": 16, "batch_size": 32}}}
    spec = {"name": f"own-{fmt}", "dataset": {"declare": declaration}, "classes": [0], "seeds": [0],
            "models": models, "results": "results",
            "budget": {"trials_per_group": 1, "max_epochs": 2, "grace_period": 2, "reduction_factor": 2}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    # An `adgan` package in the working directory (a checkout the sweep is started from) is not what the
    # trials import: Ray puts the driver's directory first on the workers' path, adgan's runner keeps it
    # out of the way. The driver runs as the installed command (`python -m` would import the shadow too).
    (tmp_path / "adgan").mkdir()
    (tmp_path / "adgan" / "__init__.py").write_text("raise ImportError('the adgan of the working dir')\n")
    adgan = Path(sys.executable).with_name("adgan")
    assert adgan.is_file(), f"{adgan}: the adgan command of this environment (pip install -e .)"
    cmd = [str(adgan), "sweep", str(path), "--address", cluster.address,
           "--results", str(tmp_path / "results"), "--no-wandb"]
    env = cluster.env | {"PYTHONPATH": str(ROOT), "ADGAN_HOME": str(tmp_path / "home")}
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    out = tmp_path / "results" / f"own-{fmt}"
    trials = read_table(out, "trials")
    assert trials and all(t["status"] == "completed" for t in trials), trials
    assert {t["dataset"] for t in trials} == {declaration["name"]}
    assert all(t["node_ip"] == "127.0.0.1" and t["data_sha256"] and t["n_train"] > 0 for t in trials)
    best = read_table(out, "best")
    assert len(best) == len(models) and all(np.isfinite(b["test_auprc"]) for b in best)
    assert "recommended detector per class" in run.stdout
    (exported,) = export(out, tmp_path / "exported")
    assert (exported / "MODEL_CARD.md").is_file()
