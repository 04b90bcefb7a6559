"""Anomaly detection metrics; labels 1 = anomaly, scores higher = more anomalous.

- ``auprc``: average precision, ``sum_k (R_k - R_{k-1}) P_k`` over distinct score thresholds (equal to
  ``sklearn.metrics.average_precision_score``). The headline metric.
- ``auprc_trapz``: trapezoid area under the precision-recall curve, the curve starting at (recall 0,
  precision 1), as the published EGBAD code computed it (``auc(recall, precision)`` on
  ``precision_recall_curve``). Optimistic compared with AP; kept for comparison with published numbers.
- ``auroc``: area under the ROC curve, ties counted half (equal to ``roc_auc_score``).
- ``prf_at_top_q``: precision/recall/F1 when the top ``q`` fraction of scores is flagged: threshold =
  ``numpy.percentile(scores, 100 * (1 - q))`` (linear interpolation) and flagged = ``score >= threshold``.
  With ``q = 0.2`` this is the published KDD99 rule ("80th percentile of the test scores"). Tied scores at
  the threshold are all flagged, so slightly more than ``q`` may be flagged when scores tie.
- ``cutoffs``: score cutoffs chosen on a labelled split (validation) for flagging new data, each with the
  split's precision/recall/F1 and false-alarm rate: ``best-f1`` (the cutoff of highest F1) and ``fpr-5%``,
  ``fpr-1%`` (the lowest cutoff flagging at most that share of the split's normals). ``at_cutoff`` measures
  a given cutoff on another split (test).

All are computed with numpy in O(N log N), no per-sample Python loop. Degenerate inputs (one class only,
NaN/inf scores, mismatched lengths, labels other than 0/1) raise ``DataError`` saying what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from adgan.errors import DataError


def _check(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, s = np.asarray(y), np.asarray(s)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise DataError(f"metrics: labels and scores must be 1-d of equal length, "
                        f"got {y.shape} and {s.shape}")
    if y.size == 0:
        raise DataError("metrics: no samples")
    if not np.issubdtype(s.dtype, np.number) or np.issubdtype(s.dtype, np.complexfloating):
        raise DataError(f"metrics: scores must be real numbers, got dtype {s.dtype}")
    bad = ~np.isfinite(s)
    if bad.any():
        raise DataError(f"metrics: {int(bad.sum())} of {s.size} scores are NaN or infinite "
                        f"(first at index {int(np.flatnonzero(bad)[0])}); the detector may have diverged")
    values = np.unique(y)
    if not np.isin(values, (0, 1)).all():
        raise DataError(f"metrics: labels must be 0 (normal) or 1 (anomaly), "
                        f"got values {values[:10].tolist()}")
    if values.size < 2:
        which = "normal (0)" if values[0] == 0 else "anomalous (1)"
        raise DataError(f"metrics: every label is {which}; AUPRC/AUROC/recall need both classes")
    return y.astype(np.int64), s.astype(np.float64)


def _distinct(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct scores, highest first; cumulative true positives, false positives when every sample
    scoring at or above each is flagged)."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), y.size - 1]  # last index of each run of tied scores
    tps = np.cumsum(y_sorted)[last].astype(np.float64)
    fps = (last + 1) - tps
    return s_sorted[last], tps, fps


def _curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (true positives, false positives) at each distinct threshold, highest score first."""
    _, tps, fps = _distinct(y, s)
    return tps, fps


def auprc(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision of scores ``s`` (N,) for labels ``y`` (N,) in {0, 1}."""
    y, s = _check(y, s)
    tps, fps = _curve(y, s)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def precision_recall_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall), recall decreasing, ending at (1, 0) like scikit-learn's curve."""
    y, s = _check(y, s)
    tps, fps = _curve(y, s)
    precision = np.r_[(tps / (tps + fps))[::-1], 1.0]
    recall = np.r_[(tps / tps[-1])[::-1], 0.0]
    return precision, recall


def auprc_trapz(y: np.ndarray, s: np.ndarray) -> float:
    """Trapezoid area under the precision-recall curve (the published code's AUPRC)."""
    precision, recall = precision_recall_curve(y, s)
    return float(-np.trapezoid(precision, recall))  # recall is decreasing


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids between distinct thresholds, so ties count half)."""
    y, s = _check(y, s)
    tps, fps = _curve(y, s)
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return float(np.trapezoid(tpr, fpr))


def _share(y: np.ndarray) -> float:
    return float(np.mean(y))


def prf_at_top_q(y: np.ndarray, s: np.ndarray, q: float | None = None) -> tuple[float, float, float, float]:
    """Precision, recall and F1 when the top ``q`` fraction of scores is flagged as anomalous.

    Args:
        y: Labels (N,), 1 = anomaly.
        s: Scores (N,), higher = more anomalous.
        q: Fraction to flag, 0 < q <= 1; default the anomaly share of ``y``.

    Returns:
        ``(precision, recall, f1, threshold)``; flagged = ``s >= threshold``,
        ``threshold = numpy.percentile(s, 100 * (1 - q))``.
    """
    y, s = _check(y, s)
    q = _share(y) if q is None else float(q)
    if not 0.0 < q <= 1.0:
        raise DataError(f"metrics: q (the fraction of scores flagged) must be in (0, 1], got {q}")
    threshold = float(np.percentile(s, 100.0 * (1.0 - q)))
    flagged = s >= threshold
    tp = float(np.sum(flagged & (y == 1)))
    precision = tp / float(flagged.sum())  # >= 1 flagged: the percentile never exceeds max(s)
    recall = tp / float(y.sum())
    f1 = 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)
    return precision, recall, f1, threshold


def evaluate(y: np.ndarray, s: np.ndarray, q: float | None = None) -> dict[str, float]:
    """All metrics as a dict: ``auprc``, ``auprc_trapz``, ``auroc``, ``precision``, ``recall``, ``f1``,
    ``threshold`` and ``q`` (the flagged fraction used, default the anomaly share of ``y``)."""
    y, s = _check(y, s)
    q = _share(y) if q is None else float(q)
    precision, recall, f1, threshold = prf_at_top_q(y, s, q)
    return {
        "auprc": auprc(y, s), "auprc_trapz": auprc_trapz(y, s), "auroc": auroc(y, s),
        "precision": precision, "recall": recall, "f1": f1, "threshold": threshold, "q": q,
    }


FALSE_ALARM_RATES = (0.05, 0.01)  # the ``fpr-<rate>`` cutoffs of ``cutoffs``


def at_cutoff(y: np.ndarray, s: np.ndarray, cutoff: float) -> dict[str, float]:
    """Precision, recall, F1 and false-alarm rate (share of normals flagged) of flagging ``s >= cutoff``.

    Args:
        y: Labels (N,), 1 = anomaly, both classes present.
        s: Scores (N,), higher = more anomalous.
        cutoff: The score at or above which a sample is flagged.

    Returns:
        ``{"cutoff", "precision", "recall", "f1", "false_alarm_rate", "flagged"}``; precision is 0 when
        nothing is flagged; ``flagged`` is the flagged share of the split.
    """
    y, s = _check(y, s)
    if isinstance(cutoff, bool) or not isinstance(cutoff, int | float | np.number) or not np.isfinite(cutoff):
        raise DataError(f"cutoff: expected a finite score value, got {cutoff!r}")
    flagged = s >= float(cutoff)
    tp, n_flagged = float(np.sum(flagged & (y == 1))), float(flagged.sum())
    return _figures(float(cutoff), tp, n_flagged - tp, float(y.sum()), float(y.size - y.sum()))


def _figures(cutoff: float, tp: float, fp: float, positives: float, negatives: float) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / positives
    return {"cutoff": cutoff, "precision": precision, "recall": recall,
            "f1": 2 * tp / (2 * tp + fp + (positives - tp)), "false_alarm_rate": fp / negatives,
            "flagged": (tp + fp) / (positives + negatives)}


def cutoff_order(names: Iterable[str]) -> list[str]:
    """Cutoff names in the order ``cutoffs`` makes them (``best-f1``, then ``fpr-5%``, ``fpr-1%``: most
    flagged first), whatever order a JSON file kept them in; unknown names last, by name."""

    def key(name: str) -> tuple[int, float, str]:
        if name == "best-f1":
            return (0, 0.0, name)
        if name.startswith("fpr-") and name.endswith("%"):
            try:
                return (1, -float(name[4:-1]), name)
            except ValueError:
                pass
        return (2, 0.0, name)

    return sorted(names, key=key)


def cutoffs(y: np.ndarray, s: np.ndarray) -> dict[str, dict[str, float]]:
    """Score cutoffs chosen on the labelled split ``y`` (N,), ``s`` (N,) (validation) for flagging new data
    (flagged = ``score >= cutoff``), each with that split's figures (``at_cutoff``'s keys):

    - ``best-f1``: the cutoff of the highest F1 on the split (the lowest such, flagging most, on ties);
    - ``fpr-5%``, ``fpr-1%`` (``FALSE_ALARM_RATES``): the lowest cutoff that flags at most that share of the
      split's normals (above every score when even the top-scoring tie holds too many normals).

    Each cutoff lies midway between the lowest score it flags and the highest it does not (not on a sample,
    and the same flags when written with 9 significant digits unless two scores are closer than that).
    """
    y, s = _check(y, s)
    values, tps, fps = _distinct(y, s)
    positives, negatives = float(tps[-1]), float(fps[-1])

    def cut(i: int) -> dict[str, float]:
        """Flagging the first ``i + 1`` distinct scores (``i`` = -1: none)."""
        if i < 0:  # above every score, by a margin that survives printing with 9 significant digits
            top = float(values[0])
            return _figures(top + 1e-6 * max(abs(top), 1.0), 0.0, 0.0, positives, negatives)
        c = float(values[i])
        if i + 1 < values.size:
            mid = (c + float(values[i + 1])) / 2.0
            c = mid if values[i + 1] < mid <= c else c
        return _figures(c, float(tps[i]), float(fps[i]), positives, negatives)

    f1 = 2 * tps / (2 * tps + fps + (positives - tps))
    out = {"best-f1": cut(int(np.flatnonzero(f1 == f1.max())[-1]))}  # (in cutoff_order's order)
    for rate in FALSE_ALARM_RATES:
        within = np.flatnonzero(fps <= rate * negatives)
        out[f"fpr-{rate:.0%}"] = cut(int(within[-1]) if within.size else -1)
    return out
