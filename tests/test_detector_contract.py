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
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from easy_data import TAB_DIM, easy_images, easy_split, easy_tabular, tiny  # noqa: F401 (used elsewhere)
from sklearn.metrics import roc_auc_score

from adgan.errors import ConfigError, ContractError, DataError
from adgan.models import Detector, create_detector, list_detectors
from adgan.models.base import DETECTORS, DetectorConfig, valid_range

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


def numeric_fields(name: str) -> list[dataclasses.Field[Any]]:
    """The detector's numeric hyperparameters (int or float defaults, booleans not)."""
    return [f for f in dataclasses.fields(DETECTORS.get(name).Config)
            if isinstance(f.default, int | float) and not isinstance(f.default, bool)]


def test_registry_holds_every_shipped_detector_with_its_family() -> None:
    assert set(list_detectors("gan")) >= {"anogan", "egbad", "ganomaly"}
    assert set(list_detectors("baseline")) >= {"iforest", "knn", "ocsvm", "pca"}
    assert sorted(list_detectors("gan") + list_detectors("baseline")) == MODELS  # every one has a family
    with pytest.raises(ConfigError, match=r"unknown detector family 'GAN'; expected one of: gan, baseline"):
        list_detectors("GAN")  # (listed nothing, silently)


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


@pytest.mark.parametrize("name", MODELS)
def test_a_detector_fits_again_after_a_fit_and_after_loading(name: str, tmp_path: Path) -> None:
    """Refitting (other hyperparameters, or a loaded checkpoint trained further) works for every detector;
    a folder that is not a saved detector is never replaced by save."""
    cls = DETECTORS.get(name)
    kind = "tabular" if "tabular" in cls.input_kinds else "image"
    x_train, x_test, _ = easy_split(kind, side=cls.preferred_image_size)
    det = create_detector(name, **tiny(name)).fit(x_train)
    assert det.fit(x_train) is det and np.isfinite(det.score(x_test)).all()
    loaded = Detector.load(det.save(tmp_path / "ckpt"))
    assert loaded.fit(x_train) is loaded and np.isfinite(loaded.score(x_test)).all()
    # A refit refused at the call (a seed no detector takes, a single sample) leaves it as it was.
    before = loaded.score(x_test)
    with pytest.raises(ConfigError, match=r"seed must be a whole number in 0 \.\. 2\*\*32 - 1, got -1"):
        loaded.fit_epochs(x_train, seed=-1)
    if cls.family == "gan":  # (batch norm: two samples at least)
        with pytest.raises(DataError, match=r"training needs at least 2 samples"):
            loaded.fit_epochs(x_train[:1])
    np.testing.assert_array_equal(loaded.score(x_test), before)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"mine: exists and is not a saved detector .*: not replaced"):
        det.save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"


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
    numeric = numeric_fields(name)
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
    for bad in (np.zeros((4, 3, 8), np.float32), np.zeros((0, TAB_DIM), np.float32),
                np.zeros((4, 0), np.float32)):
        with pytest.raises(DataError, match="expected a non-empty array"):
            det.fit(bad)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", MODELS)
def test_nan_and_infinite_input_are_refused_naming_the_sample(name: str, kind: str) -> None:
    """Every detector alike: a GAN would otherwise train to a NaN loss (reported as diverged) or score NaN."""
    f = fitted(name, kind)
    x_train, _, _ = easy_split(kind, side=DETECTORS.get(name).preferred_image_size, n_train=16)
    for value in (np.nan, np.inf):
        bad = x_train.copy()
        bad[3].flat[1] = value
        with pytest.raises(DataError, match=r"training data contains 1 NaN or infinite value\(s\) "
                                            r"\(the first in sample 3"):
            create_detector(name, **tiny(name)).fit(bad)
        bad = f.x_test[:5].copy()
        bad[4].flat[0] = value
        if kind == "tabular" and value == np.inf:  # finite in float64, beyond float32: said so
            huge = bad.astype(np.float64)
            huge[4].flat[0] = 1e39
            with pytest.raises(DataError, match=r"input holds values beyond float32's range .* sample 4"):
                f.det.score(huge)
        with pytest.raises(DataError, match=r"input contains 1 NaN or infinite value\(s\) \(the first in "
                                            r"sample 4"):
            f.det.score(bad)


@pytest.mark.parametrize("name", MODELS)
def test_none_and_booleans_are_no_numbers(name: str) -> None:
    """YAML's ``lr: ~`` and ``True`` (which Python takes for 1) are refused at construction, for every
    numeric hyperparameter, not deep inside a fit."""
    numeric = numeric_fields(name)
    for field in numeric:
        for value in (None, True):
            with pytest.raises(ConfigError, match=f"'{field.name}' of model '{name}': expected "
                                                  f"{type(field.default).__name__}, got {value}"):
                create_detector(name, **{field.name: value})


@pytest.mark.parametrize("name", MODELS)
def test_get_and_set_params_are_checked_like_the_constructor(name: str) -> None:
    det = create_detector(name, **tiny(name))
    params = det.get_params()
    assert params == det.config.to_dict() and create_detector(name, **params).get_params() == params
    field = next(f for f in numeric_fields(name) if valid_range(f) is not None and valid_range(f).outside())
    assert det.set_params(**{field.name: field.default}) is det
    assert det.get_params()[field.name] == field.default
    bad = valid_range(field).outside()[0]
    bad = int(bad) if isinstance(field.default, int) and math.isfinite(bad) else bad
    with pytest.raises(ConfigError, match=f"'{field.name}' of model '{name}'"):
        det.set_params(**{field.name: bad})
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        det.set_params(not_a_hyperparameter=1)
    # The config changed by hand (a plain dataclass) is checked again when fitting starts.
    setattr(det.config, field.name, bad)
    x_train, _, _ = easy_split("tabular" if "tabular" in det.input_kinds else "image",
                               side=det.preferred_image_size, n_train=16)
    with pytest.raises(ConfigError, match=f"'{field.name}' of model '{name}'"):
        det.fit(x_train)


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


def test_an_unknown_name_is_a_config_error_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"unknown detector 'ganomali' \(did you mean 'ganomaly'\?\); "
                                          r"expected one of: .*knn") as info:
        create_detector("ganomali")
    assert isinstance(info.value, KeyError)  # a registry lookup's error, as before


def test_a_detector_missing_an_abstract_method_is_refused_at_registration() -> None:
    from adgan.models import register_detector
    from adgan.models.baselines import _Baseline

    class Broken(_Baseline):  # no state / load_state
        name = "broken-for-test"

        def _fit(self, x: np.ndarray, seed: int) -> None:
            self.mu = x.mean(0)

        def _score(self, x: np.ndarray) -> np.ndarray:
            return ((x - self.mu) ** 2).sum(1)

    with pytest.raises(ValueError, match=r"Broken \('broken-for-test'\) does not define load_state, state"):
        register_detector(Broken)
    assert "broken-for-test" not in list_detectors()
    # A GAN following the "add a GAN" recipe that forgot a hook: refused the same way (was registered, then
    # failed at the first fit with a bare NotImplementedError).
    from adgan.models.gan import GANDetector

    class HalfGAN(GANDetector):
        name = "halfgan-for-test"

        def build_networks(self) -> dict:
            return {}

    with pytest.raises(ValueError, match=r"HalfGAN \('halfgan-for-test'\) does not define make_optimizers, "
                                         r"train_step"):
        register_detector(HalfGAN)


def test_a_hyperparameter_named_like_a_run_key_is_refused_at_registration() -> None:
    """A run's config is flat: a detector's ``seed`` or ``scale`` would silently take (and override) the
    run's ``--seed`` / ``scale``."""
    import dataclasses

    from adgan.models import register_detector
    from adgan.models.baselines import KNN, KNNConfig

    @dataclasses.dataclass
    class ClashConfig(KNNConfig):
        seed: int = 7
        scale: float = 2.0

    class Clash(KNN):
        name = "clash-for-test"
        Config = ClashConfig

    with pytest.raises(ValueError, match=r"Clash \('clash-for-test'\): hyperparameter\(s\) scale, seed named "
                                         r"like run keys of adgan.train \(model, dataset, .*\); rename them"):
        register_detector(Clash)
    assert "clash-for-test" not in list_detectors()


def test_contract_breaches_a_plugin_author_makes_are_named_early() -> None:
    """A Config subclass without @dataclass (its fields would be no hyperparameters), a _train that returns
    instead of yielding (sklearn's fit), a GAN's train_step returning floats: each named, not a Python
    error deep in the loop."""
    import dataclasses

    from adgan.models import register_detector
    from adgan.models.baselines import KNN, KNNConfig
    from adgan.models.gan import GANConfig, GANDetector

    class UndecoratedConfig(KNNConfig):
        shrinkage: float = 1e-3

    class NoDataclass(KNN):
        name = "nodc-for-test"
        Config = UndecoratedConfig

    with pytest.raises(ValueError, match=r"NoDataclass \('nodc-for-test'\): its Config UndecoratedConfig "
                                         r"is not decorated with @dataclasses.dataclass; its fields "
                                         r"\(shrinkage\)"):
        register_detector(NoDataclass)

    class Returns(KNN):
        name = "returns-for-test"

        def _train(self, x: np.ndarray, seed: int, resume: object) -> None:  # type: ignore[override]
            self._fit(x, seed)

    register_detector(Returns)  # (what it returns is seen when it runs: a wrapper may return a generator)
    try:
        with pytest.raises(ValueError, match=r"returns-for-test: _train returned NoneType; it must be a "
                                             r"generator that yields a dict of losses per epoch"):
            create_detector("returns-for-test").fit(np.zeros((20, 3), np.float32))
    finally:
        DETECTORS.unregister("returns-for-test")

    class Handing(KNN):  # hands on its parent's generator: a function that returns one, and fine
        name = "handing-for-test"

        class Config(KNN.Config):  # no fields of its own: no decorator needed
            pass

        def _train(self, x: np.ndarray, seed: int, resume: object):  # type: ignore[no-untyped-def]
            return super()._train(x * 1.0, seed, resume)

    register_detector(Handing)
    try:
        create_detector("handing-for-test").fit(np.zeros((20, 3), np.float32))
    finally:
        DETECTORS.unregister("handing-for-test")
    assert "nodc-for-test" not in list_detectors()

    @dataclasses.dataclass
    class TinyConfig(GANConfig):
        pass

    class FloatLoss(GANDetector):
        name = "floatloss-for-test"
        Config = TinyConfig

        def build_networks(self) -> dict:
            return {"lin": torch.nn.Linear(self.input_shape[0], 1)}

        def make_optimizers(self) -> dict:
            return {"g": self.adam(self.nets["lin"].parameters())}

        def train_step(self, xb: torch.Tensor, gen: torch.Generator) -> dict:
            loss = self.nets["lin"](xb).pow(2).mean()
            self.optimizers["g"].zero_grad()
            loss.backward()
            self.optimizers["g"].step()
            return {"rec": loss.item()}

        def score_batch(self, xb: torch.Tensor) -> torch.Tensor:
            return self.nets["lin"](xb).squeeze(1)

    register_detector(FloatLoss)
    try:
        det = create_detector("floatloss-for-test", epochs=1, batch_size=8)
        said = r"floatloss-for-test: train_step returned float for loss 'rec'; expected a 0-d tensor"
        with pytest.raises(ContractError, match=said + r" \(the loss, not loss.item\(\)\)"):
            det.fit(np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32))
    finally:
        DETECTORS.unregister("floatloss-for-test")


def test_non_finite_validation_scores_are_counted_and_located(tmp_path: Path) -> None:
    """A detector whose score() gives NaN for some samples: the run ends saying how many, which is the
    first, and (for a one-step detector) whose doing it is, rather than a bare "diverged". Its
    summary.json is strict JSON (a figure no epoch produced is null, not Python's bare NaN token)."""
    from adgan.models import register_detector
    from adgan.models.baselines import KNN
    from adgan.train import train

    class HolesKNN(KNN):
        name = "holes-for-test"

        def score(self, x: np.ndarray) -> np.ndarray:
            scores = super().score(x)
            scores[3::7] = np.nan
            return scores

    register_detector(HolesKNN)
    try:
        *_, summary = train({"model": "holes-for-test", "dataset": "synthetic-tabular", "anomaly_class": 0},
                            out=tmp_path / "run")
    finally:
        DETECTORS.unregister("holes-for-test")
    assert summary["status"] == "diverged", summary
    nan_keys = {k for k, v in summary.items() if isinstance(v, float) and np.isnan(v)}
    assert "best_val_auprc" in nan_keys, summary

    def refuse(token: str) -> None:
        raise AssertionError(f"summary.json holds the non-JSON token {token}")

    written = json.loads((tmp_path / "run" / "summary.json").read_text(), parse_constant=refuse)
    assert {k for k in nan_keys if written[k] is None} == nan_keys, written
    assert re.fullmatch(r"holes-for-test: \d+ of \d+ validation scores not finite after epoch 1 \(the first: "
                        r"validation sample 3, nan\); score\(\) must give every sample a finite score",
                        summary["message"]), summary["message"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda h: [h], r"expected a JSON object, got list"),
        (lambda h: {**h, "config": None}, r"config: expected an object of hyperparameters, got None"),
        (lambda h: {**h, "input_shape": "8"},
         r"input_shape: expected \[D\] or \[C, H, W\] of positive integers"),
        (lambda h: {**h, "input_shape": [8, 0, 2]}, r"input_shape: expected"),
    ],
)
def test_a_hand_damaged_header_is_a_data_error(tmp_path: Path, edit: Any, message: str) -> None:
    import json

    f = fitted("knn", "tabular")
    path = f.det.save(tmp_path / "ckpt")
    header = json.loads((path / "detector.json").read_text())
    (path / "detector.json").write_text(json.dumps(edit(header)))
    with pytest.raises(DataError, match=f"detector.json: {message}"):
        Detector.load(path)


@pytest.mark.parametrize(("bad", "got"), [
    (lambda s: s[:, None], r"a float64 array of shape \(40, 1\)"),
    (lambda s: s[:-1], r"a float64 array of shape \(39,\)"),
    (lambda s: __import__("torch").from_numpy(s), r"Tensor"),
])
def test_scores_that_break_the_contract_are_named(bad: Any, got: str) -> None:
    """A detector of one's own whose score() returns (N, 1), N - 1 scores or a tensor: named with the
    contract where scores are used (train, adgan score, the sweep's test evaluation)."""
    from adgan.errors import DataError
    from adgan.models.base import scores_of
    from adgan.models.baselines import KNN

    class Wrong(KNN):
        name = "wrong-for-test"

        def score(self, x: np.ndarray) -> Any:
            return bad(super().score(x))

    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    det = Wrong(k=2).fit(x)
    with pytest.raises(DataError, match=rf"wrong-for-test: score\(\) of 40 samples returned {got}; the "
                                        r"detector contract is a numpy float array of shape \(40,\)"):
        scores_of(det, x)
    assert scores_of(KNN(k=2).fit(x), x).shape == (40,)


def test_hyperparameters_without_a_plain_default_are_type_checked_too() -> None:
    """A field whose default is None (``float | None``), comes from a default_factory or is required: its
    value is checked against the annotation as any other (``alpha="abc"`` failed later, inside score())."""
    import dataclasses

    from adgan.models.base import make_config

    @dataclasses.dataclass
    class Cfg(DetectorConfig):
        alpha: float | None = None
        beta: float = dataclasses.field(default_factory=lambda: 0.5)
        gamma: int = 3

    assert make_config(Cfg, "m", {"alpha": "0.25", "beta": 2}).alpha == 0.25
    assert make_config(Cfg, "m", {"alpha": None}).alpha is None
    for key, value, kind in (("alpha", "abc", "float"), ("beta", "abc", "float"), ("alpha", True, "float")):
        with pytest.raises(ConfigError, match=rf"hyperparameter '{key}' of model 'm': expected {kind}"):
            make_config(Cfg, "m", {key: value})


@pytest.mark.parametrize("name", MODELS)
def test_a_device_or_bf16_option_that_cannot_work_is_a_config_error(name: str) -> None:
    import torch

    x_train, _, _ = easy_split("tabular" if "tabular" in DETECTORS.get(name).input_kinds else "image",
                               side=DETECTORS.get(name).preferred_image_size)
    det = create_detector(name, **tiny(name))
    with pytest.raises(ConfigError, match=r"device 'gpu0': expected auto, cpu, cuda or cuda:N"):
        det.fit_epochs(x_train, device="gpu0")
    with pytest.raises(ConfigError, match=r"bf16 must be true or false, got 'false'"):
        det.fit_epochs(x_train, bf16="false")  # (a string: bool("false") would have turned bf16 on)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"device 'cuda' was asked for but torch sees no CUDA device"):
            det.fit_epochs(x_train, device="cuda")
    assert det.input_shape is None  # refused before anything was recorded


@dataclasses.dataclass
class _WalkConfig(DetectorConfig):
    epochs: int = 3
    lr: float = 0.1


class _Walk(Detector[_WalkConfig]):
    """An iterative detector with a hand-written loop (no GANDetector): a centre walked towards the data by
    SGD; the score is the squared distance to it. ``honours_resume`` / ``extra_epochs``: the two ways such a
    loop can break the resume contract."""

    name = "walk-for-test"
    family = "baseline"
    input_kinds = ("tabular",)
    is_iterative = True
    uses_accelerator = False
    honours_resume = True
    extra_epochs = 0

    def _train(self, x: np.ndarray, seed: int, resume: Any) -> Any:
        gen = torch.Generator().manual_seed(seed)
        data = torch.as_tensor(x)
        self.center = torch.zeros(x.shape[1])
        follow = resume is not None and self.honours_resume
        if follow:
            self.load_state(resume["state"])
        self.center.requires_grad_(True)
        opt = torch.optim.SGD([self.center], lr=self.config.lr)
        done = self._resume(resume, {"sgd": opt}, gen) if follow else 0
        for epoch in range(done + 1, self.n_epochs + 1 + self.extra_epochs):
            opt.zero_grad()
            loss = ((data - self.center) ** 2).sum(1).mean()
            loss.backward()
            opt.step()
            self.track_progress(epoch, {"sgd": opt}, gen)
            yield {"loss": loss.detach()}

    def score(self, x: np.ndarray) -> np.ndarray:
        x = self.check_input(x)
        return ((torch.as_tensor(x) - self.center.detach()) ** 2).sum(1).double().numpy()

    def state(self) -> dict[str, Any]:
        return {"center": self.center.detach().clone()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.center = state["center"].clone()


def _walk_after_one_epoch(x: np.ndarray) -> dict[str, Any]:
    first = _Walk(epochs=3)
    epochs = first.fit_epochs(x, seed=1)
    next(epochs)
    return copy.deepcopy(first.training_state())


def test_a_hand_written_loop_that_follows_resume_continues_exactly() -> None:
    x = np.random.default_rng(0).normal(2.0, 1.0, size=(64, 4)).astype(np.float32)
    whole = _Walk(epochs=3).fit(x, seed=1)
    resumed = _Walk(epochs=3)
    rest = list(resumed.fit_epochs(x, seed=1, resume=_walk_after_one_epoch(x)))
    assert len(rest) == 2
    np.testing.assert_array_equal(resumed.score(x), whole.score(x))


def test_a_hand_written_loop_that_ignores_resume_is_refused_not_trained_again() -> None:
    """It would train from scratch, its epochs counted after the saved one: 4 epochs for epochs=3."""
    x = np.random.default_rng(0).normal(2.0, 1.0, size=(64, 4)).astype(np.float32)
    deaf = _Walk(epochs=3)
    deaf.honours_resume = False
    epochs = deaf.fit_epochs(x, seed=1, resume=_walk_after_one_epoch(x))
    with pytest.raises(ContractError, match=r"walk-for-test: its training loop yielded epoch 1 where "
                                            r"epoch 2 was next \(it was resumed: _train must continue from"):
        next(epochs)


def test_a_hand_written_loop_yielding_more_epochs_than_asked_is_refused() -> None:
    x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    eager = _Walk(epochs=2)
    eager.extra_epochs = 1
    with pytest.raises(ContractError, match=r"walk-for-test: its training loop yielded epoch 3 of 2 \(config "
                                            r"epochs\)"):
        eager.fit(x)
