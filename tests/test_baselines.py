"""Classical baselines (knn, iforest, pca, ocsvm): separation, exactness against scikit-learn, persistence,
batch independence and input errors."""

from __future__ import annotations

import numpy as np
import pytest
from easy_data import images
from sklearn import decomposition
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.svm import OneClassSVM

from adgan.errors import ConfigError, DataError
from adgan.models import Detector, create_detector, list_detectors
from adgan.models.baselines import export_isolation_forest

BASELINES = list_detectors("baseline")  # a new baseline is tested by being registered
D = 24  # features of the tabular case


def tabular(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normals near a 3-d subspace of R^24; anomalies shifted off it. Returns train, test, test labels."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((3, D))

    def normals(n: int) -> np.ndarray:
        return rng.standard_normal((n, 3)) @ basis + 0.1 * rng.standard_normal((n, D))

    anomalies = normals(30) + 3.0 * rng.choice([-1.0, 1.0], size=(30, D))
    test = np.concatenate([normals(120), anomalies]).astype(np.float32)
    return normals(400).astype(np.float32), test, np.r_[np.zeros(120), np.ones(30)]


def easy_images_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shared easy images (``easy_data``): 300 training normals; 80 normal, 20 anomalous test images."""
    train, _ = images(300, 0, seed)
    test, y = images(80, 20, seed + 1)
    return train, test, y


def fitted(name: str, data: tuple[np.ndarray, ...], **hp: object) -> Detector:
    det = create_detector(name, **hp)
    det.fit(data[0], seed=3)
    return det


@pytest.fixture(scope="module")
def tab() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tabular()


@pytest.fixture(scope="module")
def img() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return easy_images_split()


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("kind", ["tab", "img"])
def test_separates_easy_case(name: str, kind: str, request: pytest.FixtureRequest) -> None:
    data = request.getfixturevalue(kind)
    det = fitted(name, data)
    scores = det.score(data[1])
    assert scores.shape == (len(data[1]),) and scores.dtype == np.float64
    assert roc_auc_score(data[2], scores) > 0.9


@pytest.mark.parametrize("name", BASELINES)
def test_one_epoch_and_timings(name: str, tab: tuple[np.ndarray, ...]) -> None:
    det = create_detector(name)
    assert det.n_epochs == 1 and not det.is_iterative
    logs = list(det.fit_epochs(tab[0], seed=0))
    assert len(logs) == 1 and logs[0]["fit_seconds"] == det.last_fit_seconds > 0
    assert det.last_score_seconds is None
    det.score(tab[1])
    assert det.last_score_seconds is not None and det.last_score_seconds >= 0


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("kind", ["tab", "img"])
def test_save_load_round_trip_exact(name: str, kind: str, tmp_path, request: pytest.FixtureRequest) -> None:
    data = request.getfixturevalue(kind)
    det = fitted(name, data)
    det.save(tmp_path / "det")
    back = Detector.load(tmp_path / "det")
    assert type(back) is type(det) and back.config == det.config
    assert np.array_equal(back.score(data[1]), det.score(data[1]))


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("kind", ["tab", "img"])
def test_scores_independent_of_batch(name: str, kind: str, request: pytest.FixtureRequest) -> None:
    data = request.getfixturevalue(kind)
    det = fitted(name, data)
    x = data[1]
    full = det.score(x)
    for i in (0, 1, len(x) // 2, len(x) - 1):
        assert det.score(x[i:i + 1])[0] == full[i]
    perm = np.random.default_rng(0).permutation(len(x))
    assert np.array_equal(det.score(x[perm]), full[perm])
    assert np.array_equal(det.score(x[:7]), full[:7])


@pytest.mark.parametrize("name", BASELINES)
def test_same_seed_same_scores(name: str, tab: tuple[np.ndarray, ...]) -> None:
    hp = {"fit_samples": 100} if name != "iforest" else {"max_samples": 64}
    a, b = fitted(name, tab, **hp), fitted(name, tab, **hp)
    assert np.array_equal(a.score(tab[1]), b.score(tab[1]))


@pytest.mark.parametrize("name", BASELINES)
def test_bad_input_is_a_clear_error(name: str, tab: tuple[np.ndarray, ...]) -> None:
    det = create_detector(name)
    with pytest.raises(DataError, match="not fitted"):
        det.score(tab[1])
    with pytest.raises(DataError, match="non-empty"):
        det.fit(np.zeros((0, D), np.float32))
    bad = tab[0].copy()
    bad[5, 2] = np.nan
    with pytest.raises(DataError, match="training data contains 1 NaN"):
        det.fit(bad)
    assert det.input_shape is None  # a failed fit leaves it unfitted
    det.fit(tab[0])
    with pytest.raises(DataError, match=r"expected input of shape \(N, 24\), got \(5, 9\)"):
        det.score(tab[1][:, :9][:5])
    with pytest.raises(DataError, match="expected input of shape"):
        det.score(tab[1].reshape(-1, 1, D))
    with pytest.raises(DataError, match="input contains 1 NaN"):
        det.score(bad[:8])
    assert det.score(tab[1][:0]).shape == (0,)


@pytest.mark.parametrize(("name", "hp", "message"), [
    ("knn", {"kk": 3}, "unknown hyperparameter.*kk"), ("knn", {"k": 0}, "'k' of model 'knn': expected >= 1"),
    ("knn", {"k": 2.5}, "'k' of model 'knn': expected int"), ("knn", {"fit_samples": -1}, "'fit_samples'"),
    ("iforest", {"n_trees": 10}, "unknown hyperparameter.*n_trees"), ("iforest", {"max_features": 1.5},
    "'max_features'"), ("pca", {"n_components": 0}, "'n_components'"), ("ocsvm", {"nu": 0.0}, "'nu'"),
    ("ocsvm", {"gamma": -1.0}, "'gamma'"), ("ocsvm", {"kernel": "linear"}, "unknown hyperparameter.*kernel"),
    ("pca", {"loss_case": "other"}, "loss_case 'other'"),
])
def test_bad_hyperparameters_refused(name: str, hp: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_detector(name, **hp)


def test_hyperparameters_coerced_from_strings() -> None:
    det = create_detector("knn", k="3", fit_samples="50")
    assert det.config.k == 3 and det.config.fit_samples == 50


def test_knn_is_exact_kth_neighbour_distance(tab: tuple[np.ndarray, ...]) -> None:
    train = np.concatenate([tab[0], tab[0][:50]])  # duplicates make ties, the hard case for a shortlist
    det = create_detector("knn", k=4, batch_size=16).fit(train, seed=0)
    d = np.sqrt(((tab[1][:, None, :].astype(np.float64) - train[None].astype(np.float64)) ** 2).sum(-1))
    np.testing.assert_allclose(det.score(tab[1]), np.sort(d, axis=1)[:, 3], rtol=1e-12)
    assert np.all(det.score(train[:50]) >= 0)


def test_knn_keeps_a_seeded_subsample(tab: tuple[np.ndarray, ...]) -> None:
    det = fitted("knn", tab, fit_samples=100)
    assert det.state()["train"].shape == (100, D)
    other = create_detector("knn", fit_samples=100).fit(tab[0], seed=4)
    assert not np.array_equal(other.state()["train"], det.state()["train"])
    with pytest.raises(DataError, match="k=5 needs at least 5 training samples, got 3"):
        create_detector("knn", k=5).fit(tab[0][:3])


@pytest.mark.parametrize("max_features", [1.0, 0.5])
def test_iforest_matches_sklearn(max_features: float, tab: tuple[np.ndarray, ...]) -> None:
    forest = IsolationForest(n_estimators=30, max_samples=128, max_features=max_features, random_state=1)
    forest.fit(tab[0])
    det = create_detector("iforest")
    det.input_shape = (D,)
    det.load_state(export_isolation_forest(forest))
    np.testing.assert_allclose(det.score(tab[1]), -forest.score_samples(tab[1]), rtol=0, atol=1e-9)
    # And the detector's own fit is the same forest as scikit-learn's with the same seed.
    ours = create_detector("iforest", n_estimators=30, max_samples=128, max_features=max_features)
    ours.fit(tab[0], seed=1)
    np.testing.assert_allclose(ours.score(tab[1]), -forest.score_samples(tab[1]), rtol=0, atol=1e-9)


def test_ocsvm_matches_sklearn(tab: tuple[np.ndarray, ...]) -> None:
    x64 = tab[0].astype(np.float64)
    for gamma in (0.0, 0.3):
        svm = OneClassSVM(nu=0.2, gamma=gamma or 1.0 / (D * x64.var())).fit(x64)
        det = create_detector("ocsvm", nu=0.2, gamma=gamma).fit(tab[0], seed=0)
        np.testing.assert_allclose(det.decision_function(tab[1]), svm.decision_function(tab[1]),
                                   rtol=1e-10, atol=1e-10)
        assert np.array_equal(det.score(tab[1]), -det.decision_function(tab[1]))


@pytest.mark.parametrize("n_train", [400, 12])  # scatter-matrix and thin-SVD paths
def test_pca_matches_sklearn_reconstruction_error(n_train: int, tab: tuple[np.ndarray, ...]) -> None:
    train, test = tab[0][:n_train].astype(np.float64), tab[1].astype(np.float64)
    pca = decomposition.PCA(n_components=3).fit(train)
    recon = pca.inverse_transform(pca.transform(test))
    det = create_detector("pca", n_components=3).fit(tab[0][:n_train], seed=0)
    np.testing.assert_allclose(det.score(tab[1]), ((test - recon) ** 2).sum(1), rtol=1e-8)
    # More components than samples (but fewer than features) are clipped to the samples' rank; as many
    # components as features would reconstruct everything exactly (all scores 0) and are refused.
    kept = create_detector("pca", n_components=D - 1).fit(tab[0][:n_train]).state()["components"]
    assert kept.shape == (min(n_train, D - 1), D)
    with pytest.raises(DataError, match=f"n_components {D} >= the {D} input features"):
        create_detector("pca", n_components=D).fit(tab[0][:n_train])


def test_knn_refuses_k_above_the_rows_kept() -> None:
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    with pytest.raises(DataError, match="k=9 needs at least 9 training samples, got 8"):
        create_detector("knn", k=9, fit_samples=8).fit(x)
