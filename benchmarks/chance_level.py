"""How often a detector without skill passes the "better than chance" level, and what the level costs.

For each (n samples, k anomalies, K trials compared), simulates ``draws`` sweeps of K random rankings
directly (brute force, independent of ``adgan.sweep.recommend``'s own sampler: a permutation of the labels
per ranking) and reports the share whose best AUPRC exceeds ``chance_threshold(n, k, K)``: it should be
about 5%. Also the level's computation time from a cold cache (the cost ``adgan best`` pays once per split
size).

    .venv/bin/python benchmarks/chance_level.py [--draws 20000] [n,k,K ...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from adgan.sweep import recommend

CASES = ["50,5,9", "300,3,100", "500,5,41", "500,50,50", "460,100,300", "2000,200,50", "5000,10,10",
         "1000,20,5000"]


def best_of_random_rankings(rng: np.random.Generator, n: int, k: int, K: int, draws: int) -> np.ndarray:
    """The best AUPRC of K random rankings, ``draws`` times: (draws,). Labels permuted per ranking."""
    labels = np.zeros(n, np.int8)
    labels[:k] = 1
    ranks = np.arange(1, n + 1, dtype=np.float64)
    best = np.full(draws, -np.inf)
    rows = max(1, 2_000_000 // n)
    for _ in range(K):
        for start in range(0, draws, rows):
            y = rng.permuted(np.tile(labels, (min(rows, draws - start), 1)), axis=1)
            ap = (np.cumsum(y, axis=1, dtype=np.float64) / ranks * y).sum(1) / k
            best[start:start + len(y)] = np.maximum(best[start:start + len(y)], ap)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", default=CASES, help="n,k,K triples")
    parser.add_argument("--draws", type=int, default=20000, help="brute-force sweeps per case")
    args = parser.parse_args()
    print("| n | k | K | level | level computed in (cold) | brute-force share above the level |")
    print("| --- | --- | --- | --- | --- | --- |")
    for case in args.cases:
        n, k, K = (int(v) for v in case.split(","))
        recommend._null_best_auprc.cache_clear()
        recommend._null_auprcs.cache_clear()
        t0 = time.perf_counter()
        level = recommend.chance_threshold(n, k, K)
        seconds = time.perf_counter() - t0
        draws = args.draws if K * n * args.draws <= 4e10 else max(1000, int(4e10 // (K * n)))
        best = best_of_random_rankings(np.random.default_rng([n, k, K, 5]), n, k, K, draws)
        share = float(np.mean(best > level))
        se = (share * (1 - share) / draws) ** 0.5
        print(f"| {n} | {k} | {K} | {level:.4f} | {seconds:.2f} s | {share:.3f} ± {se:.3f} ({draws} draws) |",
              flush=True)


if __name__ == "__main__":
    main()
