"""``adgan score`` on raw files gives, for every registered model, the scores ``Detector.score`` gives on the
same samples from ``load_dataset``: KDD99 rows as CSV and gzipped CSV (the real 10% file where it is at
hand, the fake one in the same format always), images as raw uint8 ``.npy`` and as a folder of PNGs."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from conftest import KDD_REAL
from easy_data import tiny
from PIL import Image

from adgan.cli import main
from adgan.data import DATASETS, load_dataset, split_indices
from adgan.models import DETECTORS, Detector, create_detector, list_detectors

N_ROWS = 200


def _fit_and_save(name: str, splits: object, out: Path) -> Detector:
    """A quickly trained detector, saved with the data facts ``adgan train`` stores with a checkpoint."""
    hparams = tiny(name)
    if DETECTORS.get(name).is_iterative:
        hparams["epochs"] = 1
    det = create_detector(name, **hparams).fit(splits.train.x, seed=0)  # type: ignore[attr-defined]
    det.meta = {"data": splits.info.to_dict()}  # type: ignore[attr-defined]
    det.save(out)
    return Detector.load(out)


def _cli_scores(checkpoint: Path, source: Path, out: Path) -> np.ndarray:
    assert main(["score", "--checkpoint", str(checkpoint), "--input", str(source), "--output", str(out)]) == 0
    return np.loadtxt(out, delimiter=",", skiprows=1, usecols=-1, ndmin=1)


@pytest.fixture(scope="module", params=["fake", "real"])
def kdd_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if request.param == "real":
        if not KDD_REAL.is_file():
            pytest.skip(f"real KDD99 file not present at {KDD_REAL}")
        return KDD_REAL.parent
    return request.getfixturevalue("fake_data_dir")


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("name", [n for n in list_detectors() if "tabular" in DETECTORS.get(n).input_kinds])
def test_raw_kdd_rows(name: str, kdd_dir: Path, tmp_path: Path) -> None:
    splits = load_dataset("kdd99", 0, seed=0, data_dir=kdd_dir, max_train=512, verbose=False)
    det = _fit_and_save(name, splits, tmp_path / "ckpt")
    source = next(p for p in kdd_dir.rglob("kddcup.data_10_percent*") if p.is_file())
    test = split_indices("kdd99", 0, 0, data_dir=kdd_dir).test[:N_ROWS]
    position = {int(i): k for k, i in enumerate(test)}
    lines: list[bytes] = [b""] * len(test)
    with gzip.open(source, "rb") as fh:  # the file's own lines, untouched
        for n, line in enumerate(fh):
            if n in position:
                lines[position[n]] = line
    expected = det.score(splits.test.x[:N_ROWS])
    (tmp_path / "rows.csv").write_bytes(b"".join(lines))
    (tmp_path / "rows.csv.gz").write_bytes(gzip.compress(b"".join(lines)))
    for raw in ("rows.csv", "rows.csv.gz"):
        got = _cli_scores(tmp_path / "ckpt", tmp_path / raw, tmp_path / f"{raw}.scores.csv")
        np.testing.assert_array_equal(got, expected)  # the very floats (written so that they read back)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("name", [n for n in list_detectors() if "image" in DETECTORS.get(n).input_kinds])
def test_raw_images_as_npy_and_folder(name: str, tmp_path: Path) -> None:
    size = DETECTORS.get(name).preferred_image_size  # 32: the 28x28 digits are resized on the way in
    splits = load_dataset("mnist-5k", 3, seed=0, image_size=size, max_train=256, verbose=False)
    det = _fit_and_save(name, splits, tmp_path / "ckpt")
    raw = DATASETS.get("mnist-5k").load(None).images  # uint8 (N, 1, 28, 28)
    test = split_indices("mnist-5k", 3, 0).test[:N_ROWS]
    expected = det.score(splits.test.x[:N_ROWS])
    np.save(tmp_path / "digits.npy", raw[test, 0])  # (N, 28, 28) uint8, as a user would have them
    got = _cli_scores(tmp_path / "ckpt", tmp_path / "digits.npy", tmp_path / "npy.scores.csv")
    np.testing.assert_array_equal(got, expected)
    folder = tmp_path / "digits"
    folder.mkdir()
    for k, i in enumerate(test):
        Image.fromarray(raw[i, 0]).save(folder / f"{k:04d}.png")
    got = _cli_scores(tmp_path / "ckpt", folder, tmp_path / "folder.scores.csv")
    np.testing.assert_array_equal(got, expected)
