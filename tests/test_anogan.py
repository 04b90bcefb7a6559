"""AnoGAN: both loss cases learn an easy anomaly; the batched latent search equals the per-input one."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from easy_data import images

from adgan.errors import DivergedError
from adgan.metrics import auroc
from adgan.models import create_detector
from adgan.models.anogan import AnoGAN

pytestmark = pytest.mark.usefixtures("one_torch_thread")


X_TRAIN, _ = images(512, 0, seed=1)
X_TEST, Y_TEST = images(150, 50, seed=2)


def tiny(**overrides: object) -> AnoGAN:
    return create_detector("anogan", **{**AnoGAN.tiny_config(), **overrides})  # type: ignore[return-value]


def with_config(det: AnoGAN, **changes: object) -> AnoGAN:
    """A copy sharing the trained networks, with other scoring settings (loss case, search sizes); the
    module's fixture itself is never changed, so tests do not depend on each other's order."""
    other = copy.copy(det)
    other.config = dataclasses.replace(det.config, **changes)
    return other


@pytest.fixture(scope="module")
def trained() -> AnoGAN:
    """Training does not depend on the loss case (only the search does): train once, 2 epochs."""
    return tiny(gamma_steps=20).fit(X_TRAIN, seed=0)


@pytest.mark.parametrize("loss_case", AnoGAN.loss_cases)
def test_both_loss_cases_learn_easy_anomalies(trained: AnoGAN, loss_case: str) -> None:
    scores = with_config(trained, loss_case=loss_case).score(X_TEST)
    assert scores.shape == (200,) and scores.dtype == np.float64
    assert auroc(Y_TEST, scores) > 0.9


def test_untrained_model_is_at_chance() -> None:
    det = tiny(epochs=0).fit(X_TRAIN)
    assert abs(auroc(Y_TEST, det.score(X_TEST)) - 0.5) < 0.15


@pytest.mark.parametrize("loss_case", AnoGAN.loss_cases)
def test_batched_search_equals_one_at_a_time(trained: AnoGAN, loss_case: str) -> None:
    det = with_config(trained, loss_case=loss_case, gamma_steps=20, search_batch_size=1024)
    x = X_TEST[::45]  # 5 inputs: 4 normals, 1 anomaly
    batched = det.score(x)
    single = np.array([det.score(x[i : i + 1])[0] for i in range(len(x))])
    np.testing.assert_allclose(batched, single, rtol=1e-4)
    chunked = with_config(det, search_batch_size=2).score(x)  # chunks of 2, 2 and 1
    np.testing.assert_allclose(chunked, batched, rtol=1e-4)


def test_search_lowers_the_loss(trained: AnoGAN) -> None:
    det = with_config(trained, loss_case="fm")
    start = det.score(X_TEST[:20], gamma_steps=0)  # the loss at the shared initial z0
    found = det.score(X_TEST[:20], gamma_steps=30)
    assert np.mean(found < start) > 0.9 and found.mean() < 0.99 * start.mean()


def test_search_returns_one_z_per_input(trained: AnoGAN) -> None:
    det = with_config(trained, gamma_steps=5)
    det.nets["gen"].eval(), det.nets["disc"].eval()
    losses, z = det.search(torch.as_tensor(X_TEST[:4]))
    assert losses.shape == (4,) and z.shape == (4, 16)
    assert not torch.equal(z[0], z[1])  # each input moved its own z away from z0


def test_tabular_input_learns() -> None:
    rng = np.random.default_rng(3)
    x_train = rng.normal(size=(512, 12)).astype(np.float32)
    x_test = rng.normal(size=(200, 12)).astype(np.float32)
    y_test = np.r_[np.zeros(150, np.int64), np.ones(50, np.int64)]
    x_test[150:, ::2] += 4.0
    det = tiny(epochs=3, gamma_steps=30).fit(x_train, seed=0)
    assert auroc(y_test, det.score(x_test)) > 0.9


def test_nan_in_training_raises_diverged() -> None:
    det = tiny()
    epochs = det.fit_epochs(X_TRAIN[:128], seed=0)
    next(epochs)
    with torch.no_grad():
        next(det.nets["gen"].parameters()).fill_(float("nan"))
    with pytest.raises(DivergedError, match="anogan: training diverged in epoch 2"):
        next(epochs)


def test_save_load_gives_identical_scores(trained: AnoGAN, tmp_path: Path) -> None:
    det = with_config(trained, gamma_steps=10)
    det.save(tmp_path / "anogan")
    loaded = AnoGAN.load(tmp_path / "anogan")
    assert loaded.z0 is not None and torch.equal(loaded.z0, det.z0)  # type: ignore[arg-type]
    np.testing.assert_array_equal(loaded.score(X_TEST[:10]), det.score(X_TEST[:10]))
