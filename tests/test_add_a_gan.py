"""Adding a GAN is one class: a tiny fourth GAN, defined and registered here and nowhere else, is trained,
swept (the smoke spec's sweep, its trials on Ray workers), reported and classified as a GAN.

The class gives only what a GAN must (``adgan.models.gan.GANDetector``): its networks, its optimisers, one
training step and a per-sample score. The sweep finds it through the spec's ``plugins`` list, which names
this file: every process (driver and Ray workers) imports it and registers the class.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from adgan import plugins
from adgan.models import DETECTORS, create_detector, list_detectors, register_detector
from adgan.models.gan import GANDetector
from adgan.models.nets import ImageDecoder, ImageEncoder, MLPDiscriminator, bce, dcgan_init, mlp

ROOT = Path(__file__).resolve().parent.parent


class ReconGAN(GANDetector):
    """An autoencoder whose reconstructions a discriminator judges; score = squared reconstruction error."""

    name: ClassVar[str] = "recongan"
    loss_cases: ClassVar[tuple[str, ...]] = ("bce",)
    auto_latent: ClassVar[dict[str, int]] = {"image": 16, "tabular": 8}

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        return {"base_filters": 8, "epochs": 2, "batch_size": 32, "lr": 1e-3}

    def build_networks(self) -> dict[str, nn.Module]:
        assert self.input_shape is not None
        latent, width = self.latent_size(), self.config.base_filters
        if self.is_image:
            nets: dict[str, nn.Module] = {"enc": ImageEncoder(self.input_shape, latent, width),
                                          "dec": ImageDecoder(latent, self.input_shape, width),
                                          "disc": ImageEncoder(self.input_shape, 1, width)}
        else:
            dim = self.input_shape[0]
            nets = {"enc": mlp([dim, width, latent]), "dec": mlp([latent, width, dim]),
                    "disc": MLPDiscriminator(dim, [width])}
        for net in nets.values():
            net.apply(dcgan_init)
        return nets

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        ae = [*self.nets["enc"].parameters(), *self.nets["dec"].parameters()]
        return {"ae": self.adam(ae), "d": self.adam(self.nets["disc"].parameters())}

    def train_step(self, xb: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        recon = self.nets["dec"](self.nets["enc"](xb))
        loss_d = bce(self.nets["disc"](xb), True) + bce(self.nets["disc"](recon.detach()), False)
        self.optimizers["d"].zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizers["d"].step()
        loss_ae = (recon - xb).pow(2).mean() + 0.01 * bce(self.nets["disc"](recon), True)
        self.optimizers["ae"].zero_grad(set_to_none=True)
        loss_ae.backward()
        self.optimizers["ae"].step()
        return {"d": loss_d, "ae": loss_ae}

    def score_batch(self, xb: torch.Tensor) -> torch.Tensor:
        return (self.nets["dec"](self.nets["enc"](xb)) - xb).pow(2).flatten(1).mean(1)


# Imported as a plugin (by a sweep's driver and trials) the module registers its detector itself; under
# pytest the fixture below registers it for the tests' duration only.
if __name__.startswith(plugins.MODULE_PREFIX):
    register_detector(ReconGAN)


@pytest.fixture
def registered() -> Iterator[None]:
    register_detector(ReconGAN)
    try:
        yield
    finally:
        DETECTORS.unregister(ReconGAN.name)


@pytest.mark.usefixtures("registered", "one_torch_thread")
def test_registered_trained_and_scored() -> None:
    from adgan.train import train

    assert "recongan" in list_detectors("gan")
    det = create_detector("recongan", epochs=1)
    assert det.config.lr == 2e-4 and det.config.latent_dim == 0  # the shared GAN vocabulary
    config = {"model": "recongan", "dataset": "synthetic-images", "max_train": 256, **ReconGAN.tiny_config()}
    records = list(train(config))
    assert [r["epoch"] for r in records[:-1]] == [1, 2] and records[-1]["status"] == "completed"
    assert 0.0 <= records[-1]["test_auprc"] <= 1.0


@pytest.mark.slow
@pytest.mark.usefixtures("registered")
def test_swept_reported_and_classified_as_a_gan(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())
    raw["plugins"] = [str(Path(__file__).resolve())]
    # A second plugin through ADGAN_PLUGINS, as `adgan train` takes one: the driver loads it to check the
    # spec, and the trials must too (they did not: every trial of its model failed, the sweep exited 0).
    # It also reads a file by a path relative to the directory the sweep runs from (as a plugin registering
    # a dataset by a relative path does): the trials import it from there too, not from Tune's trial folder.
    (tmp_path / "marker.txt").write_text("here")
    (tmp_path / "envplug.py").write_text(
        "from pathlib import Path\n\nfrom adgan.models import register_detector\n"
        "from adgan.models.baselines import KNN\n\nassert Path('marker.txt').read_text() == 'here'\n\n\n"
        "@register_detector\nclass EnvKNN(KNN):\n    name = 'envknn'\n")
    raw["models"] = {"recongan": {"fixed": {"base_filters": 8, "batch_size": 64},
                                  "search": {"lr": {"type": "loguniform", "low": 1e-4, "high": 3e-3}}},
                     "knn": raw["models"]["knn"], "envknn": {}}
    raw["budget"] = {**raw["budget"], "trials_per_group": 2}
    spec = tmp_path / "fourth.yaml"
    spec.write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "WANDB_"))}
    env.update({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "ray_token"), "PYTHONPATH": str(ROOT),
                "ADGAN_HOME": str(tmp_path / "adgan-home"), "ADGAN_PLUGINS": str(tmp_path / "envplug.py")})
    run = subprocess.run([sys.executable, "-m", "adgan.cli", "sweep", str(spec), "--results", str(tmp_path),
                          "--cpus", "2", "--no-wandb"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    from adgan.report import build_report
    from adgan.sweep.results import read_table

    out = tmp_path / "smoke"
    trials = read_table(out, "trials")
    mine = [t for t in trials if t["model"] == "recongan"]
    assert len(mine) == 2 and all(t["status"] in ("completed", "stopped early") for t in mine)
    assert {t["family"] for t in mine} == {"gan"}  # classified by the class's declared family
    (env_trial,) = [t for t in trials if t["model"] == "envknn"]
    assert env_trial["status"] == "completed" and env_trial["family"] == "baseline", env_trial["message"]
    best = {b["model"]: b for b in read_table(out, "best")}
    assert best["recongan"]["family"] == "gan" and np.isfinite(best["recongan"]["test_auprc"])
    assert "recongan" in run.stdout  # adgan sweep's closing tables
    html = build_report(out, tmp_path / "report").html.read_text()
    assert "recongan (gan)" in html  # the report's overview lists the models with their family
    assert "mnist" not in json.dumps(best["recongan"]["config"])
