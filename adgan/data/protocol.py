"""The split protocols, as index arithmetic on an ``is_anomaly`` mask (see docs/protocol.md).

Everything is drawn from ``numpy.random.default_rng(seed)`` (PCG64, identical on every platform and in every
process) and integer arithmetic, so a seed gives the same splits everywhere. Returned indices point into
the source arrays; each part is in a seeded random order.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from fractions import Fraction

import numpy as np

from adgan.errors import ConfigError, DataError

IMAGE_PROTOCOL = "pooled-80-20-v1"
TABULAR_PROTOCOL = "zenati-50-50-v1"
NORMAL_ANOMALY_PROTOCOL = "normal-anomaly-v1"


@dataclass(frozen=True)
class SplitFractions:
    """The options of the pooled and normal-vs-anomaly protocols; the defaults are ``pooled-80-20-v1``'s.

    Attributes:
        test_fraction: Share of the normals that goes to test (sources without a training-only part).
        val_fraction: Share of the remaining normals (the training pool) that goes to validation.
        val_anomaly_fraction: Share of the anomalies (of each anomaly type) that goes to validation, the
            rest to test; with a training-only part (``train/good``) also the share of the labelled
            normals (``test/good``) that goes to validation.
    """

    test_fraction: float = 0.2
    val_fraction: float = 0.1
    val_anomaly_fraction: float = 0.2

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
                raise ConfigError(f"{f.name} must be a number strictly between 0 and 1, got {value!r}")

    @property
    def is_default(self) -> bool:
        return self == SplitFractions()

    def to_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}

    def suffix(self) -> str:
        """``""`` for the defaults, else ``"(test_fraction=0.3, ...)"``: appended to the protocol name."""
        if self.is_default:
            return ""
        return "(" + ", ".join(f"{k}={v:g}" for k, v in self.to_dict().items()) + ")"


def share(n: int, fraction: float) -> int:
    """``floor(n * fraction)`` in exact rational arithmetic (``0.8 * 10`` must be 8, never 7.999...).

    The fraction is read from its shortest decimal representation, so 0.2 is exactly 1/5 and the default
    counts equal the integer formulas of ``pooled-80-20-v1`` (``n * 8 // 10`` ...).
    """
    return int(n * Fraction(repr(float(fraction))) // 1)


def pool_size(n: int, test_fraction: float) -> int:
    """Normals kept for the training pool: ``floor(n * (1 - test_fraction))``, exact (``n * 8 // 10``)."""
    return int(n * (1 - Fraction(repr(float(test_fraction)))) // 1)


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
        hint = ("; validation takes the first floor(n * val_anomaly_fraction) anomalies (default 0.2: "
                "at least 5 anomalies needed) and test the rest: add anomalies, or raise "
                "val_anomaly_fraction in the declaration" if "val lacks anomalies" in problems else "")
        raise DataError(f"{name}: too few samples to split ({', '.join(problems)}; "
                        f"{int(is_anomaly.sum())} anomalies, {int((~is_anomaly).sum())} normals){hint}")
    return idx


def pooled_protocol_name(fractions: SplitFractions | None = None) -> str:
    """``pooled-80-20-v1``, with the fractions appended when they are not the defaults."""
    return IMAGE_PROTOCOL + (fractions or SplitFractions()).suffix()


def normal_anomaly_protocol_name(fractions: SplitFractions | None = None) -> str:
    """``normal-anomaly-v1``, with the fractions appended when they are not the defaults."""
    return NORMAL_ANOMALY_PROTOCOL + (fractions or SplitFractions()).suffix()


def image_split(is_anomaly: np.ndarray, seed: int, fractions: SplitFractions | None = None) -> SplitIndices:
    """Pooled one-class-anomalous protocol for images (and one-class user datasets).

    With ``rng = default_rng(seed)``: ``perm = rng.permutation(N)``; normals and anomalies keep their order
    in ``perm``. Normals: the first ``n_norm * 8 // 10`` form the training pool, the rest go to test; the
    first ``n_pool // 10`` of the pool are validation normals, the rest train. Anomalies: the first
    ``n_anom * 2 // 10`` go to validation, the rest to test. Validation and test are then shuffled.
    Other ``fractions`` replace 2/10 (test), 1/10 (validation of the pool) and 2/10 (validation anomalies),
    counted with ``share`` (floor, exact).

    Args:
        is_anomaly: bool (N,), True for the anomalous class.
        seed: Non-negative split seed.
        fractions: The protocol's options (default: ``pooled-80-20-v1``).
    """
    fr = fractions or SplitFractions()
    a = np.asarray(is_anomaly, dtype=bool)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(a.shape[0])
    normals, anomalies = perm[~a[perm]], perm[a[perm]]
    n_pool = pool_size(normals.shape[0], fr.test_fraction)  # n * 8 // 10 by default
    pool, test_norm = normals[:n_pool], normals[n_pool:]
    n_val_norm = share(n_pool, fr.val_fraction)
    n_val_anom = share(anomalies.shape[0], fr.val_anomaly_fraction)
    idx = SplitIndices(
        train=pool[n_val_norm:].astype(np.int64),
        val=_mixed(rng, pool[:n_val_norm], anomalies[:n_val_anom]),
        test=_mixed(rng, test_norm, anomalies[n_val_anom:]),
    )
    return _check(pooled_protocol_name(fr), idx, a)


def normal_anomaly_split(labels: np.ndarray, seed: int, train_part: np.ndarray | None = None,
                         fractions: SplitFractions | None = None) -> SplitIndices:
    """``normal-anomaly-v1``: one fixed normal class, anomalies of one or more types (docs/protocol.md).

    With ``rng = default_rng(seed)`` and ``perm = rng.permutation(N)`` (every group below keeps its order
    in ``perm``):

    - Normals of a training-only part (``train_part``, e.g. ``train/good`` of an MVTec-style folder) all
      go to train. The labelled normals (``test/good``) are split like the anomalies: the first
      ``share(n, val_anomaly_fraction)`` to validation, the rest to test.
    - Without a training-only part, the normals are split as in the pooled protocol: the first
      ``pool_size(n, test_fraction)`` (``floor(n * (1 - test_fraction))``) form the training pool, the
      rest go to test; the first ``share(n_pool, val_fraction)`` of the pool are validation normals, the
      rest train.
    - Anomalies, each type separately (types in increasing label order): the first
      ``share(n_type, val_anomaly_fraction)`` go to validation, the rest to test, so every type with
      enough samples appears in both.

    Validation and test are then shuffled with the same ``rng``. With one anomaly type and no training-only
    part this is exactly the pooled protocol applied to the normal/anomaly flag.

    Args:
        labels: int (N,), 0 = normal, k >= 1 = anomaly of type k.
        seed: Non-negative split seed.
        train_part: bool (N,), samples of a normal-only training part (None: there is none).
        fractions: The protocol's options.

    Raises:
        DataError: An anomaly inside the training-only part, or too few samples for every part.
    """
    fr = fractions or SplitFractions()
    lab = np.asarray(labels, dtype=np.int64)
    a = lab > 0
    tp = np.zeros(a.shape, dtype=bool) if train_part is None else np.asarray(train_part, dtype=bool)
    if (tp & a).any():
        raise DataError(f"{NORMAL_ANOMALY_PROTOCOL}: the training-only part holds {int((tp & a).sum())} "
                        "anomalies; it must hold normals only")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(a.shape[0])
    fixed_train = perm[tp[perm]]
    normals = perm[~a[perm] & ~tp[perm]]
    if fixed_train.size:
        n_val_norm = share(normals.shape[0], fr.val_anomaly_fraction)
        train, val_norm, test_norm = fixed_train, normals[:n_val_norm], normals[n_val_norm:]
    else:
        n_pool = pool_size(normals.shape[0], fr.test_fraction)
        pool, test_norm = normals[:n_pool], normals[n_pool:]
        n_val_norm = share(n_pool, fr.val_fraction)
        train, val_norm = pool[n_val_norm:], pool[:n_val_norm]
    val_anom, test_anom = [], []
    for k in np.unique(lab[a]):
        of_type = perm[lab[perm] == k]
        m = share(of_type.shape[0], fr.val_anomaly_fraction)
        val_anom.append(of_type[:m])
        test_anom.append(of_type[m:])
    idx = SplitIndices(
        train=train.astype(np.int64),
        val=_mixed(rng, val_norm, *val_anom),
        test=_mixed(rng, test_norm, *test_anom),
    )
    return _check(normal_anomaly_protocol_name(fr), idx, a)


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
