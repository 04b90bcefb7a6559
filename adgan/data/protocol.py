"""The split protocols, as index arithmetic on an ``is_anomaly`` mask (see docs/protocol.md).

Everything is drawn from ``numpy.random.default_rng(seed)`` (PCG64, identical on every platform and in every
process) and integer arithmetic, so a seed gives the same splits everywhere. Returned indices point into
the source arrays; each part is in a seeded random order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adgan.errors import DataError

IMAGE_PROTOCOL = "pooled-80-20-v1"
TABULAR_PROTOCOL = "zenati-50-50-v1"


@dataclass(frozen=True)
class SplitIndices:
    """int64 indices into the source arrays of the train, validation and test parts."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def _mixed(rng: np.random.Generator, *parts: np.ndarray) -> np.ndarray:
    """Concatenate ``parts`` and shuffle, so anomalies are not grouped at the end."""
    joined = np.concatenate(parts).astype(np.int64)
    return joined[rng.permutation(joined.shape[0])]


def _check(name: str, idx: SplitIndices, is_anomaly: np.ndarray) -> SplitIndices:
    problems = []
    if idx.train.size == 0:
        problems.append("no training normals")
    for part in ("val", "test"):
        y = is_anomaly[getattr(idx, part)]
        if not y.any() or y.all():
            problems.append(f"{part} lacks {'anomalies' if not y.any() else 'normals'}")
    if problems:
        raise DataError(f"{name}: too few samples to split ({', '.join(problems)}; "
                        f"{int(is_anomaly.sum())} anomalies, {int((~is_anomaly).sum())} normals)")
    return idx


def image_split(is_anomaly: np.ndarray, seed: int) -> SplitIndices:
    """Pooled one-class-anomalous protocol for images.

    With ``rng = default_rng(seed)``: ``perm = rng.permutation(N)``; normals and anomalies keep their order
    in ``perm``. Normals: the first ``n_norm * 8 // 10`` form the training pool, the rest go to test; the
    first ``n_pool // 10`` of the pool are validation normals, the rest train. Anomalies: the first
    ``n_anom * 2 // 10`` go to validation, the rest to test. Validation and test are then shuffled.

    Args:
        is_anomaly: bool (N,), True for the anomalous class.
        seed: Non-negative split seed.
    """
    a = np.asarray(is_anomaly, dtype=bool)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(a.shape[0])
    normals, anomalies = perm[~a[perm]], perm[a[perm]]
    n_pool = normals.shape[0] * 8 // 10
    pool, test_norm = normals[:n_pool], normals[n_pool:]
    n_val_norm = n_pool // 10
    n_val_anom = anomalies.shape[0] * 2 // 10
    idx = SplitIndices(
        train=pool[n_val_norm:].astype(np.int64),
        val=_mixed(rng, pool[:n_val_norm], anomalies[:n_val_anom]),
        test=_mixed(rng, test_norm, anomalies[n_val_anom:]),
    )
    return _check(IMAGE_PROTOCOL, idx, a)


def zenati_split(is_anomaly: np.ndarray, seed: int) -> SplitIndices:
    """KDD99 protocol after Zenati et al.: seeded 50/50 halves, test resampled to 20% anomalies.

    With ``rng = default_rng(seed)``: ``perm = rng.permutation(N)``; the first half ``perm[:N // 2]`` gives
    the training normals (its normals minus the first ``n // 10``, which are validation normals) and the
    validation anomalies (all its anomalies). The second half ``perm[N // 2:]`` is the test set, resampled
    to exactly one anomaly per four normals: if it holds at least ``n_norm // 4`` anomalies, all its normals
    and the first ``n_norm // 4`` anomalies are kept, otherwise all its anomalies and the first
    ``4 * n_anom`` normals. Validation and test are then shuffled.
    """
    a = np.asarray(is_anomaly, dtype=bool)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(a.shape[0])
    first, second = perm[: a.shape[0] // 2], perm[a.shape[0] // 2:]
    first_norm, first_anom = first[~a[first]], first[a[first]]
    n_val_norm = first_norm.shape[0] // 10
    test_norm, test_anom = second[~a[second]], second[a[second]]
    need = test_norm.shape[0] // 4
    if test_anom.shape[0] >= need:
        test_anom = test_anom[:need]
    else:
        test_norm = test_norm[: 4 * test_anom.shape[0]]
    idx = SplitIndices(
        train=first_norm[n_val_norm:].astype(np.int64),
        val=_mixed(rng, first_norm[:n_val_norm], first_anom),
        test=_mixed(rng, test_norm, test_anom),
    )
    return _check(TABULAR_PROTOCOL, idx, a)


def subsample_train(idx: SplitIndices, max_train: int | None, seed: int) -> SplitIndices:
    """Keep at most ``max_train`` training indices, drawn with ``default_rng([seed, 1])`` (order kept)."""
    if max_train is None or idx.train.shape[0] <= max_train:
        return idx
    rng = np.random.default_rng([seed, 1])
    keep = np.sort(rng.choice(idx.train.shape[0], size=max_train, replace=False))
    return SplitIndices(idx.train[keep], idx.val, idx.test)
