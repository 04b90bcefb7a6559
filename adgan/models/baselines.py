"""Classical baselines behind the GAN ``Detector`` contract: ``knn``, ``iforest``, ``pca``, ``ocsvm``.

Images are flattened to (N, C*H*W); tabular data is used as is. Each detector fits in one shot
(``is_iterative = False``): ``fit_epochs`` yields a single ``{"fit_seconds": ...}`` dict. The wall-clock
cost of the last fit and the last ``score`` call are kept in ``last_fit_seconds`` / ``last_score_seconds``.

Two properties shape the scorers:
- Checkpoints hold arrays only (``Detector.load`` uses ``torch.load(weights_only=True)``), so the fitted
  scikit-learn models are exported to arrays (trees, support vectors) and scored by our own code, before
  and after a save alike; a reloaded detector gives bit-identical scores.
- Scores do not depend on batch composition, bit for bit. BLAS matrix products round differently for
  different batch sizes, so every final value is computed with per-row reductions (``torch.cdist`` without
  the matmul shortcut, numpy sums over a contiguous last axis); a matrix product is only used by ``knn``
  to shortlist candidate neighbours, whose exact distances are then recomputed.

Everything runs on the CPU except ``knn``'s candidate search, which uses the ``device`` given to
``fit_epochs`` (or ``load``). ``bf16`` is accepted and ignored.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from adgan.errors import DataError
from adgan.models.base import C, Detector, DetectorConfig, Range, ranged, register_detector

if TYPE_CHECKING:
    from sklearn.ensemble import IsolationForest

_CHUNK_ELEMENTS = 1 << 22  # temporary arrays of scorers hold at most ~4M float64 (32 MB)


def _subsample(n: int, fit_samples: int, seed: int) -> np.ndarray:
    """Sorted row indices of a seeded subsample of ``min(n, fit_samples)`` rows (all rows if 0)."""
    if fit_samples <= 0 or n <= fit_samples:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=fit_samples, replace=False))


def _rows_per_chunk(row_elements: int) -> int:
    return max(1, _CHUNK_ELEMENTS // max(1, row_elements))


class _Baseline(Detector[C]):
    """Shared plumbing: input checks, flattening, timing. Subclasses implement ``_fit`` and ``_score``."""

    family = "baseline"
    loss_cases = ("default",)
    input_kinds = ("image", "tabular")
    is_iterative = False
    uses_accelerator = False  # scikit-learn / numpy / CPU torch

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.last_fit_seconds: float | None = None
        self.last_score_seconds: float | None = None

    def _flat(self, x: np.ndarray, what: str) -> np.ndarray:
        """Checked input as float32 (N, D); non-finite values are refused."""
        x = self.check_input(x, what)
        return x.reshape(x.shape[0], int(np.prod(x.shape[1:])))

    def _train(
        self, x: np.ndarray, seed: int, resume: Mapping[str, Any] | None
    ) -> Iterator[dict[str, float]]:
        """Fit on normal samples ``x`` ((N, C, H, W) or (N, D)); yields ``{"fit_seconds": s}`` once.
        A one-shot fit has nothing to continue: ``resume`` must be None."""
        if resume is not None:
            raise DataError(f"{self.name}: a one-shot fit cannot be resumed")
        try:
            x2 = self._flat(x, "training data")
            start = time.perf_counter()
            self._fit(x2, seed)
        except BaseException:
            self.input_shape = None  # a failed fit leaves the detector unfitted
            raise
        self.last_fit_seconds = time.perf_counter() - start
        yield {"fit_seconds": self.last_fit_seconds}

    def score(self, x: np.ndarray) -> np.ndarray:
        """Anomaly scores (N,) float64 for ``x`` shaped like the training data; higher = more anomalous."""
        x2 = self._flat(x, "input")
        start = time.perf_counter()
        scores = self._score(x2) if len(x2) else np.zeros(0)
        self.last_score_seconds = time.perf_counter() - start
        return np.asarray(scores, dtype=np.float64)

    def _fit(self, x: np.ndarray, seed: int) -> None:
        raise NotImplementedError

    def _score(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


# ----------------------------------------------------------------------------- knn
@dataclasses.dataclass
class KNNConfig(DetectorConfig):
    """k: which neighbour's distance is the score; fit_samples: training rows kept (seeded subsample,
    0 = all); batch_size: test rows per chunk of the distance search.

    Defaults from validation AUPRC (``benchmarks/baselines.py --split val``): k=1 beat k=3/5/10/20 on
    mnist-5k (mean of ten classes 0.600 vs 0.568 for k=3) and k=5/10 on KDD99 scaled and unscaled;
    30000 training rows gain < 0.003 AUPRC on KDD99 over 10000 at three times the scoring cost.
    """

    k: int = ranged(1, Range(1))
    fit_samples: int = 10000
    batch_size: int = 512


@register_detector
class KNN(_Baseline[KNNConfig]):
    """Euclidean distance to the k-th nearest training sample (exact search).

    A float64 matrix product shortlists k + 16 candidates per row, whose distances are then recomputed
    exactly (a float32 shortlist missed the true nearest neighbour for ~0.1% of KDD99 test rows).
    """

    name = "knn"
    uses_accelerator = True  # the candidate search runs on the fit's device
    _EXTRA_CANDIDATES = 16  # shortlist margin against rounding in the matmul distances

    def check_training_data(self, x: np.ndarray) -> None:
        # Checked on the rows kept, not the rows given: fit_samples may keep fewer than k.
        fit = self.config.fit_samples
        kept = len(x) if fit <= 0 else min(len(x), fit)
        if kept < self.config.k:
            raise DataError(f"knn: k={self.config.k} needs at least {self.config.k} training samples, "
                            f"got {kept} (fit_samples={fit}, {len(x)} given)")

    def _fit(self, x: np.ndarray, seed: int) -> None:
        self.load_state({"train": x[_subsample(len(x), self.config.fit_samples, seed)].copy()})

    def state(self) -> dict[str, Any]:
        return {"train": self._rows}

    def load_state(self, state: dict[str, Any]) -> None:
        self._rows = np.asarray(torch.as_tensor(state["train"]).cpu(), dtype=np.float32)  # (M, D)
        train64 = self._rows.astype(np.float64)
        # Centring only improves the conditioning of the matmul distances that shortlist candidates.
        self._mean = train64.mean(axis=0)
        centred = torch.from_numpy(train64 - self._mean).to(self.device)
        self._centred_t = centred
        self._sq_t = (centred * centred).sum(dim=1)[None, :]

    def _score(self, x: np.ndarray) -> np.ndarray:
        k, m = self.config.k, len(self._rows)
        n_cand = min(m, k + self._EXTRA_CANDIDATES)
        x64 = x.astype(np.float64)
        out = np.empty(len(x))
        for start in range(0, len(x), self.config.batch_size):
            rows = x64[start:start + self.config.batch_size]
            a = torch.from_numpy(rows - self._mean).to(self.device)
            # ||b||^2 - 2ab ranks the training rows like ||a - b||^2 (||a||^2 is constant along a row).
            approx = torch.addmm(self._sq_t, a, self._centred_t.T, alpha=-2.0)
            cand = torch.topk(approx, n_cand, dim=1, largest=False).indices.cpu().numpy()  # (B, n_cand)
            diff = rows[:, None, :] - self._rows[cand].astype(np.float64)  # exact, per row
            d2 = np.sort((diff * diff).sum(axis=-1), axis=1)
            out[start:start + len(rows)] = np.sqrt(d2[:, k - 1])
        return out


# ----------------------------------------------------------------------------- iforest
@dataclasses.dataclass
class IForestConfig(DetectorConfig):
    """scikit-learn IsolationForest: n_estimators trees, each on max_samples rows (clipped to N) and a
    max_features fraction of the features."""

    n_estimators: int = ranged(100, Range(1))
    max_samples: int = ranged(256, Range(1))
    max_features: float = ranged(1.0, Range(0.0, 1.0, low_open=True, note="a fraction of the features"))


def _average_path_length(n: np.ndarray) -> np.ndarray:
    """Mean path length of an unsuccessful search in a binary search tree of ``n`` nodes (c(n))."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


@register_detector
class IForest(_Baseline[IForestConfig]):
    """Isolation forest; score = 2^(-mean path length / c(max_samples)) = -``score_samples``."""

    name = "iforest"

    def _fit(self, x: np.ndarray, seed: int) -> None:
        # Imported here, as in OCSVM: scikit-learn (with SciPy and pandas) is about a second of start-up for
        # every process that imports the registry (each trial actor, sweep driver and CLI command), and
        # only these two fits use it; scoring runs on the exported arrays.
        from sklearn.ensemble import IsolationForest

        forest = IsolationForest(n_estimators=self.config.n_estimators,
                                 max_samples=min(self.config.max_samples, len(x)),
                                 max_features=self.config.max_features, random_state=seed).fit(x)
        self.load_state(export_isolation_forest(forest))

    def state(self) -> dict[str, Any]:
        return dict(self._state)

    def load_state(self, state: dict[str, Any]) -> None:
        s = {k: np.asarray(torch.as_tensor(v).cpu()) if not isinstance(v, int | float) else v
             for k, v in state.items()}
        self._state = s
        left, right, offsets = s["left"], s["right"], s["offsets"]
        # Global node ids; a leaf points to itself, so walking a fixed number of steps is harmless.
        leaf = left < 0
        ids = np.arange(len(left))
        tree_of = np.repeat(np.arange(len(offsets)), np.diff(np.append(offsets, len(left))))
        self._left = np.where(leaf, ids, left + offsets[tree_of])
        self._right = np.where(leaf, ids, right + offsets[tree_of])
        self._feature = np.where(leaf, 0, s["feature"])
        depth = np.full(len(left), -1)
        depth[offsets] = 0
        level = 0
        while True:  # breadth-first over levels (at most log2(max_samples) + 1 passes)
            parents = ids[(depth == level) & ~leaf]
            if not len(parents):
                break
            depth[self._left[parents]] = depth[self._right[parents]] = level + 1
            level += 1
        self._n_steps = level
        # Path length of a sample ending in a node: its depth plus c(node size) for unsplit leaves.
        self._leaf_value = depth + _average_path_length(s["n_node_samples"])
        self._denominator = len(offsets) * float(_average_path_length(np.array([s["max_samples"]]))[0])

    def _score(self, x: np.ndarray) -> np.ndarray:
        roots = self._state["offsets"]
        depths = np.empty(len(x))
        rows_per = _rows_per_chunk(len(roots))
        for start in range(0, len(x), rows_per):
            rows = x[start:start + rows_per]
            node = np.broadcast_to(roots, (len(rows), len(roots)))  # (B, T)
            for _ in range(self._n_steps):
                value = np.take_along_axis(rows, self._feature[node], axis=1)
                node = np.where(value <= self._state["threshold"][node], self._left[node], self._right[node])
            depths[start:start + len(rows)] = self._leaf_value[node].sum(axis=1)
        if self._denominator == 0:  # one training sample: scikit-learn's convention
            return np.ones(len(x))
        return 2.0 ** (-depths / self._denominator)


def export_isolation_forest(forest: IsolationForest) -> dict[str, Any]:
    """A fitted IsolationForest as concatenated per-node arrays (tree-local child ids, global features)."""
    parts: dict[str, list[np.ndarray]] = {"left": [], "right": [], "feature": [], "threshold": [],
                                          "n_node_samples": []}
    offsets = []
    total = 0
    for est, features in zip(forest.estimators_, forest.estimators_features_, strict=True):
        tree = est.tree_
        offsets.append(total)
        total += tree.node_count
        parts["left"].append(tree.children_left.astype(np.int64))
        parts["right"].append(tree.children_right.astype(np.int64))
        # Trees see a feature subset; map their column ids back to the input's columns.
        parts["feature"].append(np.asarray(features, dtype=np.int64)[np.maximum(tree.feature, 0)])
        parts["threshold"].append(tree.threshold.astype(np.float64))
        parts["n_node_samples"].append(tree.n_node_samples.astype(np.int64))
    state: dict[str, Any] = {k: np.concatenate(v) for k, v in parts.items()}
    state["offsets"] = np.asarray(offsets, dtype=np.int64)
    state["max_samples"] = int(forest.max_samples_)
    return state


# ----------------------------------------------------------------------------- pca
@dataclasses.dataclass
class PCAConfig(DetectorConfig):
    """n_components: principal components kept (at most the N training rows; as many as the D features
    or more is refused, since every direction kept leaves every score zero: set it below D for data of few
    columns, e.g. ``--set n_components=2`` on the 8 of ``synthetic-tabular``); fit_samples: rows used for
    the fit (seeded subsample, 0 = all).

    Default from validation AUPRC: 8 components gave the best mnist-5k mean (0.455; 4: 0.404, 16: 0.425,
    32: 0.390); on KDD99 4 to 32 components are within 0.006 of each other.
    """

    n_components: int = ranged(8, Range(1))
    fit_samples: int = 20000


@register_detector
class PCA(_Baseline[PCAConfig]):
    """Squared reconstruction error ||(x - mean) - P(x - mean)||^2 of a PCA with n components."""

    name = "pca"

    def check_data(self, input_shape: tuple[int, ...]) -> None:
        n_features = math.prod(input_shape)
        if self.config.n_components >= n_features:
            # Every direction kept: the reconstruction error, hence every score, would be zero.
            raise DataError(
                f"pca: n_components {self.config.n_components} >= the {n_features} input features; expected "
                f"fewer components than features (e.g. {max(1, n_features // 4)})"
            )

    def _fit(self, x: np.ndarray, seed: int) -> None:
        x64 = x[_subsample(len(x), self.config.fit_samples, seed)].astype(np.float64)
        mean = x64.mean(axis=0)
        centred = x64 - mean
        q = min(self.config.n_components, *centred.shape)
        if len(centred) < centred.shape[1]:  # few samples: thin SVD, O(N^2 D)
            components = np.linalg.svd(centred, full_matrices=False)[2][:q]
        else:  # eigenvectors of the D x D scatter matrix, O(N D^2); eigh sorts eigenvalues ascending
            components = np.linalg.eigh(centred.T @ centred)[1][:, ::-1][:, :q].T
        self.load_state({"mean": mean, "components": np.ascontiguousarray(components)})

    def state(self) -> dict[str, Any]:
        return {"mean": self._mean, "components": self._components}

    def load_state(self, state: dict[str, Any]) -> None:
        self._mean = np.asarray(torch.as_tensor(state["mean"]).cpu(), dtype=np.float64)  # (D,)
        self._components = np.asarray(torch.as_tensor(state["components"]).cpu(), dtype=np.float64)  # (q, D)

    def _score(self, x: np.ndarray) -> np.ndarray:
        comp = self._components
        out = np.empty(len(x))
        rows_per = _rows_per_chunk(comp.size)
        for start in range(0, len(x), rows_per):
            centred = x[start:start + rows_per].astype(np.float64) - self._mean  # (B, D)
            # Broadcast products + sums rather than matmul: identical per-row results for any batch.
            coef = (centred[:, None, :] * comp[None]).sum(axis=-1)  # (B, q)
            resid = centred - (coef[:, :, None] * comp[None]).sum(axis=1)
            out[start:start + len(centred)] = (resid * resid).sum(axis=-1)
        return out


# ----------------------------------------------------------------------------- ocsvm
@dataclasses.dataclass
class OCSVMConfig(DetectorConfig):
    """scikit-learn OneClassSVM with an RBF kernel on a seeded subsample of fit_samples rows (0 = all);
    gamma 0 means scikit-learn's "scale", 1 / (D * var(x))."""

    nu: float = ranged(0.1, Range(0.0, 1.0, low_open=True))
    gamma: float = ranged(0.0, Range(0.0, note='0: scikit-learn\'s "scale"'))
    fit_samples: int = 5000


@register_detector
class OCSVM(_Baseline[OCSVMConfig]):
    """One-class SVM; score = -decision_function = -(sum_i a_i exp(-gamma ||x - sv_i||^2) + b)."""

    name = "ocsvm"

    def _fit(self, x: np.ndarray, seed: int) -> None:
        x64 = x[_subsample(len(x), self.config.fit_samples, seed)].astype(np.float64)
        gamma = self.config.gamma
        if gamma == 0:
            var = float(x64.var())
            gamma = 1.0 / (x64.shape[1] * var) if var > 0 else 1.0
        from sklearn.svm import OneClassSVM

        svm = OneClassSVM(kernel="rbf", nu=self.config.nu, gamma=gamma).fit(x64)
        self.load_state({"support_vectors": svm.support_vectors_.astype(np.float64),
                         "dual_coef": svm.dual_coef_.ravel().astype(np.float64),
                         "intercept": float(svm.intercept_[0]), "gamma": float(gamma)})

    def state(self) -> dict[str, Any]:
        return {"support_vectors": self._sv, "dual_coef": self._coef, "intercept": self._intercept,
                "gamma": self._gamma}

    def load_state(self, state: dict[str, Any]) -> None:
        self._sv = np.asarray(torch.as_tensor(state["support_vectors"]).cpu(), dtype=np.float64)  # (S, D)
        self._coef = np.asarray(torch.as_tensor(state["dual_coef"]).cpu(), dtype=np.float64)  # (S,)
        self._intercept = float(state["intercept"])
        self._gamma = float(state["gamma"])
        self._sv_t = torch.from_numpy(self._sv)

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """scikit-learn's ``OneClassSVM.decision_function`` (N,) from the exported arrays (> 0: inlier)."""
        return self._decision(self._flat(x, "input"))

    def _decision(self, x: np.ndarray) -> np.ndarray:
        out = np.empty(len(x))
        rows_per = _rows_per_chunk(len(self._sv))
        for start in range(0, len(x), rows_per):
            rows = torch.from_numpy(x[start:start + rows_per].astype(np.float64))
            # Direct differences (no matmul shortcut): per-row results do not depend on the batch.
            dist = torch.cdist(rows, self._sv_t, compute_mode="donot_use_mm_for_euclid_dist").numpy()
            out[start:start + len(rows)] = (np.exp(-self._gamma * dist * dist) * self._coef).sum(axis=-1)
        return out + self._intercept

    def _score(self, x: np.ndarray) -> np.ndarray:
        return -self._decision(x)
