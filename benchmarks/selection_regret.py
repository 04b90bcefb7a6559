"""Selection regret of the per-class recommendation (chosen on validation, paid on test), from sweep results.

    python benchmarks/selection_regret.py results/reference/fashion_mnist [more results dirs]

Per dataset: the mean over classes of the oracle's test AUPRC (the candidate, over every model and loss case
with seeds averaged, with the highest *test* AUPRC: what choosing on test would have got) minus the
recommended detector's test AUPRC (chosen on validation, ``adgan.sweep.recommend``); the recommendation's
mean test AUPRC beside the best single detector (one model for every class, chosen on mean validation
AUPRC), the best family-restricted choices (best GAN, best baseline per class) and kNN; and how many classes
the recommendation flags as no better than chance on validation. No training: it reads ``best.parquet``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adgan.sweep.recommend import candidates, recommend  # noqa: E402
from adgan.sweep.results import read_table  # noqa: E402


def _mean(values: list[float]) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(vals) if vals else math.nan


def regret_rows(results_dir: str) -> list[str]:
    """Markdown table rows, one per dataset of ``results_dir``."""
    best = read_table(results_dir, "best")
    recs = recommend(best)
    cands = candidates(best)
    out = []
    for ds in sorted({r.chosen.dataset for r in recs}):
        mine = [r for r in recs if r.chosen.dataset == ds]
        oracle = [max(c.test_auprc for c in cands
                      if c.dataset == ds and c.anomaly_class == r.chosen.anomaly_class) for r in mine]
        chosen = [r.chosen.test_auprc for r in mine]
        regret = _mean([o - c for o, c in zip(oracle, chosen, strict=True)])
        single = [r.single_model.test_auprc if r.single_model else math.nan for r in mine]
        name = mine[0].single_model.model if mine[0].single_model else "-"
        gans = [r.best_gan.test_auprc if r.best_gan else math.nan for r in mine]
        bases = [r.best_baseline.test_auprc if r.best_baseline else math.nan for r in mine]
        knn = [r.knn.test_auprc if r.knn else math.nan for r in mine]
        flagged = sum(r.beats_chance is False for r in mine)
        picks = ", ".join(f"{r.chosen.anomaly_class}:{r.chosen.model}" for r in mine)
        out.append(
            f"| {ds} | {len(mine)} | {_mean(chosen):.4f} | {_mean(oracle):.4f} | {regret:.4f} | "
            f"{_mean(single):.4f} ({name}) | {_mean(gans):.4f} | {_mean(bases):.4f} | {_mean(knn):.4f} | "
            f"{_mean([r.test_chance for r in mine]):.4f} | {flagged} | {picks} |"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="results directories of sweeps")
    args = parser.parse_args()
    print("| dataset | classes | recommended (test AUPRC) | oracle on test | regret | one model for all | "
          "best GAN per class | best baseline per class | kNN | chance | flagged at chance | picks |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for directory in args.results:
        for row in regret_rows(directory):
            print(row)


if __name__ == "__main__":
    main()
