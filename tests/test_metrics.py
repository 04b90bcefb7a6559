"""Metrics against scikit-learn on random cases, hand-checked cases, and degenerate inputs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    auc,
    average_precision_score,
    f1_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
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


def _brute_force_cutoffs(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    """Every candidate cutoff (each distinct score, and one above them all) tried in turn."""
    candidates = np.r_[np.unique(s), np.inf]
    flags = s[None, :] >= candidates[:, None]
    tp = (flags & (y == 1)).sum(1)
    f1 = 2 * tp / (flags.sum(1) + y.sum())  # 2 TP / (2 TP + FP + FN), sklearn's figure checked below
    fpr = (flags & (y == 0)).sum(1) / (y == 0).sum()
    best = {"best-f1": np.flatnonzero(f1 == f1.max())[0]}  # the lowest cutoff of the highest F1
    for rate in metrics.FALSE_ALARM_RATES:
        best[f"fpr-{rate:.0%}"] = np.flatnonzero(fpr <= rate)[0]  # the lowest cutoff within the rate
    return {name: flags[i] for name, i in best.items()}


def test_cutoffs_chosen_on_a_split_flag_what_brute_force_would() -> None:
    cases = _random_cases(40)
    cases.append((np.r_[np.zeros(50), np.ones(5)].astype(int), np.r_[np.full(50, 1.0), np.full(5, 1.0)]))
    cases.append((np.r_[np.zeros(200), np.ones(20)].astype(int), np.r_[np.full(20, 9.0), np.zeros(200)]))
    for y, s in cases:
        chosen = metrics.cutoffs(y, s)
        assert set(chosen) == set(_brute_force_cutoffs(y, s))
        for name, flagged in _brute_force_cutoffs(y, s).items():
            c = chosen[name]
            assert ((s >= c["cutoff"]) == flagged).all(), name
            # Midway in the gap: the same flags at the cutoff written with 6 significant digits or more.
            assert ((s >= float(f"{c['cutoff']:.9g}")) == flagged).all(), name
            assert c == metrics.at_cutoff(y, s, c["cutoff"])
            assert c["f1"] == pytest.approx(f1_score(y, flagged, zero_division=0.0))
            assert c["precision"] == pytest.approx(precision_score(y, flagged, zero_division=0.0))
            assert c["recall"] == pytest.approx(recall_score(y, flagged))
        for rate in metrics.FALSE_ALARM_RATES:
            assert chosen[f"fpr-{rate:.0%}"]["false_alarm_rate"] <= rate


def test_cutoff_order_is_the_order_cutoffs_makes_them_whatever_json_kept() -> None:
    y, s = np.r_[np.zeros(50), np.ones(10)].astype(int), np.arange(60.0)
    made = list(metrics.cutoffs(y, s))
    assert metrics.cutoff_order(sorted(made)) == made == ["best-f1", "fpr-5%", "fpr-1%"]
    order = metrics.cutoff_order(["x", "fpr-1%", "best-f1", "fpr-10%"])
    assert order == ["best-f1", "fpr-10%", "fpr-1%", "x"]


def test_a_cutoff_that_is_no_score_is_refused() -> None:
    y, s = np.r_[np.zeros(5), np.ones(5)].astype(int), np.arange(10.0)
    for bad in (None, float("nan"), float("inf"), "3", True):
        with pytest.raises(DataError, match=r"cutoff: expected a finite score value"):
            metrics.at_cutoff(y, s, bad)  # type: ignore[arg-type]


def test_at_cutoff_counts_ties_at_the_cutoff_as_flagged() -> None:
    y = np.array([0, 0, 1, 1])
    got = metrics.at_cutoff(y, np.array([0.1, 0.5, 0.5, 0.9]), 0.5)
    assert got == {"cutoff": 0.5, "precision": 2 / 3, "recall": 1.0, "f1": 0.8, "false_alarm_rate": 0.5,
                   "flagged": 0.75}
    nothing = metrics.at_cutoff(y, np.array([0.1, 0.5, 0.5, 0.9]), 2.0)
    assert nothing["precision"] == 0.0 and nothing["recall"] == 0.0 and nothing["flagged"] == 0.0
