"""Split protocol invariants for every registered dataset, determinism within and across processes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adgan.data import (
    DATASETS,
    dataset_classes,
    dataset_kind,
    list_datasets,
    load_dataset,
    split_indices,
)
from adgan.data.images import RawImages, to_model_space
from adgan.data.types import Splits
from adgan.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
FILE_BASED = {"mnist", "fashion-mnist", "cifar10", "kdd99"}  # read from the fake data_dir here


def _data_dir(name: str, fake: Path) -> Path | None:
    return fake if name in FILE_BASED else None


def _cases() -> list[tuple[str, int]]:
    cases = []
    for name in list_datasets():
        n = len(dataset_classes(name))
        cases.extend((name, c) for c in sorted({0, n - 1}))
    return cases


def _digest(splits: Splits) -> str:
    h = hashlib.sha256()
    for part in (splits.train, splits.val, splits.test):
        h.update(np.ascontiguousarray(part.x).tobytes())
        h.update(part.y.tobytes())
    return h.hexdigest()


def _row_hashes(x: np.ndarray) -> set[bytes]:
    flat = np.ascontiguousarray(x).reshape(x.shape[0], -1)
    return {hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat}


def test_registry_names_and_kinds() -> None:
    assert set(list_datasets()) >= {"mnist", "mnist-5k", "fashion-mnist", "cifar10", "kdd99",
                                    "synthetic-images", "synthetic-tabular"}
    assert dataset_kind("kdd99") == "tabular" and dataset_kind("cifar10") == "image"
    assert dataset_classes("kdd99") == ("normal.",) and len(dataset_classes("fashion-mnist")) == 10
    assert dataset_classes("cifar10")[2] == "bird"


@pytest.mark.parametrize(("name", "anomaly_class"), _cases())
def test_protocol_invariants(name: str, anomaly_class: int, fake_data_dir: Path) -> None:
    data_dir = _data_dir(name, fake_data_dir)
    s = load_dataset(name, anomaly_class, seed=3, data_dir=data_dir, verbose=False)
    idx = split_indices(name, anomaly_class, seed=3, data_dir=data_dir)
    raw = DATASETS.get(name).load(data_dir)
    is_anom = raw.labels == anomaly_class if isinstance(raw, RawImages) else raw.is_anomaly
    n_norm, n_anom = int((~is_anom).sum()), int(is_anom.sum())

    for part, ids in ((s.train, idx.train), (s.val, idx.val), (s.test, idx.test)):
        assert part.x.dtype == np.float32 and part.y.dtype == np.int64
        assert part.x.shape[0] == part.y.shape[0] == ids.shape[0]
        assert np.array_equal(part.y, is_anom[ids].astype(np.int64))
    assert not s.train.y.any(), "train holds no anomaly"
    assert 0 < s.val.y.sum() < len(s.val) and 0 < s.test.y.sum() < len(s.test)
    everything = np.concatenate([idx.train, idx.val, idx.test])
    assert np.unique(everything).size == everything.size, "splits are disjoint"
    seen = [_row_hashes(p.x) for p in (s.train, s.val, s.test)]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2]), "no sample in two splits"

    if dataset_kind(name) == "image":
        assert everything.size == is_anom.size  # every sample is used once
        assert s.train.x.min() >= -1.0 and s.train.x.max() <= 1.0 and s.train.x.ndim == 4
        n_pool = n_norm * 8 // 10
        assert len(s.train) == n_pool - n_pool // 10
        assert len(s.val) - s.val.y.sum() == n_pool // 10
        assert len(s.test) - s.test.y.sum() == n_norm - n_pool
        assert s.val.y.sum() == n_anom * 2 // 10 and s.test.y.sum() == n_anom - n_anom * 2 // 10
        # Within rounding of the documented shares: 72% / 8% / 20% of normals, 20% / 80% of anomalies.
        assert abs(len(s.train) / n_norm - 0.72) < 2.5 / n_norm + 1e-9
        assert abs(s.val.y.sum() / n_anom - 0.2) < 1 / n_anom + 1e-9
        assert np.array_equal(s.test.x[:5], to_model_space(raw.images[idx.test[:5]]))
        assert s.info.protocol == "pooled-80-20-v1"
    else:
        # docs/protocol.md: the first half of default_rng(seed).permutation(N) gives train + validation.
        first = np.random.default_rng(3).permutation(is_anom.size)[: is_anom.size // 2]
        assert np.array_equal(np.sort(np.r_[idx.train, idx.val]), np.sort(first))
        n_first_norm = int((~is_anom[first]).sum())
        assert len(s.val) - s.val.y.sum() == n_first_norm // 10
        assert s.val.y.sum() == is_anom[first].sum()
        test_norm, test_anom = len(s.test) - s.test.y.sum(), s.test.y.sum()
        assert test_anom == test_norm // 4 or test_norm == 4 * test_anom  # 20% anomalies within rounding
        assert np.array_equal(s.test.x[:5], raw.features(idx.test[:5]))
        assert s.info.protocol == "zenati-50-50-v1"

    info = s.info
    assert (info.name, info.anomaly_class, info.seed) == (name, anomaly_class, 3)
    assert info.n_samples == is_anom.size
    assert info.classes == dataset_classes(name) and info.kind == dataset_kind(name)
    assert info.input_shape == s.train.x.shape[1:] and len(info.sha256) >= 64
    json.dumps(info.to_dict())  # JSON-serialisable, as saved with checkpoints


BUILT_IN = list_datasets()  # at collection, before any test declares a dataset of its own


@pytest.mark.parametrize("name", BUILT_IN)
def test_deterministic_for_a_seed(name: str, fake_data_dir: Path) -> None:
    data_dir = _data_dir(name, fake_data_dir)
    a = load_dataset(name, 0, seed=5, data_dir=data_dir, verbose=False)
    b = load_dataset(name, 0, seed=5, data_dir=data_dir, verbose=False)
    c = load_dataset(name, 0, seed=6, data_dir=data_dir, verbose=False)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_identical_across_processes(fake_data_dir: Path) -> None:
    names = BUILT_IN  # (datasets other tests declare in this process are unknown to a fresh one)
    script = (
        "import hashlib, json, sys\n"
        "import numpy as np\n"
        "from adgan.data import load_dataset\n"
        "fake, names = sys.argv[1], sys.argv[2:]\n"
        "out = {}\n"
        "for n in names:\n"
        f"    d = fake if n in {sorted(FILE_BASED)!r} else None\n"
        "    s = load_dataset(n, 0, seed=11, data_dir=d, verbose=False)\n"
        "    h = hashlib.sha256()\n"
        "    for p in (s.train, s.val, s.test):\n"
        "        h.update(np.ascontiguousarray(p.x).tobytes()); h.update(p.y.tobytes())\n"
        "    out[n] = h.hexdigest()\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(fake_data_dir), *names], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = {n: _digest(load_dataset(n, 0, seed=11, data_dir=_data_dir(n, fake_data_dir), verbose=False))
            for n in names}
    assert theirs == ours


def test_resize_max_train_and_scale(fake_data_dir: Path) -> None:
    s32 = load_dataset("mnist", 2, seed=0, data_dir=fake_data_dir, image_size=32, verbose=False)
    assert s32.train.x.shape[1:] == (1, 32, 32) and s32.info.preprocessing["image_size"] == 32
    assert s32.train.x.min() >= -1.0 and s32.train.x.max() <= 1.0
    c28 = load_dataset("cifar10", 2, seed=0, data_dir=fake_data_dir, image_size=28, verbose=False)
    assert c28.test.x.shape[1:] == (3, 28, 28) and c28.info.input_shape == (3, 28, 28)

    full = split_indices("synthetic-images", 1, seed=4)
    small = load_dataset("synthetic-images", 1, seed=4, max_train=50, verbose=False)
    small_idx = split_indices("synthetic-images", 1, seed=4, max_train=50)
    assert len(small.train) == 50 and small.info.preprocessing["max_train"] == 50
    assert set(small_idx.train.tolist()) <= set(full.train.tolist())
    assert np.array_equal(small_idx.test, full.test) and np.array_equal(small_idx.val, full.val)

    scaled = load_dataset("synthetic-tabular", 0, seed=0, scale=True, verbose=False)
    raw = load_dataset("synthetic-tabular", 0, seed=0, verbose=False)
    assert np.allclose(scaled.train.x.min(axis=0), 0.0) and np.allclose(scaled.train.x.max(axis=0), 1.0)
    prep = scaled.info.preprocessing
    assert prep["scale"] is True and np.allclose(prep["scale_min"], raw.train.x.min(axis=0))
    expected = (raw.test.x - np.array(prep["scale_min"])) / (np.array(prep["scale_max"]) - prep["scale_min"])
    assert np.allclose(scaled.test.x, expected, atol=1e-6)  # test uses the train-fitted parameters
    assert raw.info.preprocessing["scale"] is False and "scale_min" not in raw.info.preprocessing


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"name": "mnist-5k", "anomaly_class": 10}, DataError,
         r"dataset 'mnist-5k' has no class 10; valid anomaly_class values: 0='0', .* 9='9'"),
        ({"name": "kdd99", "anomaly_class": 1}, DataError, r"'kdd99' has no class 1; .*0='normal\.'"),
        ({"name": "cifar10", "anomaly_class": -1}, DataError, r"no class -1; .*9='truck'"),
        ({"name": "synthetic-images", "anomaly_class": True}, DataError, "no class True"),
        # A class by its name, as on the command line; a misspelt one gets a suggestion.
        ({"name": "fashion-mnist", "anomaly_class": "Dres"}, ConfigError,
         r"dataset 'fashion-mnist' has no class 'Dres' \(did you mean 'Dress'\?\); expected a class name"),
        ({"name": "cifar10", "anomaly_class": "12"}, ConfigError,
         r"'cifar10' has no class 12 \(anomaly_class 12\); expected 0..9 or one of: airplane"),
        ({"name": "mnist-9k", "anomaly_class": 0}, ConfigError,
         r"unknown dataset 'mnist-9k' \(did you mean 'mnist-5k'\?\); expected"),
        ({"name": "synthetic-images", "anomaly_class": 0, "image_size": 64}, ConfigError, "image_size must"),
        ({"name": "synthetic-images", "anomaly_class": 0, "seed": -1}, ConfigError, "seed must be"),
        ({"name": "synthetic-images", "anomaly_class": 0, "max_train": 0}, ConfigError, "max_train must be"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        load_dataset(verbose=False, **kwargs)


def test_a_class_by_its_name_is_the_class_at_its_index() -> None:
    by_name = load_dataset("synthetic-images", "hstripes", seed=3, max_train=40, verbose=False)
    by_index = load_dataset("synthetic-images", 0, seed=3, max_train=40, verbose=False)
    assert by_name.info == by_index.info and np.array_equal(by_name.test.y, by_index.test.y)
    assert np.array_equal(by_name.train.x, by_index.train.x)
