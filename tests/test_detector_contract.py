"""The detector contract, checked for every registered detector (``adgan.models.list_detectors()``).

A detector is tested here by being registered. Tests train with small hyperparameters from the
detector class's optional hook::

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        '''Hyperparameters that train in a few seconds and still learn ``easy_images``/``easy_tabular``.'''

(absent = ``{}``, the defaults; classical baselines need nothing). Each detector is fitted once per input
kind (module-scoped fixtures) on normal samples of the easy synthetic data of ``easy_data``, then checked for:
``fit`` returns self, score shape/dtype, score direction (anomalies score higher), batch-composition
independence, identical scores after save/load, refusal of unknown hyperparameters, bad loss cases and
wrong input shapes.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from easy_data import TAB_DIM, easy_images, easy_split, easy_tabular, tiny  # noqa: F401 (used elsewhere)
from sklearn.metrics import roc_auc_score

from adgan.errors import ConfigError, DataError
from adgan.models import Detector, create_detector, list_detectors
from adgan.models.base import DETECTORS, valid_range

MODELS = list_detectors()


@dataclasses.dataclass
class Fitted:
    det: Detector
    fit_result: Any
    x_test: np.ndarray
    y_test: np.ndarray


_CACHE: dict[tuple[str, str], Fitted] = {}


def fitted(name: str, kind: str) -> Fitted:
    """Fit ``name`` once per input kind (cached for the module); skip kinds the detector does not take."""
    cls = DETECTORS.get(name)
    if kind not in cls.input_kinds:
        pytest.skip(f"{name} does not take {kind} input")
    key = (name, kind)
    if key not in _CACHE:
        x_train, x_test, y_test = easy_split(kind, side=cls.preferred_image_size)
        det = create_detector(name, **tiny(name))
        _CACHE[key] = Fitted(det, det.fit(x_train), x_test, y_test)
    return _CACHE[key]


@pytest.fixture(scope="module", autouse=True)
def _one_thread_and_clear_cache(one_torch_thread: None) -> Any:
    yield
    _CACHE.clear()


KINDS = ("image", "tabular")


def test_registry_holds_every_shipped_detector_with_its_family() -> None:
    assert set(list_detectors("gan")) >= {"anogan", "egbad", "ganomaly"}
    assert set(list_detectors("baseline")) >= {"iforest", "knn", "ocsvm", "pca"}
    assert sorted(list_detectors("gan") + list_detectors("baseline")) == MODELS  # every one has a family


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", MODELS)
def test_fit_returns_self_and_scores_are_float64_per_sample(name: str, kind: str) -> None:
    f = fitted(name, kind)
    assert f.fit_result is f.det
    scores = f.det.score(f.x_test)
    assert scores.shape == (len(f.x_test),)
    assert scores.dtype == np.float64
    assert np.isfinite(scores).all()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", MODELS)
def test_anomalies_score_higher_on_an_easy_case(name: str, kind: str) -> None:
    f = fitted(name, kind)
    auroc = roc_auc_score(f.y_test, f.det.score(f.x_test))
    assert auroc > 0.8, f"{name} on easy {kind} data: AUROC {auroc:.3f}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", MODELS)
def test_scores_do_not_depend_on_batch_composition(name: str, kind: str) -> None:
    f = fitted(name, kind)
    full = f.det.score(f.x_test)
    order = np.random.default_rng(1).permutation(len(f.x_test))
    # The same samples in another order, alone, and in odd-sized groups with other company.
    np.testing.assert_allclose(f.det.score(f.x_test[order]), full[order], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(f.det.score(f.x_test[:1]), full[:1], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(f.det.score(f.x_test[order[:7]]), full[order[:7]], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", MODELS)
def test_save_load_gives_identical_scores(name: str, kind: str, tmp_path: Path) -> None:
    f = fitted(name, kind)
    path = f.det.save(tmp_path / "ckpt")
    loaded = Detector.load(path)
    assert type(loaded) is type(f.det)
    assert loaded.config == f.det.config
    assert loaded.input_shape == f.det.input_shape
    np.testing.assert_array_equal(loaded.score(f.x_test), f.det.score(f.x_test))
    # Saving over an existing checkpoint replaces it.
    f.det.save(path)
    np.testing.assert_array_equal(type(f.det).load(path).score(f.x_test[:5]), f.det.score(f.x_test[:5]))
    # adgan.train keeps the best epoch's detector as a deep copy.
    np.testing.assert_array_equal(copy.deepcopy(f.det).score(f.x_test[:5]), f.det.score(f.x_test[:5]))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", MODELS)
def test_wrong_input_shape_is_refused(name: str, kind: str) -> None:
    f = fitted(name, kind)
    x = f.x_test
    bad = [x[:, :-1], x[0], x.reshape(len(x), -1, 1)] if kind == "tabular" else [
        x[:, :, :-1], x[:, :, :-1, :-1], np.repeat(x, 2, axis=1), x.reshape(len(x), -1)]
    for wrong in bad:
        with pytest.raises(DataError, match="expected input of shape"):
            f.det.score(wrong)


@pytest.mark.parametrize("name", MODELS)
def test_unknown_hyperparameter_and_bad_loss_case_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="not_a_hyperparameter"):
        create_detector(name, not_a_hyperparameter=1)
    with pytest.raises(ConfigError, match="loss_case"):
        create_detector(name, loss_case="no-such-case")
    # The first loss case is the default.
    assert create_detector(name).config.loss_case == DETECTORS.get(name).loss_cases[0]


@pytest.mark.parametrize("name", MODELS)
def test_out_of_range_hyperparameters_are_refused(name: str) -> None:
    """Every numeric hyperparameter: NaN and +-inf, and values just outside its declared range."""
    numeric = [f for f in dataclasses.fields(DETECTORS.get(name).Config)
               if isinstance(f.default, int | float) and not isinstance(f.default, bool)]
    assert numeric, f"{name} has no numeric hyperparameter to check"
    for field in numeric:
        valid = valid_range(field)
        bad = [math.nan, math.inf, -math.inf] + (valid.outside() if valid is not None else [])
        for value in bad:
            value = int(value) if isinstance(field.default, int) and math.isfinite(value) else value
            with pytest.raises(ConfigError, match=f"'{field.name}' of model '{name}': expected"):
                create_detector(name, **{field.name: value})
        if valid is not None:  # the default itself is valid
            assert field.default in valid, (name, field.name)


@pytest.mark.parametrize("name", MODELS)
def test_unfitted_detector_refuses_to_score_or_save(name: str, tmp_path: Path) -> None:
    det = create_detector(name, **tiny(name))
    with pytest.raises(DataError, match="not fitted"):
        det.score(np.zeros((2, TAB_DIM), np.float32))
    with pytest.raises(DataError):
        det.save(tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("name", MODELS)
def test_fit_refuses_input_that_is_neither_images_nor_a_table(name: str) -> None:
    det = create_detector(name, **tiny(name))
    for bad in (np.zeros((4, 3, 8), np.float32), np.zeros((0, TAB_DIM), np.float32)):
        with pytest.raises(DataError, match="expected a non-empty array"):
            det.fit(bad)


@pytest.mark.parametrize("name", MODELS)
def test_fit_epochs_yields_finite_losses_once_per_epoch(name: str) -> None:
    det = create_detector(name, **tiny(name))
    x_train, _, _ = easy_split("tabular", n_train=128)
    if "tabular" not in det.input_kinds:
        x_train, _, _ = easy_split("image", side=det.preferred_image_size, n_train=128)
    records = list(det.fit_epochs(x_train, seed=0))
    assert len(records) == det.n_epochs
    for rec in records:
        assert rec and all(isinstance(v, float) and math.isfinite(v) for v in rec.values()), rec
