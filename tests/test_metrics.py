"""Metrics against scikit-learn on random cases, hand-checked cases, and degenerate inputs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    auc,
    average_precision_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
)

from adgan import metrics
from adgan.errors import DataError


def _random_cases(n_cases: int = 60) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(123)
    cases = []
    while len(cases) < n_cases:
        n = int(rng.integers(2, 400))
        y = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(int)
        if y.min() == y.max():
            continue
        # Half with heavy ties (few distinct values), half continuous and informative.
        s = rng.integers(0, 6, n).astype(float) if len(cases) % 2 else rng.normal(size=n) + 1.5 * y
        cases.append((y, s))
    return cases


def test_equal_to_sklearn_on_random_cases() -> None:
    for case, (y, s) in enumerate(_random_cases()):
        assert metrics.auprc(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12), case
        assert metrics.auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12), case
        precision, recall, _ = precision_recall_curve(y, s)
        assert metrics.auprc_trapz(y, s) == pytest.approx(auc(recall, precision), abs=1e-12), case
        # The published KDD rule: flag scores >= the (1 - q) percentile.
        q = y.mean()
        y_pred = (s >= np.percentile(s, 100 * (1 - q))).astype(int)
        p, r, f, _ = precision_recall_fscore_support(y, y_pred, average="binary", zero_division=0)
        assert metrics.prf_at_top_q(y, s)[:3] == pytest.approx((p, r, f), abs=1e-12), case


def test_hand_checked_cases() -> None:
    # scikit-learn's documented example: AP 0.8333, AUROC 0.75; trapezoids: 0.5*1 + 0.5*(0.5+2/3)/2.
    y, s = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    assert metrics.auprc(y, s) == pytest.approx(5 / 6)
    assert metrics.auroc(y, s) == pytest.approx(0.75)
    assert metrics.auprc_trapz(y, s) == pytest.approx(0.5 + 0.5 * (0.5 + 2 / 3) / 2)
    # Ties: thresholds 3 -> (P 1/2, R 1/2), 2 -> (2/3, 1); AP = .5*.5 + .5*2/3; AUROC = 4.5 of 6 pairs.
    y, s = np.array([1, 0, 1, 0, 0]), np.array([3.0, 3.0, 2.0, 1.0, 1.0])
    assert metrics.auprc(y, s) == pytest.approx(0.25 + 1 / 3)
    assert metrics.auroc(y, s) == pytest.approx(0.75)
    assert metrics.auprc_trapz(y, s) == pytest.approx(0.375 + 0.5 * (0.5 + 2 / 3) / 2)
    perfect_y, perfect_s = np.array([0, 0, 0, 1]), np.array([0.1, 0.2, 0.3, 0.9])
    assert metrics.auprc(perfect_y, perfect_s) == 1.0 and metrics.auroc(perfect_y, perfect_s) == 1.0


def test_top_q_threshold_rule() -> None:
    s = np.arange(10, dtype=float)
    y = np.r_[np.zeros(8), np.ones(2)].astype(int)
    precision, recall, f1, threshold = metrics.prf_at_top_q(y, s)  # q = 0.2, the anomaly share
    assert threshold == pytest.approx(7.2)  # numpy's 80th percentile of 0..9
    assert (precision, recall, f1) == (1.0, 1.0, 1.0)
    precision, recall, f1, threshold = metrics.prf_at_top_q(y, s, q=0.4)  # flags 6..9
    assert threshold == pytest.approx(5.4) and precision == 0.5 and recall == 1.0
    assert f1 == pytest.approx(2 / 3)
    # All scores tied: everything is flagged (documented tie rule).
    precision, recall, _, _ = metrics.prf_at_top_q(y, np.ones(10))
    assert precision == pytest.approx(0.2) and recall == 1.0
    # No anomaly in the flagged set: F1 is 0, not a division error.
    assert metrics.prf_at_top_q(y, -s)[:3] == (0.0, 0.0, 0.0)


def test_evaluate_keys_and_values() -> None:
    y, s = _random_cases()[0]
    out = metrics.evaluate(y, s)
    assert set(out) == {"auprc", "auprc_trapz", "auroc", "precision", "recall", "f1", "threshold", "q"}
    assert out["q"] == pytest.approx(y.mean())
    assert out["auprc"] == pytest.approx(average_precision_score(y, s))
    assert metrics.evaluate(y, s, q=0.2)["q"] == 0.2
    assert all(isinstance(v, float) for v in out.values())


@pytest.mark.parametrize(
    ("y", "s", "message"),
    [
        ([0, 0, 0], [0.1, 0.2, 0.3], r"every label is normal \(0\).*need both classes"),
        ([1, 1], [0.1, 0.2], r"every label is anomalous \(1\)"),
        ([0, 1, 1], [0.1, np.nan, 0.3], r"1 of 3 scores are NaN or infinite \(first at index 1\)"),
        ([0, 1], [0.1, np.inf], "NaN or infinite"),
        ([0, 1, 1], [0.1, 0.2], r"equal length, got \(3,\) and \(2,\)"),
        ([0, 2, 1], [0.1, 0.2, 0.3], r"labels must be 0 \(normal\) or 1 \(anomaly\), got values \[0, 1, 2\]"),
        ([], [], "no samples"),
        ([0, 1], ["a", "b"], "scores must be real numbers"),
    ],
)
def test_degenerate_inputs(y: list[float], s: list[float], message: str) -> None:
    for fn in (metrics.auprc, metrics.auroc, metrics.auprc_trapz, metrics.prf_at_top_q, metrics.evaluate):
        with pytest.raises(DataError, match=message):
            fn(np.asarray(y), np.asarray(s))


def test_bad_q() -> None:
    with pytest.raises(DataError, match=r"q .* must be in \(0, 1\], got 0.0"):
        metrics.prf_at_top_q(np.array([0, 1]), np.array([0.1, 0.2]), q=0.0)
