"""GANomaly: learning on easy synthetic data, both encoders training, divergence, bf16, score definition.

The shared contract (save/load, batch independence, input checks) is in ``test_detector_contract.py``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from test_detector_contract import easy_split

from adgan.errors import ConfigError, DivergedError
from adgan.models import create_detector
from adgan.models import ganomaly as ganomaly_mod
from adgan.models.gan import bf16_is_native, seed_everything
from adgan.models.ganomaly import Ganomaly
from adgan.models.nets import WholeMapConv2d, WholeMapConvTranspose2d

TINY = Ganomaly.tiny_config()
LOSS_KEYS = {"loss_d", "loss_g", "loss_adv", "loss_con", "loss_enc"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**overrides: Any) -> Ganomaly:
    det = create_detector("ganomaly", **{**TINY, **overrides})
    assert isinstance(det, Ganomaly)
    return det


def auroc(det: Ganomaly, x: np.ndarray, y: np.ndarray) -> float:
    return float(roc_auc_score(y, det.score(x)))


@pytest.mark.parametrize("loss_case", ["fm", "bce"])
def test_learns_easy_rgb_images_in_two_epochs(loss_case: str) -> None:
    x_train, x_test, y_test = easy_split("image", side=32, channels=3)
    det = tiny(loss_case=loss_case)
    records = list(det.fit_epochs(x_train, seed=0))
    assert len(records) == 2
    assert all(set(r) == LOSS_KEYS for r in records)
    # The reconstruction improves: the generator is really trained.
    assert records[1]["loss_con"] < records[0]["loss_con"]
    assert auroc(det, x_test, y_test) > 0.9


@pytest.mark.parametrize("loss_case", ["fm", "bce"])
def test_learns_easy_tabular_data(loss_case: str) -> None:
    x_train, x_test, y_test = easy_split("tabular")
    det = tiny(loss_case=loss_case).fit(x_train, seed=0)
    assert auroc(det, x_test, y_test) > 0.9


def test_bf16_training_learns_28x28_grey_images() -> None:
    # bf16 autocast and the 28x28 networks in one run (bf16 is slow on CPUs without native bf16 maths).
    x_train, x_test, y_test = easy_split("image", side=28, channels=1)
    det = tiny()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = list(det.fit_epochs(x_train, seed=1, bf16=True))
    slow_warning = any("bf16" in str(w.message) for w in caught)
    assert slow_warning == (not bf16_is_native(torch.device("cpu")))
    assert det.bf16 and len(records) == 2
    assert det.nets["GE"](torch.zeros(2, 1, 28, 28)).shape == (2, TINY["latent_dim"])
    # Autocast keeps the weights in float32; scores are float32 maths returned as float64.
    assert all(p.dtype == torch.float32 for net in det.nets.values() for p in net.parameters())
    assert auroc(det, x_test, y_test) > 0.9


def test_both_encoders_and_all_networks_receive_gradients_and_change() -> None:
    # The seed toolbox's GANomaly never trained one encoder; here every parameter must move.
    x_train, _, _ = easy_split("image", side=32, channels=1, n_train=64)
    det = tiny(epochs=1).fit(x_train, seed=3)
    init = tiny()
    init._set_input(x_train, "cpu", False)
    seed_everything(3)
    init._build()  # the same initial weights as det's (same seed, same construction order)
    for key, net, net0 in zip(("GE", "GD", "E", "D"), det.nets.values(), init.nets.values(), strict=True):
        for (pname, p), p0 in zip(net.named_parameters(), net0.parameters(), strict=True):
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{key}.{pname} got no gradient"
            assert not torch.equal(p.detach(), p0.detach()), f"{key}.{pname} did not change"


def test_score_is_the_mean_squared_latent_distance_in_eval_mode() -> None:
    x_train, x_test, _ = easy_split("image", side=32, channels=1, n_train=128)
    det = tiny(epochs=1).fit(x_train)
    GE, GD, E, _ = det.nets.values()
    with torch.no_grad():
        xb = torch.from_numpy(x_test[:16])
        z = GE(xb)
        expected = (z - E(GD(z))).pow(2).mean(dim=1).double().numpy()
    np.testing.assert_allclose(det.score(x_test[:16]), expected, rtol=1e-5, atol=1e-9)
    assert not any(net.training for net in det.nets.values())


def test_eval_mode_matches_train_mode_after_batchnorm_recalibration() -> None:
    # Running statistics lag fast-moving weights; without recalibration eval-mode latents of this run
    # are ~6x smaller than train-mode ones and the anomaly scores invert.
    x_train, _, _ = easy_split("image", side=32, channels=1, n_train=256)
    det = tiny().fit(x_train, seed=0)
    GE = det.nets["GE"]
    x = torch.from_numpy(x_train).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        z_eval = GE(x)
        GE.train()
        z_train = GE(x)  # batch statistics of all the training data
        GE.eval()
    rel = (z_eval - z_train).norm() / z_train.norm()
    assert rel < 0.1, f"eval-mode latents differ from train-mode ones by {rel:.2f}"


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_whole_map_layers_equal_the_convolutions_they_replace(memory_format: torch.memory_format) -> None:
    torch.manual_seed(0)
    for bias in (False, True):
        conv = WholeMapConv2d(32, 10, 4, 1, 0, bias=bias).to(memory_format=memory_format)
        ref = torch.nn.Conv2d(32, 10, 4, 1, 0, bias=bias)
        ref.load_state_dict(conv.state_dict())
        x = torch.randn(5, 32, 4, 4).contiguous(memory_format=memory_format)
        torch.testing.assert_close(conv(x), ref(x), rtol=1e-5, atol=1e-5)
        assert conv(torch.randn(2, 32, 6, 6)).shape == (2, 10, 3, 3)  # other sizes: the convolution
        up = WholeMapConvTranspose2d(10, 32, 4, 1, 0, bias=bias).to(memory_format=memory_format)
        ref_up = torch.nn.ConvTranspose2d(10, 32, 4, 1, 0, bias=bias)
        ref_up.load_state_dict(up.state_dict())
        z = torch.randn(5, 10, 1, 1, requires_grad=True)
        out, out_ref = up(z), ref_up(z)
        torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-5)
        grad = torch.randn_like(out)
        (g,) = torch.autograd.grad(out, z, grad)
        (g_ref,) = torch.autograd.grad(out_ref, z, grad)
        torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-5)


def test_scoring_between_epochs_does_not_change_training() -> None:
    x_train, x_test, _ = easy_split("image", side=32, channels=1, n_train=128)
    plain = tiny(epochs=3).fit(x_train, seed=5)
    watched = tiny(epochs=3)
    mid_scores = []
    for _ in watched.fit_epochs(x_train, seed=5):
        mid_scores.append(watched.score(x_test))  # what adgan.train does for validation
    assert all(np.isfinite(s).all() for s in mid_scores)
    assert not np.array_equal(mid_scores[0], mid_scores[-1])
    np.testing.assert_array_equal(watched.score(x_test), plain.score(x_test))
    np.testing.assert_array_equal(mid_scores[-1], plain.score(x_test))


def test_same_seed_same_scores_other_seed_other_scores() -> None:
    x_train, x_test, _ = easy_split("tabular", n_train=256)
    a = tiny().fit(x_train, seed=7).score(x_test)
    b = tiny().fit(x_train, seed=7).score(x_test)
    c = tiny().fit(x_train, seed=8).score(x_test)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("kind", ["image", "tabular"])
def test_huge_learning_rate_raises_diverged_error(kind: str) -> None:
    x_train, _, _ = easy_split(kind, side=32, n_train=128)
    det = tiny(lr=1e30, epochs=3)  # finite (inf is refused) but far too large
    with pytest.raises(DivergedError, match=r"ganomaly: training diverged in epoch 1 \(loss_"):
        det.fit(x_train)


def test_discriminator_is_reinitialised_when_its_loss_collapses(monkeypatch: pytest.MonkeyPatch) -> None:
    # Force the collapse test to fire on every step: D is re-initialised each time and training goes on.
    monkeypatch.setattr(ganomaly_mod, "D_COLLAPSE", float("inf"))
    x_train, _, _ = easy_split("tabular", n_train=128)
    det = tiny(epochs=2, batch_size=32)
    records = list(det.fit_epochs(x_train))
    assert det.d_reinits == 2 * (128 // 32)
    assert all(np.isfinite(list(r.values())).all() for r in records)
    monkeypatch.setattr(ganomaly_mod, "D_COLLAPSE", 1e-5)
    assert tiny(epochs=1).fit(x_train).d_reinits == 0


def test_hyperparameters_are_validated_and_networks_built_only_by_fit() -> None:
    det = create_detector("ganomaly", lr="1e-3", epochs="3", w_con=10)
    assert det.config.lr == 1e-3 and det.config.epochs == 3 and det.config.w_con == 10.0
    assert det.config.loss_case == "fm" and Ganomaly.preferred_image_size == 32
    assert isinstance(det, Ganomaly) and not det.nets
    bad_values = ({"w_con": -1.0}, {"batch_size": 0}, {"latent_dim": -1}, {"epochs": 1.5},
                  {"lr": float("inf")})
    for bad in bad_values:
        with pytest.raises(ConfigError, match=next(iter(bad))):
            create_detector("ganomaly", **bad)
