"""The CUDA path, on a real GPU (issue 15). Every test here is marked ``gpu`` and skips where torch sees no
CUDA device, so the suite passes unchanged on CPU-only machines and CI; ``pytest -m gpu tests/test_gpu.py``
runs them where a GPU is (``benchmarks/gpu_check.sh`` does, with the rest of the GPU check).

What is checked, for every registered detector (``list_detectors()``, with its ``tiny_config()``) on the
easy synthetic data of the contract tests (``easy_split``), images and tables:

- training two epochs on CUDA learns what training on the CPU learns, and the model lives on the GPU;
- the same (CPU-trained) weights score the same on CUDA as on the CPU;
- bf16 autocast on CUDA trains without NaN and still separates the easy anomalies;
- a detector trained and saved on the GPU loads on the CPU (and back on the GPU) with the same scores;
- a sweep trial given a GPU share trains on CUDA with as many torch threads as its CPUs (needs Ray).

Tolerances, and why these comparisons. Both devices start from identical weights (networks are built and
initialised on the CPU with the fit seed, then moved) and see identical minibatches and noise (drawn from a
CPU generator), so only rounding differs: cuDNN/cuBLAS against oneDNN/MKL kernels, other summation orders.
Adversarial training amplifies rounding: measured on the CPU (2026-12-01, tiny configs, two epochs, inputs
perturbed by a relative 1e-6, i.e. rounding-sized), GANomaly's image scores were reordered (Spearman 0.85-0.91
against the unperturbed run; on synthetic-images single scores moved by up to 230%) and its first-epoch losses
moved by 13%, while AUROC on the easy data stayed within 0.001 for every GAN. A score-by-score or loss-by-loss
tolerance on separately trained models would therefore be arbitrary; what must agree is what a detector is
for: AUROC on the easy data (> 0.8, the contract tests' bar, and within 0.05 of the CPU-trained model's; the
1e-6 perturbation moved it by <= 0.001, another seed by <= 0.01). The strict numeric check is on fixed
weights: scoring the same weights on CUDA and on the CPU must agree within rtol 1e-3, about 1000x the score
change the same input perturbation causes (<= 6e-6), with TF32 off as ``models.base.torch_device`` sets it
(TF32 rounds convolution inputs to 10-bit mantissas, i.e. relative errors near 1e-3, which this bar is not
meant to absorb).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from test_detector_contract import easy_split, tiny

from adgan.models import Detector, create_detector, list_detectors
from adgan.models.base import DETECTORS

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU tests need one"),
]

ROOT = Path(__file__).resolve().parent.parent
MODELS = list_detectors()
GANS = [m for m in MODELS if DETECTORS.get(m).is_iterative and DETECTORS.get(m).uses_accelerator]
KINDS = ("image", "tabular")
AUROC_MIN = 0.8  # the contract tests' bar on the same data
AUROC_GAP = 0.05  # CUDA-trained against CPU-trained
SCORE_RTOL = 1e-3  # the same weights scored on CUDA and on the CPU (fp32, TF32 off)


@pytest.fixture(scope="module", autouse=True)
def _fp32_on_cuda(one_torch_thread: None) -> Iterator[None]:
    """Full fp32 on CUDA, as ``models.base.torch_device`` sets it per run (TF32 off), restored after;
    one CPU thread for the CPU references (tiny networks, see ``one_torch_thread``)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    _FITTED.clear()


_FITTED: dict[tuple[str, str, str, bool], tuple[Detector, list[dict[str, float]]]] = {}


def data(name: str, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cls = DETECTORS.get(name)
    if kind not in cls.input_kinds:
        pytest.skip(f"{name} does not take {kind} input")
    return easy_split(kind, side=cls.preferred_image_size)


def fitted(name: str, kind: str, device: str, bf16: bool = False) -> tuple[Detector, list[dict[str, float]]]:
    """``name`` trained (tiny config, seed 0) on ``device``, and its per-epoch losses; cached per module."""
    key = (name, kind, device, bf16)
    if key not in _FITTED:
        x_train, _, _ = data(name, kind)
        det = create_detector(name, **tiny(name))
        records = list(det.fit_epochs(x_train, seed=0, device=device, bf16=bf16))
        _FITTED[key] = det, records
    return _FITTED[key]


def tensors(obj: Any) -> list[torch.Tensor]:
    """Every tensor in a (nested) ``state()``."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in tensors(v)]
    if isinstance(obj, list | tuple):
        return [t for v in obj for t in tensors(v)]
    return []


def auroc(y: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(y, scores))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", MODELS)
def test_training_on_cuda_learns_what_training_on_the_cpu_learns(name: str, kind: str) -> None:
    _, x_test, y_test = data(name, kind)
    gpu, gpu_records = fitted(name, kind, "cuda")
    cpu, _ = fitted(name, kind, "cpu")
    assert gpu.device.type == "cuda"
    if DETECTORS.get(name).uses_accelerator:
        # The networks' weights (nearly all of the state; a small extra such as AnoGAN's search start may
        # be kept on the CPU) must live on the GPU.
        weights = [t for t in tensors(gpu.state()) if t.is_floating_point()]
        on_gpu = sum(t.numel() for t in weights if t.is_cuda)
        assert on_gpu >= 0.9 * sum(t.numel() for t in weights), f"{name}: weights not on the GPU"
    assert len(gpu_records) == gpu.n_epochs
    assert all(math.isfinite(v) for rec in gpu_records for v in rec.values()), gpu_records
    s_gpu, s_cpu = gpu.score(x_test), cpu.score(x_test)
    assert s_gpu.dtype == np.float64 and s_gpu.shape == (len(x_test),) and np.isfinite(s_gpu).all()
    if not DETECTORS.get(name).uses_accelerator:
        # CPU baselines compute the same arithmetic whatever the device (knn only shortlists neighbours
        # there and recomputes the exact distances on the CPU): the scores must agree to rounding.
        np.testing.assert_allclose(s_gpu, s_cpu, rtol=1e-6, atol=1e-9)
        return
    a_gpu, a_cpu = auroc(y_test, s_gpu), auroc(y_test, s_cpu)
    assert a_gpu > AUROC_MIN, f"{name} trained on CUDA, easy {kind} data: AUROC {a_gpu:.3f}"
    assert abs(a_gpu - a_cpu) <= AUROC_GAP, f"{name} {kind}: AUROC CUDA {a_gpu:.3f} vs CPU {a_cpu:.3f}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", MODELS)
def test_the_same_weights_score_the_same_on_cuda_and_cpu(name: str, kind: str, tmp_path: Path) -> None:
    _, x_test, _ = data(name, kind)
    cpu, _ = fitted(name, kind, "cpu")
    path = cpu.save(tmp_path / "cpu-trained")
    on_gpu = Detector.load(path, device="cuda")
    assert on_gpu.device.type == "cuda"
    np.testing.assert_allclose(on_gpu.score(x_test), cpu.score(x_test), rtol=SCORE_RTOL, atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", GANS)
def test_bf16_autocast_on_cuda_trains_without_nan(name: str, kind: str) -> None:
    _, x_test, y_test = data(name, kind)
    det, records = fitted(name, kind, "cuda", bf16=True)  # a NaN loss would raise DivergedError here
    assert det.bf16 and len(records) == det.n_epochs
    assert all(math.isfinite(v) for rec in records for v in rec.values()), records
    scores = det.score(x_test)
    assert np.isfinite(scores).all()
    # The flag reached the training: bf16 rounding gives other weights than fp32 training does.
    fp32, _ = fitted(name, kind, "cuda")
    assert not np.array_equal(scores, fp32.score(x_test)), f"{name}: bf16=True trained exactly as fp32"
    assert auroc(y_test, scores) > AUROC_MIN, f"{name} bf16 on CUDA, easy {kind}: AUROC too low"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", MODELS)
def test_saved_on_the_gpu_loads_on_the_cpu_with_the_same_scores(name: str, kind: str, tmp_path: Path) -> None:
    _, x_test, _ = data(name, kind)
    gpu, _ = fitted(name, kind, "cuda")
    expected = gpu.score(x_test)
    path = gpu.save(tmp_path / "gpu-trained")
    on_cpu = Detector.load(path)  # device "cpu": the checkpoint must not need a GPU
    assert on_cpu.device.type == "cpu"
    assert not any(t.is_cuda for t in tensors(on_cpu.state())), f"{name}: CUDA tensors after loading on CPU"
    np.testing.assert_allclose(on_cpu.score(x_test), expected, rtol=SCORE_RTOL, atol=1e-9)
    # Back on the GPU: the same kernels on the same weights (AnoGAN's search differentiates through cuDNN,
    # whose backward kernels need not be bitwise deterministic, hence a tolerance rather than equality).
    again = Detector.load(path, device="cuda")
    np.testing.assert_allclose(again.score(x_test), expected, rtol=1e-5, atol=1e-9)


def test_a_trial_given_a_gpu_share_trains_on_cuda_with_its_cpus_as_threads(tmp_path: Path) -> None:
    """A real (tiny) sweep through the CLI with ``--gpu 0.25`` and 2 CPUs per trial.

    A trial whose config says ``device: cuda`` completes only if torch saw CUDA in the trial's worker
    (``adgan.models.base.torch_device`` refuses CUDA otherwise and the trial would be ``errored``), and
    ``adgan.train`` sets the worker's torch threads to the config's ``threads``; both are read back
    from ``trials.parquet``, where every trial's full config is recorded.
    """
    pytest.importorskip("ray", reason="the sweep test needs Ray")
    pytest.importorskip("optuna", reason="the sweep test needs Optuna")
    import pyarrow.parquet as pq

    spec = tmp_path / "gpu-share.yaml"
    spec.write_text(textwrap.dedent("""\
        name: gpu-share
        dataset: {name: synthetic-images, options: {max_train: 256}}
        classes: [0]
        seeds: [0]
        models:
          ganomaly:
            loss_cases: [fm]
            fixed: {base_filters: 8, latent_dim: 16, batch_size: 64}
            search:
              lr: {type: loguniform, low: 1.0e-4, high: 2.0e-3}
        budget: {trials_per_group: 2, max_epochs: 1, grace_period: 1, reduction_factor: 2}
        resources: {cpus: 2, gpu: 0}
        results: results
        wandb: {project: adgan-gpu-test}
        """))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "WANDB_"))}
    env.update({
        "RAY_AUTH_TOKEN_PATH": str(tmp_path / "ray_token"),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    })
    cmd = [sys.executable, "-m", "adgan.cli", "sweep", str(spec), "--results", str(tmp_path / "results"),
           "--no-wandb", "--gpu", "0.25", "--cpus", "4", "--progress-every", "5"]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = tmp_path / "results" / "gpu-share"
    assert json.loads((out / "spec.json").read_text())["effective_resources"] == {"cpus": 2.0, "gpu": 0.25}
    trials = pq.read_table(out / "trials.parquet").to_pylist()
    assert len(trials) == 2
    for row in trials:
        config = json.loads(row["config"]) if isinstance(row["config"], str) else row["config"]
        assert row["status"] == "completed", row["message"]
        assert config["device"] == "cuda", config
        assert int(config["threads"]) == 2, config
