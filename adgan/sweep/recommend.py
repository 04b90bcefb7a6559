"""One answer per class, chosen on validation: the rules ``adgan best``, ``adgan report`` and ``adgan export``
share (plain Python over result rows; no torch, no Ray).

Within a group (model, dataset, class, loss case, seed) the chosen trial is the one with the highest
validation AUPRC (:func:`select_best`). Per class, the **recommended detector** is the (model, loss case)
with the highest validation AUPRC among every model the sweep ran, GANs and baselines alike; with several
seeds the mean over seeds decides and the spread is reported (:func:`recommend`). Test AUPRC is read off
the chosen rows as the estimate for them; it never takes part in a choice.

Tie-breaks (documented in docs/sweeps.md, deterministic across identical runs):
- trials of a group: higher validation AUPRC, then the earlier best epoch (fewer epochs for the same
  result), then the searched hyperparameters in canonical JSON order, then the trial id;
- detectors of a class: higher mean validation AUPRC, then higher mean validation AUROC, then a baseline
  before a GAN (cheaper to fit and to run; not the measured fit seconds, which differ between identical
  runs), then model name and loss case; the single model of a dataset is chosen by the same keys;
- seeds of the recommended detector (whose checkpoint is exported): higher validation AUPRC, then the
  lower seed.

Chance: AUPRC's chance level is the anomaly share of the split, but a random ranking of a small split
scatters around it, and the answer is the best of every trial compared, so a detector without any skill
still wins a high draw now and then. A validation AUPRC is **no better than chance** when it is below the
95th percentile of the best AUPRC of as many random rankings as trials were compared, each of a split of
the same size and anomaly count (:func:`chance_threshold`: a seeded simulation of random rankings, with a
generalised Pareto tail only beyond its reach).
"""

from __future__ import annotations

import functools
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

CHANCE_QUANTILE = 0.95
MIN_DRAWS = 1 << 10  # random rankings simulated at least
MAX_DRAWS = 1 << 22  # and at most (few anomalies: a ranking costs little)
TAIL_DRAWS = 50  # simulated draws wanted beyond the quantile read off (else the tail is extrapolated)
NORMAL_FROM = 1000  # anomalies from which one ranking's AUPRC is taken as normal (a mean of many terms)
TAIL_FIT = 1000  # the largest draws a Pareto tail is fit to, when extrapolating
SIMULATED = 10_000_000  # ranked samples a split size's simulation may draw (about half a second)


def finite(v: Any) -> bool:
    return v is not None and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _params_text(params: Any) -> str:
    if isinstance(params, str):
        params = json.loads(params) if params else {}
    return json.dumps(params or {}, sort_keys=True, default=str)


def trial_rank(t: Mapping[str, Any]) -> tuple[Any, ...]:
    """Sort key of a group's trials, best first (see the module docstring)."""
    epoch = t.get("best_epoch")
    epoch_key = int(epoch) if finite(epoch) else 1 << 30
    return (-float(t["best_val_auprc"]), epoch_key, _params_text(t.get("params")), str(t.get("trial_id")))


def scored(trial: Mapping[str, Any]) -> bool:
    """Whether a trial competes for its group's choice: it reached a validation figure and did not error
    (the trials counted in ``best.parquet``'s ``n_scored``, the K of the chance level)."""
    return finite(trial.get("best_val_auprc")) and trial.get("status") != "errored"


def select_best(trials: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The trial with the highest validation AUPRC among the :func:`scored` ones with a checkpoint, ties
    broken by :func:`trial_rank`. Only validation figures are read: test metrics, if a row carries any,
    play no part."""
    usable = [t for t in trials if t.get("checkpoint") and scored(t)]
    return min(usable, key=trial_rank) if usable else None


def _sparse(n: int, k: int) -> bool:
    """Whether a ranking's anomaly ranks are drawn with replacement and repeats redrawn (few anomalies:
    about ``k log k`` a ranking) rather than as the ``k`` smallest of ``n`` random keys (about ``n``)."""
    return 4 * k <= n


def _random_auprcs(rng: np.random.Generator, n: int, k: int, draws: int) -> np.ndarray:
    """The AUPRC (average precision) of ``draws`` random rankings of ``n`` samples holding ``k`` anomalies:
    (draws,).

    Only where the anomalies land matters: a uniformly random ``k``-subset of the ``n`` ranks. With few
    anomalies (:func:`_sparse`) it is drawn as ``k`` ranks with replacement, every repeated rank drawn
    again until none repeats (the procedure treats every rank alike, so the subset it ends with is
    uniform; repeats are rare, so few rounds); otherwise as the ranks of the ``k`` smallest of ``n``
    random keys (redrawing would take many rounds once anomalies fill much of the split).
    """
    hits = np.arange(1, k + 1, dtype=np.float64)
    out = np.empty(draws)
    sparse = _sparse(n, k)
    rows = max(1, 4_000_000 // (k if sparse else n))  # rankings at a time: bounded memory
    for start in range(0, draws, rows):
        m = min(rows, draws - start)
        if sparse:
            ranks = np.sort(rng.integers(0, n, size=(m, k)), axis=1)
            while True:
                repeated = np.zeros(ranks.shape, dtype=bool)
                repeated[:, 1:] = ranks[:, 1:] == ranks[:, :-1]
                count = int(repeated.sum())
                if not count:
                    break
                ranks[repeated] = rng.integers(0, n, size=count)
                ranks.sort(axis=1)
        else:
            ranks = np.sort(np.argpartition(rng.random((m, n)), k - 1, axis=1)[:, :k], axis=1)
        out[start:start + m] = (hits / (ranks + 1.0)).mean(axis=1)
    return out


@functools.lru_cache(maxsize=64)
def _null_auprcs(n: int, k: int) -> np.ndarray:
    """Seeded random-ranking AUPRCs of a split of ``n`` samples, ``k`` anomalies, sorted: (draws,), as many
    draws (a power of two) as ``SIMULATED`` ranked samples allow, within [``MIN_DRAWS``, ``MAX_DRAWS``].
    One simulation per split size, whatever K is asked: the level read off it never falls as K grows."""
    cost = k if _sparse(n, k) else n
    draws = min(MAX_DRAWS, max(MIN_DRAWS, 1 << int(math.log2(max(1.0, SIMULATED / cost)))))
    return np.sort(_random_auprcs(np.random.default_rng([n, k, 20261202]), n, k, draws))


def _pareto_tail_quantile(values: np.ndarray, beyond: float) -> float:
    """The value exceeded by a share ``beyond`` of the draws, extrapolated past the largest of the sorted
    ``values`` (``beyond * len(values)`` below ``TAIL_DRAWS``): a generalised Pareto law fit to the
    ``TAIL_FIT`` largest draws' excesses by probability-weighted moments (Hosking and Wallis, 1987); never
    below the furthest quantile the draws themselves give (a lumpy law, few anomalies, fits poorly)."""
    m = min(TAIL_FIT, len(values) // 20)
    threshold = float(values[-m - 1])
    floor = float(values[-TAIL_DRAWS])
    excess = values[-m:] - threshold  # ascending
    a0 = float(excess.mean())
    a1 = float((excess * np.arange(m - 1, -1, -1) / (m - 1)).mean())
    if a0 <= 0 or a0 - 2 * a1 <= 0:  # no spread in the tail: no extrapolation
        return max(floor, float(values[-1]))
    shape = a0 / (a0 - 2 * a1) - 2  # Hosking's k (the tail index is -k)
    scale = 2 * a0 * a1 / (a0 - 2 * a1)
    p = beyond * len(values) / m  # the share beyond, among the tail's draws
    excess_q = scale * -math.log(p) if abs(shape) < 1e-9 else scale / shape * (1 - p**shape)
    return min(1.0, max(floor, threshold + excess_q))


@functools.lru_cache(maxsize=256)
def _null_best_auprc(n: int, k: int, compared: int) -> float:
    """The 95th percentile of the best AUPRC of ``compared`` independent random rankings: the quantile
    ``0.95 ** (1 / compared)`` of one ranking's AUPRC (the best of K is below x when all K are), read off
    the split size's seeded simulation; where it leaves fewer than ``TAIL_DRAWS`` draws beyond that
    quantile (many trials compared), a generalised Pareto tail extrapolates it. From ``NORMAL_FROM``
    anomalies on, the normal quantile of the simulated mean and spread (AUPRC is then a mean of many
    terms; a simulation of such splits affords few draws)."""
    beyond = -math.expm1(math.log(CHANCE_QUANTILE) / compared)  # 1 - 0.95 ** (1/K), exact for huge K
    values = _null_auprcs(n, k)
    if k >= NORMAL_FROM:  # large splits: few draws are affordable, and the law is close to normal
        z = statistics.NormalDist().inv_cdf(1.0 - beyond)
        return min(1.0, float(values.mean() + values.std() * z))
    if beyond * len(values) >= TAIL_DRAWS:
        return float(np.quantile(values, 1.0 - beyond))
    return _pareto_tail_quantile(values, beyond)


def chance_threshold(n: Any, n_anomalies: Any, compared: Any = 1) -> float | None:
    """The validation AUPRC a detector must exceed to be better than chance on a split of ``n`` samples
    holding ``n_anomalies`` anomalies, when it is the best of ``compared`` trials (None when the sizes are
    unknown)."""
    if not (finite(n) and finite(n_anomalies)) or not 0 < int(n_anomalies) < int(n):
        return None
    return _null_best_auprc(int(n), int(n_anomalies), max(1, int(compared) if finite(compared) else 1))


def beats_chance(val_auprc: Any, n: Any, n_anomalies: Any, compared: Any = 1) -> bool | None:
    """Whether ``val_auprc`` is above :func:`chance_threshold` (None: unknown sizes or no AUPRC)."""
    threshold = chance_threshold(n, n_anomalies, compared)
    if threshold is None or not finite(val_auprc):
        return None
    return float(val_auprc) > threshold


def test_at_cutoffs(row: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """A ``best.parquet`` row's test figures at each cutoff chosen on validation (its JSON column, or the
    object export writes): ``{}`` in rows written before the column (null or NaN)."""
    raw = row.get("test_at_cutoffs")
    figures = json.loads(raw) if isinstance(raw, str) else raw
    return figures if isinstance(figures, dict) else {}


def fit_rows(row: Mapping[str, Any]) -> int | None:
    """The training rows a ``best.parquet`` row's detector was fit on: its ``n_train`` training normals, or
    the seeded subsample a ``fit_samples`` setting keeps (the baselines': kNN keeps 10,000 by default).
    None where that is not known: ``n_train`` not recorded, or a baseline whose row's config does not say
    its ``fit_samples`` and is not the resolved one (rows of sweeps before trials recorded their resolved
    config hold only what the spec set, and the default is the model's)."""
    if not finite(row.get("n_train")):
        return None
    config = row.get("config") or {}
    config = json.loads(config) if isinstance(config, str) else config
    kept = config.get("fit_samples") if isinstance(config, Mapping) else None
    n = int(row["n_train"])
    # A config resolved by the trial holds every run key (``bf16`` among them, which a sweep's own trial
    # config holds only where its spec sets it): a baseline without fit_samples there fits every row.
    if kept is None and row.get("family") == "baseline" and "bf16" not in config:
        return None
    return min(n, int(kept)) if finite(kept) and int(kept) > 0 else n


def trials_compared(rows: Iterable[Mapping[str, Any]]) -> int:
    """How many trials competed for the answer of ``best.parquet`` rows (of one class, or one group): their
    trials that reached a validation figure (``n_scored``; in rows written before it was recorded, the
    trials not errored of the groups with a checkpoint); at least 1. A trial's epochs count once (the
    chosen epoch is one of a trial's strongly related rankings), and with several seeds the candidates are
    means over seeds, which scatter less: the count errs on the strict side there."""
    total = 0
    for r in rows:
        if finite(r.get("n_scored")):
            total += int(r["n_scored"])
        elif r.get("checkpoint") and finite(r.get("n_trials")):
            total += int(r["n_trials"]) - (int(r["n_errored"]) if finite(r.get("n_errored")) else 0)
    return max(1, total)


@dataclass(frozen=True)
class Candidate:
    """One (model, loss case) of one class, over its seeds (each seed: the group's chosen trial)."""

    dataset: str
    anomaly_class: int
    class_name: str
    model: str
    family: str
    loss_case: str
    seeds: int
    val_auprc: float
    val_auprc_std: float
    val_auroc: float
    test_auprc: float
    test_auprc_std: float
    test_auroc: float
    fit_seconds: float
    representative: Mapping[str, Any]  # the best seed's best.parquet row (its checkpoint is exported)

    def rank(self) -> tuple[Any, ...]:
        """Sort key, best first (see the module docstring)."""
        auroc = self.val_auroc if finite(self.val_auroc) else -math.inf
        return (-self.val_auprc, -auroc, self.representative.get("family") != "baseline", self.model,
                self.loss_case)


def _mean(values: Sequence[Any]) -> float:
    vals = [float(v) for v in values if finite(v)]
    return statistics.fmean(vals) if vals else math.nan


def _std(values: Sequence[Any]) -> float:
    vals = [float(v) for v in values if finite(v)]
    return statistics.stdev(vals) if len(vals) > 1 else math.nan


def candidates(best_rows: Iterable[Mapping[str, Any]]) -> list[Candidate]:
    """Every (dataset, class, model, loss case) with at least one chosen trial, aggregated over seeds."""
    by_key: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for r in best_rows:
        if r.get("checkpoint") and finite(r.get("val_auprc")):
            key = (r["dataset"], int(r["anomaly_class"]), r["model"], r["loss_case"])
            by_key.setdefault(key, []).append(r)
    out = []
    for (dataset, cls, model, case), rows in sorted(by_key.items()):
        rep = min(rows, key=lambda r: (-float(r["val_auprc"]), int(r.get("seed") or 0)))
        out.append(Candidate(
            dataset=dataset, anomaly_class=cls, class_name=str(rep.get("class_name") or ""), model=model,
            family=str(rep.get("family") or ""), loss_case=case, seeds=len(rows),
            val_auprc=_mean([r["val_auprc"] for r in rows]),
            val_auprc_std=_std([r["val_auprc"] for r in rows]),
            val_auroc=_mean([r.get("val_auroc") for r in rows]),
            test_auprc=_mean([r.get("test_auprc") for r in rows]),
            test_auprc_std=_std([r.get("test_auprc") for r in rows]),
            test_auroc=_mean([r.get("test_auroc") for r in rows]),
            fit_seconds=_mean([r.get("fit_seconds") for r in rows]), representative=rep,
        ))
    return out


@dataclass(frozen=True)
class Recommendation:
    """The answer for one class: the recommended detector and what it is compared with.

    ``val_chance`` / ``test_chance``: the anomaly shares of the splits (AUPRC's chance level);
    ``val_chance_threshold``: the validation AUPRC to beat (95th percentile of the best of
    ``trials_compared`` random rankings); ``beats_chance``: None where the split sizes are not recorded.
    ``single_model``: the one detector (its loss case chosen per class on validation) with the best mean
    validation AUPRC over the classes, i.e. what one would ship for every class without per-class choice.
    """

    chosen: Candidate
    val_chance: float
    val_chance_threshold: float | None
    beats_chance: bool | None
    test_chance: float
    best_gan: Candidate | None
    best_baseline: Candidate | None
    knn: Candidate | None
    single_model: Candidate | None
    trials_compared: int = 1

    def row(self) -> dict[str, Any]:
        """A flat dict (for tables and JSON)."""
        c = self.chosen
        rep = c.representative
        out = {k: v for k, v in asdict(c).items() if k != "representative"}
        out.update({
            "group_id": rep.get("group_id"), "trial_id": rep.get("trial_id"), "seed": rep.get("seed"),
            "params": rep.get("params"), "checkpoint": rep.get("checkpoint"), "n_train": rep.get("n_train"),
            "val_chance": self.val_chance, "val_chance_threshold": self.val_chance_threshold,
            "beats_chance": self.beats_chance, "test_chance": self.test_chance,
            "trials_compared": self.trials_compared,
        })
        for name in ("best_gan", "best_baseline", "knn", "single_model"):
            other: Candidate | None = getattr(self, name)
            out[f"{name}_model"] = None if other is None else other.model
            out[f"{name}_loss_case"] = None if other is None else other.loss_case
            out[f"{name}_test_auprc"] = None if other is None else other.test_auprc
        return out


def _share(row: Mapping[str, Any], n: str, k: str) -> float:
    return float(row[k]) / float(row[n]) if finite(row.get(n)) and finite(row.get(k)) and row[n] else math.nan


def recommend(best_rows: Iterable[Mapping[str, Any]]) -> list[Recommendation]:
    """Per (dataset, class) with a chosen trial, the recommendation (module docstring), in class order."""
    best_rows = list(best_rows)
    cands = candidates(best_rows)
    compared: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for r in best_rows:
        compared.setdefault((r["dataset"], int(r["anomaly_class"])), []).append(r)
    classes: dict[tuple[str, int], list[Candidate]] = {}
    for c in cands:
        classes.setdefault((c.dataset, c.anomaly_class), []).append(c)
    single = _single_models(cands)
    out = []
    for (dataset, index), mine in sorted(classes.items()):
        ranked = sorted(mine, key=Candidate.rank)
        n_compared = trials_compared(compared[(dataset, index)])
        chosen = ranked[0]
        rep = chosen.representative
        test_share = _share(rep, "n_test", "n_test_anomalies")
        if not finite(test_share):
            test_share = float(rep["test_q"]) if finite(rep.get("test_q")) else math.nan  # version-1 rows
        model = single.get(dataset)
        out.append(Recommendation(
            chosen=chosen,
            val_chance=_share(rep, "n_val", "n_val_anomalies"),
            val_chance_threshold=chance_threshold(rep.get("n_val"), rep.get("n_val_anomalies"), n_compared),
            beats_chance=beats_chance(chosen.val_auprc, rep.get("n_val"), rep.get("n_val_anomalies"),
                                      n_compared),
            trials_compared=n_compared,
            test_chance=test_share,
            best_gan=next((c for c in ranked if c.family == "gan"), None),
            best_baseline=next((c for c in ranked if c.family == "baseline"), None),
            knn=next((c for c in ranked if c.model == "knn"), None),
            single_model=next((c for c in ranked if c.model == model), None) if model else None,
        ))
    return out


def groups_without_result(planned: Sequence[str], best_rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The ``planned`` group ids (``spec.json``'s ``groups``) with no row in the best table."""
    done = {r["group_id"] for r in best_rows}
    return [g for g in planned if g not in done]


def unfinished_text(planned: Sequence[str], missing: Sequence[str]) -> str | None:
    """A line for a sweep some of whose ``planned`` groups are ``missing`` from the best table, else None
    (``adgan best``, ``export`` and the report say it alike): a class whose groups have not all ended is
    answered from those that have."""
    if not missing:
        return None
    return (f"note: {len(missing)} of {len(planned)} groups of this sweep have no result yet (still "
            f"running, or interrupted: continue with adgan sweep SPEC --resume), e.g. {missing[0]}; classes "
            "are answered from the groups that ended")


def unanswered(
    recs: Sequence[Recommendation], best_rows: Iterable[Mapping[str, Any]]
) -> list[tuple[str, int, str]]:
    """``(dataset, class, class name)`` of the classes with rows in ``best`` but no recommendation: no
    trial of theirs ended with a checkpoint. ``adgan best`` and the report say "no answer" for them."""
    answered = {(r.chosen.dataset, r.chosen.anomaly_class) for r in recs}
    return sorted({(str(r["dataset"]), int(r["anomaly_class"]), r.get("class_name") or "") for r in best_rows
                   if (str(r["dataset"]), int(r["anomaly_class"])) not in answered})


def _single_models(cands: Sequence[Candidate]) -> dict[str, str]:
    """Per dataset, the model whose per-class choices (loss case on validation) have the best mean
    validation AUPRC over the dataset's classes; only models that finished every class compete."""
    out: dict[str, str] = {}
    for dataset in sorted({c.dataset for c in cands}):
        mine = [c for c in cands if c.dataset == dataset]
        classes = {c.anomaly_class for c in mine}
        scores = []
        for model in sorted({c.model for c in mine}):
            per_class = {}
            for c in sorted((c for c in mine if c.model == model), key=Candidate.rank):
                per_class.setdefault(c.anomaly_class, c)
            if set(per_class) == classes:
                chosen = list(per_class.values())
                auroc = _mean([c.val_auroc for c in chosen])
                scores.append((-_mean([c.val_auprc for c in chosen]), -auroc if finite(auroc) else math.inf,
                               chosen[0].representative.get("family") != "baseline", model))
        if scores:
            out[dataset] = min(scores)[-1]
    return out
