"""The measurements of the GPU check (issue 15), run by ``benchmarks/gpu_check.sh``; each step runs alone too.

    python benchmarks/gpu_bench.py env    --json E.json   # GPU, driver, torch, CUDA, CPU model and flags
    python benchmarks/gpu_bench.py deps                   # carried packages whose requirements are unmet
    python benchmarks/gpu_bench.py bench  --json B.json   # throughput, AnoGAN search, GPU share, full budget
    python benchmarks/gpu_bench.py sweep  --json S.json --log sweep.log --smi-dir DIR  # --gpu 0.25 vs 1
    python benchmarks/gpu_bench.py report --json E.json B.json S.json --pytest-log L --md summary.md

``bench`` on a CUDA machine measures (every figure the median of ``--repeats`` timed epochs or calls after a
warm-up; ``torch.cuda.synchronize()`` before every clock read, so each epoch's time holds all its GPU work):

- training samples/s of GANomaly, EGBAD and AnoGAN at the default size of ``benchmarks/models.py`` (3-channel
  images of the model's preferred side, batch 64, the models' default widths) in fp32 (TF32 off, as
  ``adgan.train`` runs), with TF32 allowed, and under bf16 autocast; ``benchmarks/models.py``'s
  ``train_throughput`` does the timing, on the GPU through a wrapper that passes the device;
- AnoGAN's latent search, all inputs at once against one at a time (the method of
  ``benchmarks/anogan_search.py``, which has no device option);
- the GPU share: one process alone, then four at once (as four sweep trials with ``--gpu 0.25``), each
  training GANomaly at the default size on one CPU thread, timed after a common start (a file barrier);
- the full-budget sizes of ``sweeps/mnist.yaml --budget full`` (MNIST-shaped input): training samples/s and
  validation scoring cost, from which ``report`` estimates the GPU-hours of that sweep.

Without CUDA, ``bench`` measures only the CPU reference (GANomaly, default size, fp32, all CPUs of this
process) with the same code, and records the CPU's flags beside it.

``sweep`` runs a small real sweep (GANomaly and EGBAD at the default size on ``synthetic-images``, no ASHA
stopping) twice through the CLI, with ``--gpu 0.25`` and with ``--gpu 1``, sampling ``nvidia-smi`` for the
GPU memory of every process, and reads trials per hour and per-trial samples/s back from the Parquet files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # the working tree's adgan, also where the package is not installed
    sys.path.insert(0, str(ROOT))
GANS = ("ganomaly", "egbad", "anogan")

# CPU reference, measured with ``python benchmarks/gpu_bench.py bench --cpu-n 1280 --repeats 5`` on this
# project's development machine (no CUDA: the CPU branch of ``bench``): GANomaly at the default size, fp32,
# 2 threads, median of 5 epochs (258, 257, 241, 137, 41 samples/s; other jobs took the cores during the last
# two; load 1.5 -> 2.8). Runs under load 4-6 the same day gave medians of 33 to 192 (benchmarks/README.md).
CPU_REFERENCE = {
    "samples_per_s": 241.4,
    "date": "2026-12-01",
    "cpu": "AMD EPYC, 2 vCPUs (AVX-512 with avx512_bf16, no AMX)",
    "flags": "fma sse4_2 avx f16c avx2 avx512f avx512dq avx512ifma avx512cd avx512bw avx512vl avx512_bf16 "
             "avx512vbmi avx512_vbmi2 avx512_vnni avx512_bitalg avx512_vpopcntdq",
}

# Full MNIST under the image protocol (docs/protocol.md: 7,000 images per class on average): training
# normals and validation samples of one anomalous class.
MNIST_TRAIN, MNIST_VAL = 45_360, 6_440


# ----------------------------------------------------------------------------------------------- helpers
def _torch() -> Any:
    import torch

    return torch


def cuda_ok() -> bool:
    return bool(_torch().cuda.is_available())


def set_tf32(allowed: bool) -> None:
    torch = _torch()
    torch.backends.cudnn.allow_tf32 = allowed
    torch.backends.cuda.matmul.allow_tf32 = allowed


def sync(device: Any) -> None:
    if getattr(device, "type", device) == "cuda":
        _torch().cuda.synchronize()


def cpu_flags() -> tuple[str, str]:
    """(model name, the vector/matrix flags of /proc/cpuinfo that decide CPU training speed)."""
    model, flags = platform.processor() or platform.machine(), ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        if m := re.search(r"^model name\s*:\s*(.*)$", text, re.M):
            model = m.group(1).strip()
        if m := re.search(r"^flags\s*:\s*(.*)$", text, re.M):
            keep = ("avx", "amx", "fma", "f16c", "sse4_2")
            flags = " ".join(f for f in m.group(1).split() if f.startswith(keep))
    except OSError:
        pass
    return model, flags


def bench_models() -> Any:
    """``benchmarks/models.py`` (its directory on the path, as when it runs as a script)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import models  # benchmarks/models.py

    return models


def on_device(det: Any, device: Any, before_timing: Any = None) -> Any:
    """Make ``det.fit_epochs`` train on ``device`` and synchronise it before every yield, so that
    ``models.train_throughput`` (which calls ``fit_epochs(x, bf16=...)`` and reads the clock at each
    yield) times whole epochs of GPU work. ``before_timing`` runs once, after the warm-up epoch and before
    the clock restarts (the share measurement's barrier)."""
    fit = det.fit_epochs

    def fit_epochs(x: Any, **kwargs: Any) -> Iterator[dict[str, float]]:
        for epoch, rec in enumerate(fit(x, device=device, **kwargs)):
            sync(device)
            if epoch == 0 and before_timing is not None:
                before_timing()
            yield rec

    det.fit_epochs = fit_epochs
    return det


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def peak_mib(device: Any) -> float | None:
    torch = _torch()
    if getattr(device, "type", device) != "cuda":
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def reset_peak(device: Any) -> None:
    torch = _torch()
    if getattr(device, "type", device) == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# ------------------------------------------------------------------------------------------------- env
def cmd_env(args: argparse.Namespace) -> dict[str, Any]:
    torch = _torch()
    model, flags = cpu_flags()
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "cpu_flags": flags,
    }
    for dist in ("ray", "optuna", "wandb", "numpy", "pandas", "pyarrow", "scikit-learn", "pydantic"):
        try:
            from importlib import metadata

            info[f"version_{dist}"] = metadata.version(dist)
        except Exception:  # noqa: BLE001 (absent)
            info[f"version_{dist}"] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update({
            "gpu_name": props.name,
            "gpu_count": torch.cuda.device_count(),
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "gpu_capability": f"{props.major}.{props.minor}",
            "bf16_supported": torch.cuda.is_bf16_supported(),
        })
    if shutil.which("nvidia-smi"):
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()
        head = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
        if m := re.search(r"Driver Version:\s*([\d.]+).*?CUDA Version:\s*([\d.]+)", head):
            info["driver"], info["driver_cuda"] = m.group(1), m.group(2)
    for key, value in info.items():
        print(f"{key:18s} {value}")
    return info


# ------------------------------------------------------------------------------------------------ deps
def cmd_deps(args: argparse.Namespace) -> dict[str, Any]:
    """Requirements of the carried packages (those installed under ``--site``) that the environment does
    not meet: a missing package or a version outside the range. Only reported, never installed."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name as cn

    site = Path(args.site)
    carried = [d for d in metadata.distributions(path=[str(site)])] if site.is_dir() else []
    unmet: list[str] = []
    for dist in carried:
        name = cn(dist.metadata["Name"])
        extras = {"tune"} if name == "ray" else {""}
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in extras):
                continue
            try:
                have = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                unmet.append(f"{name} needs {req} (absent)")
                continue
            if req.specifier and not req.specifier.contains(have, prereleases=True):
                unmet.append(f"{name} needs {req} (found {have})")
    print(f"# {len(carried)} carried distributions under {site}; {len(unmet)} unmet requirement(s)")
    for line in unmet:
        print(f"  {line}")
    return {"carried": len(carried), "unmet": unmet}


# ----------------------------------------------------------------------------------------------- bench
def throughput(name: str, device: Any, mode: str, n: int, repeats: int, hparams: dict[str, Any],
               channels: int = 3, side: int = 0, before_timing: Any = None) -> dict[str, Any]:
    """Training samples/s of ``name`` (``models.train_throughput``), median of ``repeats`` epochs after one
    warm-up epoch. ``mode``: fp32 (TF32 off), tf32 or bf16 (autocast, TF32 off)."""
    from adgan.models import DETECTORS

    bm = bench_models()
    if getattr(device, "type", device) == "cuda":
        set_tf32(mode == "tf32")
    side = side or DETECTORS.get(name).preferred_image_size
    x = bm.synthetic("image", n, channels, side, 0)
    det = bm.make(name, {"epochs": repeats + 1, "batch_size": 64, **hparams})
    reset_peak(device)
    walls, cpus = bm.train_throughput(on_device(det, device, before_timing), x, repeats, mode == "bf16")
    row = {"model": name, "mode": mode, "input": f"{channels}x{side}x{side}", "n": n, "batch_size": 64,
           "samples_per_s": median(walls), "epochs_samples_per_s": walls, "epochs_samples_per_cpu_s": cpus,
           "peak_mib": peak_mib(device),
           "hparams": {k: v for k, v in det.config.to_dict().items()
                       if k in ("base_filters", "latent_dim", "batch_size", "gamma_steps", "loss_case")}}
    row["det"] = det
    return row


def anogan_search(device: Any, n: int, single: int, gamma: int) -> dict[str, Any]:
    """AnoGAN's latent search, batched against one input at a time, at equal Gamma (the method of
    ``benchmarks/anogan_search.py``: untrained DCGAN weights, 28x28x1 input, 64 filters, latent 100)."""
    import numpy as np

    from adgan.models import create_detector

    set_tf32(False)
    rng = np.random.default_rng(0)
    x = np.tanh(rng.standard_normal((n, 1, 28, 28))).astype(np.float32)
    det = create_detector("anogan", epochs=0, gamma_steps=gamma, base_filters=64, latent_dim=100,
                          loss_case="fm", search_batch_size=n).fit(x, device=device)
    det.score(x[:2], gamma_steps=2)  # warm-up (score returns host arrays: it synchronises)
    det.score(x[:1], gamma_steps=2)
    t0 = time.perf_counter()
    batched = det.score(x)
    per_batched = (time.perf_counter() - t0) / n
    k = min(single, n)
    t0 = time.perf_counter()
    one = np.array([det.score(x[i : i + 1])[0] for i in range(k)])
    per_single = (time.perf_counter() - t0) / k
    rel = float(np.max(np.abs(batched[:k] - one) / np.abs(one)))
    return {"n": n, "single": k, "gamma": gamma, "batched_ms_per_input": per_batched * 1e3,
            "single_ms_per_input": per_single * 1e3, "speedup": per_single / per_batched,
            "max_rel_score_diff": rel}


def share(parties: int, n: int, repeats: int, timeout: float, device: str = "cuda") -> dict[str, Any]:
    """``parties`` processes at once, each training GANomaly (default size, fp32, one CPU thread) after a
    common start; per-process samples/s and peak allocated GPU memory."""
    with tempfile.TemporaryDirectory(prefix="adgan-share-") as tmp:
        procs = []
        for i in range(parties):
            out = Path(tmp) / f"p{i}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "one", "--n", str(n), "--repeats",
                   str(repeats), "--barrier", tmp, "--parties", str(parties), "--json", str(out),
                   "--device", device]
            procs.append((subprocess.Popen(cmd, cwd=ROOT), out))
        rows, errors = [], []
        for proc, out in procs:
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = "timeout"
            if rc == 0 and out.is_file():
                rows.append(json.loads(out.read_text()))
            else:
                errors.append(f"process exited {rc}")
    sps = [r["samples_per_s"] for r in rows]
    return {"parties": parties, "samples_per_s": sps, "median": median(sps),
            "min": min(sps) if sps else math.nan, "peak_mib": [r["peak_mib"] for r in rows],
            "reserved_mib": [r["reserved_mib"] for r in rows], "errors": errors}


def cmd_one(args: argparse.Namespace) -> dict[str, Any]:
    """One process of the share measurement (run by ``share``)."""
    torch = _torch()
    torch.set_num_threads(1)  # as a sweep trial with cpus: 1
    barrier = Path(args.barrier)
    me = barrier / f"ready-{os.getpid()}"

    def wait_for_all() -> None:
        me.write_text("")
        deadline = time.monotonic() + 60
        while len(list(barrier.glob("ready-*"))) < args.parties and time.monotonic() < deadline:
            time.sleep(0.01)

    device = torch.device(args.device)
    row = throughput("ganomaly", device, "fp32", args.n, args.repeats, {}, before_timing=wait_for_all)
    row.pop("det")
    row["reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20 if device.type == "cuda" else None
    Path(args.json).write_text(json.dumps(row))
    return row


def full_budget_sizes() -> dict[str, dict[str, Any]]:
    """The GAN hyperparameters that set the cost in ``sweeps/mnist.yaml --budget full``, and its budget."""
    import yaml

    spec = yaml.safe_load((ROOT / "sweeps" / "mnist.yaml").read_text())
    full = spec["budgets"]["full"]
    out: dict[str, dict[str, Any]] = {}
    for name in GANS:
        fixed = {**spec["models"][name].get("fixed", {}), **full.get("fixed", {}).get(name, {})}
        out[name] = {k: v for k, v in fixed.items()
                     if k in ("base_filters", "latent_dim", "batch_size", "gamma_steps")}
        out[name]["loss_case"] = spec["models"][name].get("loss_cases", [None])[0]
        if out[name]["loss_case"] is None:
            del out[name]["loss_case"]
    out["_budget"] = {k: full[k] for k in ("trials_per_group", "max_epochs", "grace_period",
                                           "reduction_factor")}
    out["_budget"]["classes"] = 10
    return out


def cmd_bench(args: argparse.Namespace) -> dict[str, Any]:
    torch = _torch()
    result: dict[str, Any] = {"cuda": cuda_ok()}
    model, flags = cpu_flags()
    if args.device == "auto" and not cuda_ok():
        # The CPU reference: the same code, on the CPU, with every CPU this process may use.
        threads = len(os.sched_getaffinity(0))
        torch.set_num_threads(threads)
        print(f"no CUDA: GPU measurements skipped; CPU reference (GANomaly, default size, fp32, {threads} "
              f"threads, n {args.cpu_n}, {args.cpu_repeats} epochs after a warm-up)", flush=True)
        row = throughput("ganomaly", torch.device("cpu"), "fp32", args.cpu_n, args.cpu_repeats, {})
        row.pop("det")
        row.update({"threads": threads, "cpu_model": model, "cpu_flags": flags,
                    "load": os.getloadavg(), "date": dt.date.today().isoformat()})
        print(f"  ganomaly fp32 on CPU: {row['samples_per_s']:.1f} samples/s, median of epochs "
              f"{_join(row['epochs_samples_per_s'])} (per CPU-second "
              f"{_join(row['epochs_samples_per_cpu_s'])}); load {_join(list(os.getloadavg()), '.2f')}",
              flush=True)
        result["cpu_reference"] = row
        return result

    # The GPU measurements (``--device cpu`` runs the same set on the CPU: a dry run of this code).
    device = torch.device("cuda" if args.device == "auto" else args.device)
    result["device"] = str(device)
    torch.set_num_threads(1)  # what a sweep trial with cpus: 1 gets; the GPU does the work
    result["cpu_reference"] = CPU_REFERENCE

    def save() -> None:  # after every section: a stage cut short by its timeout keeps what it measured
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1, default=str))

    def attempt(label: str, fn: Any) -> Any:
        """``fn()``, or the error it raised (recorded and printed; the other measurements go on)."""
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001
            print(f"  {label}: FAILED: {type(exc).__name__}: {exc}", flush=True)
            result.setdefault("errors", []).append(f"{label}: {type(exc).__name__}: {exc}")
            return None

    rows = result["throughput"] = []
    for name in GANS:
        for mode in ("fp32", "tf32", "bf16"):
            row = attempt(f"{name} {mode}", lambda n=name, m=mode: throughput(n, device, m, args.n,
                                                                              args.repeats, {}))
            if row is not None:
                row.pop("det")
                rows.append(row)
                print(f"  {name:9s} {mode:5s} {row['input']:8s} {row['samples_per_s']:10.1f} samples/s "
                      f"(peak {_f(row['peak_mib'], '.0f')} MiB)", flush=True)
            save()
    set_tf32(False)
    s = attempt("anogan search", lambda: anogan_search(device, args.search_n, args.search_single,
                                                       args.search_gamma))
    if s is not None:
        result["anogan_search"] = s
        print(f"  anogan search: batched {s['batched_ms_per_input']:.2f} ms/input, one at a time "
              f"{s['single_ms_per_input']:.2f} ms/input, {s['speedup']:.1f}x", flush=True)
    save()
    alone = share(1, args.n, args.repeats, timeout=120, device=str(device))
    four = share(4, args.n, args.repeats, timeout=150, device=str(device))
    result["share"] = {"alone": alone, "four": four}
    print(f"  share: alone {_f(alone['median'])}, each of 4 {_join(four['samples_per_s'])} samples/s "
          f"{alone['errors'] + four['errors'] or ''}", flush=True)
    save()
    sizes = full_budget_sizes()
    budget = sizes.pop("_budget")
    full: list[dict[str, Any]] = []
    result["full_budget"] = {"rows": full, "budget": budget, "train": MNIST_TRAIN, "val": MNIST_VAL}
    for name, hp in sizes.items():
        row = attempt(f"full budget {name}", lambda n=name, h=hp: full_budget_row(n, h, device, args))
        if row is not None:
            full.append(row)
            print(f"  full budget {name:9s} {row['input']:8s} {row['samples_per_s']:10.1f} samples/s, score "
                  f"{row['score_ms_per_sample']:.4f} ms/sample", flush=True)
        save()
    return result


def full_budget_row(name: str, hp: dict[str, Any], device: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Training samples/s and validation scoring ms/sample of ``name`` at its full-budget size, MNIST-shaped
    (1 channel, the model's preferred side, as ``adgan.train`` resizes MNIST), fp32 with TF32 off."""
    from adgan.models import DETECTORS

    side = DETECTORS.get(name).preferred_image_size
    row = throughput(name, device, "fp32", args.n, max(2, args.repeats - 1), hp, channels=1, side=side)
    det = row.pop("det")
    n_score = min(args.score_n, 1024) if name == "anogan" else args.score_n
    x = bench_models().synthetic("image", n_score, 1, side, 0, seed=1)
    reset_peak(device)
    costs = bench_models().score_cost(det, x, 2)
    row.update({"score_ms_per_sample": median(costs), "score_n": n_score, "score_peak_mib": peak_mib(device)})
    return row


# ----------------------------------------------------------------------------------------------- sweep
SWEEP_SPEC = """\
# GPU check (issue 15): default-size GANomaly and EGBAD on synthetic-images, no ASHA stopping.
name: {name}
dataset: {{name: synthetic-images}}
classes: [0]
seeds: [0]
models:
  ganomaly:
    loss_cases: [fm]
    fixed: {{base_filters: {filters}, latent_dim: {latent}, batch_size: 64}}
    search:
      lr: {{type: loguniform, low: 5.0e-5, high: 2.0e-3}}
  egbad:
    loss_cases: [fm-bce]
    fixed: {{base_filters: {filters}, latent_dim: {latent}, batch_size: 64}}
    search:
      lr: {{type: loguniform, low: 5.0e-5, high: 2.0e-3}}
budget: {{trials_per_group: {trials}, max_epochs: {epochs}, grace_period: {epochs}, reduction_factor: 2}}
resources: {{cpus: 1, gpu: 0}}
results: results
wandb: {{project: adgan-gpu-check}}
"""


def _smi(path: Path, query: str) -> subprocess.Popen | None:
    if not shutil.which("nvidia-smi"):
        return None
    f = open(path, "a")  # noqa: SIM115 (closed with the process)
    cmd = ["nvidia-smi", f"--query-{query}", "--format=csv,noheader,nounits", "-lms", "500"]
    return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist() if path.is_file() else []


def spec_text(name: str, args: argparse.Namespace) -> str:
    return SWEEP_SPEC.format(name=name, trials=args.trials, epochs=args.epochs, filters=args.base_filters,
                             latent=args.latent_dim)


def one_sweep(gpu: str, tmp: Path, args: argparse.Namespace, log: Any, smi_dir: Path) -> dict[str, Any]:
    name = f"gpu-check-{gpu.replace('.', '_')}"
    spec = tmp / f"{name}.yaml"
    spec.write_text(spec_text(name, args))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "WANDB_"))}
    env.update({"RAY_AUTH_TOKEN_PATH": str(tmp / "ray_token"), "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)})
    cmd = [sys.executable, "-m", "adgan.cli", "sweep", str(spec), "--results", str(tmp / "results"),
           "--no-wandb", "--gpu", gpu, "--progress-every", "10"]
    log.write(f"\n$ {' '.join(cmd)}\n")
    log.flush()
    smi = []
    for query in ("gpu=timestamp,memory.used,utilization.gpu", "compute-apps=pid,process_name,used_memory"):
        if shutil.which("nvidia-smi"):
            path = smi_dir / f"smi_{query.split('=')[0]}.csv"
            with path.open("a") as f:
                f.write(f"# --gpu {gpu}\n")
            smi.append(_smi(path, query))
    t0 = time.perf_counter()
    try:
        run = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                             timeout=args.timeout)
        rc: Any = run.returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    wall = time.perf_counter() - t0
    for p in smi:
        if p is not None:
            p.terminate()
            p.wait(timeout=10)
    try:
        return {"gpu": float(gpu), "rc": rc, "wall_s": wall, **sweep_figures(tmp / "results" / name, wall)}
    except Exception as exc:  # noqa: BLE001 (a results layout this reader does not know: say so, go on)
        return {"gpu": float(gpu), "rc": rc, "wall_s": wall, "error": f"{type(exc).__name__}: {exc}"}


def sweep_figures(out: Path, wall: float) -> dict[str, Any]:
    """Trials, statuses, devices, threads, trials per hour (over the command's ``wall`` seconds and over the
    span from the first trial's start to the last one's end) and per-trial samples/s of one sweep."""
    trials = _read_rows(out / "trials.parquet")
    epochs = _read_rows(out / "epochs.parquet")
    configs = [json.loads(t["config"]) if isinstance(t["config"], str) else t["config"] for t in trials]
    starts = [t["reported_last"] - (t["wall_seconds"] or 0) for t in _with_last_report(trials, epochs)]
    ends = [t["reported_last"] for t in _with_last_report(trials, epochs)]
    span = (max(ends) - min(starts)) if starts else math.nan
    later = [e["samples_per_s"] for e in epochs if e["epoch"] >= 2 and e["samples_per_s"]]
    by_model = {}
    for m in ("ganomaly", "egbad"):
        by_model[m] = median([e["samples_per_s"] for e in epochs
                              if e["model"] == m and e["epoch"] >= 2 and e["samples_per_s"]])
    return {
        "trials": len(trials),
        "status": {s: sum(t["status"] == s for t in trials) for s in {t["status"] for t in trials}},
        "devices": sorted({c.get("device") for c in configs}),
        "threads": sorted({c.get("threads") for c in configs}),
        "trials_per_hour_command": len(trials) / wall * 3600 if trials else 0.0,
        "trial_span_s": span,
        "trials_per_hour_span": len(trials) / span * 3600 if trials and span > 0 else math.nan,
        "median_samples_per_s_epoch2plus": median(later), "median_samples_per_s_by_model": by_model,
        "effective_resources": (json.loads((out / "spec.json").read_text()).get("effective_resources")
                                if (out / "spec.json").is_file() else None),
    }


def _seconds(value: Any) -> float | None:
    """A Parquet time (a float of Unix seconds, or a timestamp read back as ``datetime``) as Unix seconds."""
    if value is None:
        return None
    return value.timestamp() if isinstance(value, dt.datetime) else float(value)


def _with_last_report(trials: list[dict[str, Any]], epochs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    last: dict[str, float] = {}
    for e in epochs:
        if (at := _seconds(e.get("reported_at"))) is not None:
            last[e["trial_id"]] = max(last.get(e["trial_id"], 0.0), at)
    return [{**t, "reported_last": last[t["trial_id"]]} for t in trials if t["trial_id"] in last]


def smi_summary(smi_dir: Path) -> dict[str, Any]:
    """Per ``--gpu`` section: the largest memory of each GPU process (MiB) and the GPU's peak memory."""
    out: dict[str, Any] = {}
    for kind in ("compute-apps", "gpu"):
        path = smi_dir / f"smi_{kind}.csv"
        if not path.is_file():
            continue
        section = None
        for line in path.read_text().splitlines():
            if line.startswith("# --gpu "):
                section = line.split()[-1]
                out.setdefault(section, {"processes": {}, "gpu_peak_mib": 0.0, "util_peak": 0.0})
                continue
            parts = [p.strip() for p in line.split(",")]
            if section is None:
                continue
            try:
                if kind == "compute-apps" and len(parts) == 3:
                    pid, proc, mib = parts[0], parts[1], float(parts[2])
                    key = f"{pid} {Path(proc).name}"
                    procs = out[section]["processes"]
                    procs[key] = max(procs.get(key, 0.0), mib)
                elif kind == "gpu" and len(parts) == 3:
                    out[section]["gpu_peak_mib"] = max(out[section]["gpu_peak_mib"], float(parts[1]))
                    out[section]["util_peak"] = max(out[section]["util_peak"], float(parts[2]))
            except ValueError:
                continue
    return out


def cmd_sweep(args: argparse.Namespace) -> dict[str, Any]:
    if not cuda_ok() and not args.allow_cpu:
        print("no CUDA: the GPU-share sweeps are skipped")
        return {"skipped": "no CUDA"}
    try:
        import optuna  # noqa: F401
        import ray  # noqa: F401
    except ImportError as exc:
        print(f"{exc.name} is not importable: the GPU-share sweeps are skipped")
        return {"skipped": f"{exc.name} not importable"}
    smi_dir = Path(args.smi_dir)
    smi_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix="adgan-gpu-sweep-") as tmp, open(args.log, "a") as log:
        for gpu in ("0.25", "1"):
            r = one_sweep(gpu, Path(tmp), args, log, smi_dir)
            runs.append(r)
            print(f"  --gpu {gpu}: rc {r['rc']}, {r['trials']} trials {r['status']}, devices {r['devices']}, "
                  f"{r['wall_s']:.0f} s, {r['trials_per_hour_command']:.0f} trials/h (command), "
                  f"{r['trials_per_hour_span']:.0f} trials/h (trial span), median "
                  f"{r['median_samples_per_s_epoch2plus']:.0f} samples/s per trial", flush=True)
    return {"runs": runs, "memory": smi_summary(smi_dir), "spec": spec_text("gpu-check-<gpu>", args)}


# ---------------------------------------------------------------------------------------------- report
def asha_epochs(max_t: int, grace: int, rf: float) -> float:
    """Expected epochs per trial under ASHA when each rung promotes 1/rf of the trials that reach it:
    rungs at grace * rf^k below max_t."""
    rungs = []
    r = grace
    while r < max_t:
        rungs.append(r)
        r = int(r * rf)
    bounds = [0, *rungs, max_t]
    return sum((1 / rf) ** k * (bounds[k + 1] - bounds[k]) for k in range(len(bounds) - 1))


def _f(v: Any, fmt: str = ".1f") -> str:
    return format(v, fmt) if isinstance(v, int | float) and math.isfinite(v) else "-"


def _join(values: list[Any], fmt: str = ".1f") -> str:
    return ", ".join(_f(v, fmt) for v in values) or "-"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _env_lines(env: dict[str, Any]) -> list[str]:
    g = env.get
    return [
        f"# GPU check (issue 15), {g('date', '?')}", "",
        f"GPU: {g('gpu_name', 'none')} ({g('gpu_memory_gib', '-')} GiB), driver {g('driver', '-')} "
        f"(CUDA {g('driver_cuda', '-')}); torch {g('torch')} (CUDA {g('torch_cuda')}, cuDNN {g('cudnn')}); "
        f"Python {g('python')}; ray {g('version_ray')}, optuna {g('version_optuna')}; "
        f"CPU {g('cpu_model')} x{g('cpu_count')}",
    ]


def _pytest_line(path: str | None) -> list[str]:
    if not path or not Path(path).is_file():
        return []
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
    pattern = r"\d+ (passed|failed|skipped|error|deselected)"
    summary = next((ln for ln in reversed(lines) if re.search(pattern, ln)), "no summary line")
    return ["", f"Tests (`pytest -m gpu tests/test_gpu.py`): {summary.strip('= ')}"]


def _cpu_reference_lines(ref: dict[str, Any]) -> list[str]:
    if not ref.get("samples_per_s"):
        return []
    return [
        "", "Recorded CPU reference (`CPU_REFERENCE`, the GPU run's divisor): "
        f"{CPU_REFERENCE['samples_per_s']} samples/s ({CPU_REFERENCE['cpu']}, {CPU_REFERENCE['date']}).",
        "", "This run's CPU figure, GANomaly default size (3x32x32, batch 64, 64 filters, latent 100), fp32, "
        f"{ref.get('threads')} threads: **{ref['samples_per_s']:.1f} samples/s** (median of epochs "
        f"{_join(ref.get('epochs_samples_per_s', []))}; per CPU-second "
        f"{_join(ref.get('epochs_samples_per_cpu_s', []))}; {ref.get('cpu_model')}; "
        f"flags: {ref.get('cpu_flags')}; load {_join(ref.get('load', []), '.2f')}; {ref.get('date')})",
    ]


def _throughput_lines(rows: list[dict[str, Any]], ref: dict[str, Any]) -> list[str]:
    if not rows:
        return []
    out = ["", "Training throughput at the default size (samples/s, median of the timed epochs after a "
           "warm-up epoch; batch 64; one CPU thread):", "",
           "| model | input | fp32 (TF32 off) | TF32 | bf16 autocast | peak MiB (fp32) |",
           "| --- | --- | --- | --- | --- | --- |"]
    for name in GANS:
        mine = {r["mode"]: r for r in rows if r["model"] == name}
        if mine:
            fp = mine.get("fp32", {})
            sps = [_f(mine.get(m, {}).get("samples_per_s")) for m in ("fp32", "tf32", "bf16")]
            peak = _f(fp.get("peak_mib"), ".0f")
            out.append(f"| {name} | {fp.get('input', '-')} | {' | '.join(sps)} | {peak} |")
    gan = [r for r in rows if r["model"] == "ganomaly"]
    fp32 = next((r["samples_per_s"] for r in gan if r["mode"] == "fp32"), math.nan)
    if gan and ref.get("samples_per_s"):
        ratio = fp32 / ref["samples_per_s"]
        best = max(r["samples_per_s"] for r in gan) / ref["samples_per_s"]
        out += ["", f"GANomaly fp32 against the CPU reference ({ref['samples_per_s']:.1f} samples/s, "
                f"{ref.get('cpu')}, {ref.get('date')}): **{ratio:.1f}x** (best mode {best:.1f}x); "
                f"target >= 10x: {_met(ratio >= 10)}"]
    return out


def _search_lines(s: dict[str, Any] | None) -> list[str]:
    if not s:
        return []
    return ["", f"AnoGAN latent search (28x28x1, 64 filters, latent 100, Gamma {s['gamma']}, fp32): "
            f"batched {s['n']} inputs {s['batched_ms_per_input']:.3f} ms/input, one at a time "
            f"{s['single_ms_per_input']:.2f} ms/input (timed on {s['single']}): **{s['speedup']:.1f}x** "
            f"(target >= 20x: {_met(s['speedup'] >= 20)}); max relative score difference "
            f"{s['max_rel_score_diff']:.1e}"]


def _share_lines(sh: dict[str, Any] | None) -> tuple[list[str], float]:
    if not sh:
        return [], math.nan
    alone, four = sh["alone"], sh["four"]
    eff = four["min"] / alone["median"] if alone["median"] else math.nan
    errors = alone["errors"] + four["errors"]
    return ["", f"GPU share (GANomaly default size, fp32, one CPU thread per process, common start): alone "
            f"{_f(alone['median'])} samples/s; 4 at once: {_join(four['samples_per_s'])} samples/s: the "
            f"slowest keeps **{_f(eff * 100, '.0f')}%** (target >= 80%: {_met(eff >= 0.8)}); peak allocated "
            f"per process {_join(four['peak_mib'], '.0f')} MiB, reserved "
            f"{_join(four['reserved_mib'], '.0f')} MiB" + (f"; errors: {errors}" if errors else "")], eff


def _sweep_lines(sweep: dict[str, Any]) -> list[str]:
    if sweep.get("skipped"):
        return ["", f"Sweeps skipped: {sweep['skipped']}"]
    runs = sweep.get("runs") or []
    if not runs:
        return []
    out = ["", "Sweep (GANomaly + EGBAD, default size, synthetic-images class 0, no ASHA stopping, 1 CPU per "
           "trial, `--no-wandb`); memory: the largest `nvidia-smi` reading of each GPU process:", "",
           "| --gpu | rc | trials | status | device | threads | wall s | trials/h (command) | trials/h "
           "(trial span) | samples/s per trial (epochs >= 2) | MiB per process | GPU peak MiB |",
           "| --- " * 12 + "|"]
    mem = sweep.get("memory", {})
    for r in runs:
        m = mem.get("0.25" if r["gpu"] == 0.25 else "1", {})
        procs = _join(sorted(m.get("processes", {}).values(), reverse=True), ".0f")
        cells = [f"{r['gpu']:g}", str(r["rc"]), str(r["trials"]), str(r["status"]),
                 ",".join(map(str, r["devices"])), ",".join(map(str, r["threads"])), _f(r["wall_s"], ".0f"),
                 _f(r["trials_per_hour_command"], ".0f"), _f(r["trials_per_hour_span"], ".0f"),
                 _f(r["median_samples_per_s_epoch2plus"], ".0f"), procs, _f(m.get("gpu_peak_mib"), ".0f")]
        out.append("| " + " | ".join(cells) + " |")
    if len(runs) == 2 and runs[1]["median_samples_per_s_epoch2plus"]:
        kept = runs[0]["median_samples_per_s_epoch2plus"] / runs[1]["median_samples_per_s_epoch2plus"]
        out += ["", "Per-trial training speed with 4 trials per GPU against 1 (sweep): "
                f"{_f(kept * 100, '.0f')}%"]
    return out


def _full_budget_lines(fb: dict[str, Any] | None, eff: float) -> list[str]:
    if not fb:
        return []
    b = fb["budget"]
    e_asha = asha_epochs(b["max_epochs"], b["grace_period"], b["reduction_factor"])
    trials = b["classes"] * b["trials_per_group"]
    out = ["", "Full-budget estimate, `sweeps/mnist.yaml --budget full` on full MNIST: "
           f"{b['classes']} classes x {b['trials_per_group']} trials per GAN, {fb['train']:,} training "
           f"normals and {fb['val']:,} validation samples per class, up to {b['max_epochs']} epochs with "
           f"validation after each, ASHA grace {b['grace_period']} rf {b['reduction_factor']}: "
           f"{e_asha:.1f} epochs per trial expected; fp32, one trial per GPU at a time, Ray's per-trial "
           "overhead not counted; kNN and PCA run on CPUs:", "",
           "| model | input, sizes | train samples/s | score ms/sample | s per epoch (train + val) | "
           "GPU-hours (ASHA) | GPU-hours (no stopping) |", "| --- " * 7 + "|"]
    total = total_max = 0.0
    for r in fb["rows"]:
        per_epoch = fb["train"] / r["samples_per_s"] + fb["val"] * r["score_ms_per_sample"] / 1e3
        hours = trials * e_asha * per_epoch / 3600
        hours_max = trials * b["max_epochs"] * per_epoch / 3600
        total, total_max = total + hours, total_max + hours_max
        cells = [r["model"], f"{r['input']} {r['hparams']}", _f(r["samples_per_s"]),
                 _f(r["score_ms_per_sample"], ".4f"), _f(per_epoch), _f(hours), _f(hours_max)]
        out.append("| " + " | ".join(cells) + " |")
    out.append(f"| **total** | | | | | **{_f(total)}** | {_f(total_max)} |")
    if math.isfinite(eff) and eff > 0:
        out += ["", f"With 4 trials per GPU at the measured share ({eff * 100:.0f}% each): about "
                f"{_f(total / (4 * min(eff, 1.0)))} GPU-hours (ASHA)."]
    return out


def cmd_report(args: argparse.Namespace) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in args.json:
        p = Path(path)
        if p.is_file() and p.stat().st_size:
            merged[p.stem] = json.loads(p.read_text())
    env, bench, sweep = merged.get("env", {}), merged.get("bench", {}), merged.get("sweep", {})
    ref = bench.get("cpu_reference") or {}
    lines = _env_lines(env) + _pytest_line(args.pytest_log)
    if bench and not bench.get("throughput"):
        lines += ["", "No CUDA device: GPU measurements skipped."] + _cpu_reference_lines(ref)
    elif bench.get("device") == "cpu":
        lines += ["", "Dry run: the GPU measurements below ran on the CPU (`bench --device cpu`)."]
    lines += _throughput_lines(bench.get("throughput") or [], ref) + _search_lines(bench.get("anogan_search"))
    share_lines, eff = _share_lines(bench.get("share"))
    lines += share_lines + _sweep_lines(sweep) + _full_budget_lines(bench.get("full_budget"), eff)
    text = "\n".join(lines) + "\n"
    if args.md:
        Path(args.md).write_text(text)
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(merged, indent=1, default=str))
    print(text)
    return merged


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("env")
    p.add_argument("--json")
    p = sub.add_parser("deps")
    p.add_argument("--site", default=os.path.join(tempfile.gettempdir(), "site"))  # = gpu_check.sh's SITE
    p.add_argument("--json")
    p = sub.add_parser("bench")
    p.add_argument("--n", type=int, default=4096, help="training samples per timed epoch on the GPU")
    p.add_argument("--cpu-n", type=int, default=640, help="training samples per epoch of the CPU reference")
    p.add_argument("--cpu-repeats", type=int, default=3, help="timed epochs of the CPU reference")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs (after one warm-up epoch)")
    p.add_argument("--search-n", type=int, default=256)
    p.add_argument("--search-single", type=int, default=4)
    p.add_argument("--search-gamma", type=int, default=100)
    p.add_argument("--score-n", type=int, default=4096, help="samples scored per call (AnoGAN: <= 1024)")
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"),
                   help="auto: the GPU set on CUDA, else only the CPU reference; cpu: the GPU set on the CPU")
    p.add_argument("--json")
    p = sub.add_parser("one")
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--barrier", required=True)
    p.add_argument("--parties", type=int, default=1)
    p.add_argument("--device", default="cuda")
    p.add_argument("--json", required=True)
    p = sub.add_parser("sweep")
    p.add_argument("--trials", type=int, default=4, help="trials per group (2 groups)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--base-filters", type=int, default=64)
    p.add_argument("--latent-dim", type=int, default=100)
    p.add_argument("--timeout", type=float, default=150, help="seconds per sweep")
    p.add_argument("--allow-cpu", action="store_true",
                   help="run without CUDA too (the sweeps then fall back to CPU trials: a dry run)")
    p.add_argument("--log", default=os.devnull)
    p.add_argument("--smi-dir", default=tempfile.gettempdir())
    p.add_argument("--json")
    p = sub.add_parser("report")
    p.add_argument("--json", nargs="*", default=[])
    p.add_argument("--pytest-log")
    p.add_argument("--md")
    p.add_argument("--out-json")
    args = ap.parse_args(argv)
    if args.cmd == "one":
        cmd_one(args)
        return
    fn = {"env": cmd_env, "deps": cmd_deps, "bench": cmd_bench, "sweep": cmd_sweep, "report": cmd_report}
    result = fn[args.cmd](args)
    if getattr(args, "json", None) and args.cmd != "report":
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
