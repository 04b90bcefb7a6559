"""EGBAD / BiGAN: every loss case learns an easy anomaly, residual gradients, divergence, tabular input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from easy_data import images

from adgan.errors import ConfigError, DivergedError
from adgan.metrics import auroc
from adgan.models import create_detector
from adgan.models.egbad import EGBAD, TRAIN_CASES, build_nets, generator_encoder_losses, parse_case


def gaussian_rows(n_normal: int, n_anomaly: int, seed: int, dim: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Tabular rows: normals N(0, 1), anomalies N(0, 1) shifted by 4 along every other feature."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_normal + n_anomaly, dim)).astype(np.float32)
    x[n_normal:, ::2] += 4.0
    return x, np.r_[np.zeros(n_normal, np.int64), np.ones(n_anomaly, np.int64)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


X_TRAIN, _ = images(512, 0, seed=1)
X_TEST, Y_TEST = images(150, 50, seed=2)


def tiny(**overrides: object) -> EGBAD:
    return create_detector("egbad", **{**EGBAD.tiny_config(), **overrides})  # type: ignore[return-value]


@pytest.fixture(scope="module")
def trained() -> dict[str, EGBAD]:
    """One detector per training case (2 epochs); the score case only changes ``score``."""
    return {t: tiny(loss_case=f"{t}-bce").fit(X_TRAIN, seed=0) for t in TRAIN_CASES}


@pytest.mark.parametrize("loss_case", EGBAD.loss_cases)
def test_every_loss_case_learns_easy_anomalies(trained: dict[str, EGBAD], loss_case: str) -> None:
    train_case, _, _ = loss_case.rpartition("-")
    det = trained[train_case]
    det.config = dataclasses.replace(det.config, loss_case=loss_case)  # same nets, scored with this L_D
    scores = det.score(X_TEST)
    assert scores.shape == (200,) and scores.dtype == np.float64
    assert auroc(Y_TEST, scores) > 0.9


def test_untrained_model_is_at_chance() -> None:
    """The easy dataset is not trivially solved by random networks (the AUROC test above can fail)."""
    det = tiny(epochs=0).fit(X_TRAIN)
    assert abs(auroc(Y_TEST, det.score(X_TEST)) - 0.5) < 0.15


def test_tabular_input_learns() -> None:
    x_train, _ = gaussian_rows(512, 0, seed=3)
    x_test, y_test = gaussian_rows(150, 50, seed=4)
    det = tiny(loss_case="fm+res-fm", epochs=3).fit(x_train, seed=0)
    assert auroc(y_test, det.score(x_test)) > 0.9


def test_scores_do_not_depend_on_batch_composition(trained: dict[str, EGBAD]) -> None:
    det = trained["bce+res"]
    full = det.score(X_TEST)
    perm = np.random.default_rng(0).permutation(len(X_TEST))
    np.testing.assert_allclose(det.score(X_TEST[perm]), full[perm], rtol=1e-5)
    np.testing.assert_allclose(det.score(X_TEST[7:8]), full[7:8], rtol=1e-5)


def test_residual_loss_trains_the_encoder_only() -> None:
    enc, gen, disc = build_nets((1, 28, 28), 16, 8)
    x = torch.as_tensor(X_TRAIN[:16])
    z = torch.randn(16, 16)
    losses = generator_encoder_losses(enc, gen, disc, x, z, "bce", residual=True)
    enc_grads = torch.autograd.grad(losses["res"], list(enc.parameters()), retain_graph=True)
    assert sum(float(g.abs().sum()) for g in enc_grads) > 0
    gen_grads = torch.autograd.grad(losses["res"], list(gen.parameters()), allow_unused=True)
    assert all(g is None for g in gen_grads)
    assert all(p.requires_grad for p in gen.parameters())  # G is trainable again afterwards


def test_nan_in_training_raises_diverged() -> None:
    det = tiny()
    epochs = det.fit_epochs(X_TRAIN[:128], seed=0)
    next(epochs)
    with torch.no_grad():
        next(det.nets["enc"].parameters()).fill_(float("nan"))
    with pytest.raises(DivergedError, match="egbad: training diverged in epoch 2"):
        next(epochs)


def test_save_load_gives_identical_scores(trained: dict[str, EGBAD], tmp_path: Path) -> None:
    det = trained["fm+res"]
    det.save(tmp_path / "egbad")
    loaded = EGBAD.load(tmp_path / "egbad")
    np.testing.assert_array_equal(loaded.score(X_TEST[:20]), det.score(X_TEST[:20]))


def test_parse_case_and_bad_case() -> None:
    assert parse_case("fm+res-bce") == ("fm", True, "bce")
    assert parse_case("bce-fm") == ("bce", False, "fm")
    with pytest.raises(ConfigError, match="loss_case 'fm-mse'"):
        create_detector("egbad", loss_case="fm-mse")
