"""The plan and the cost of a sweep: ``adgan sweep SPEC --dry-run`` before, the end summary after.

The dry run starts no Ray (with ``--address`` it connects to the cluster to count its slots, then
disconnects): it prints the groups, trials, maximum epochs, resources per trial, how many trials run at
once, and an estimate of the wall time and of the CPU/GPU-hours the trials reserve. The estimate needs
seconds per epoch of each model, taken from

- an earlier results directory of the same sweep and budget (``trials.parquet``: each trial's fit and
  scoring seconds per epoch, and its wall seconds beyond them as set-up), when there is one; or else
- a calibration: one epoch of each model, trained here in this process with ``adgan.train.train`` on
  the spec's data (first class and seed, each searched hyperparameter at its low end or first choice),
  with the torch threads and device a trial would get.

ASHA stops trials early, so the estimate gives the expected epochs under ASHA (each rung keeps the best
``1/reduction_factor`` of the trials that reach it) beside the budget's maximum (no trial stopped). Trials
share the machine's memory bandwidth and the driver's work, so wall times on a loaded machine run longer.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from adgan.errors import AdganError
from adgan.runfiles import TUNE_EXPERIMENT
from adgan.sweep.spec import SweepSpec, trial_config

STARTUP_S = 40.0  # fixed cost of a sweep command: Python and Ray start-up, data check, shutdown (measured)
TRIAL_SETUP_S = 1.2  # a trial's own set-up in Tune (W&B run, model, checkpoint copies): 1.15 s measured


@dataclasses.dataclass(frozen=True)
class ModelCost:
    """Seconds of one trial of a model: ``setup_s`` once, then ``epoch_s`` per epoch (train + validation)."""

    epoch_s: float
    setup_s: float
    epochs_per_trial: float | None = None  # measured by an earlier run (ASHA's actual stopping), if any
    test_s: float = 0.0  # the driver's scoring of a finished group's chosen trial on the test split


def asha_epochs(max_t: int, grace: int, reduction: float) -> float:
    """Expected epochs of one trial under ASHA: it reaches rung k (epoch ``grace * reduction**k``, as Ray's
    ``AsyncHyperBandScheduler`` places them) with probability ``reduction**-k``, then runs on to the next
    rung or ``max_t``."""
    rungs = [grace * reduction**k for k in range(int(math.log(max_t / grace, reduction) + 1 + 1e-9))]
    rungs = [r for r in rungs if r < max_t] + [max_t]
    expected, previous = 0.0, 0.0
    for k, rung in enumerate(rungs):
        expected += (rung - previous) * reduction ** (-k)
        previous = rung
    return expected


def slots_here(spec: SweepSpec, cpus: int, gpu: float, max_concurrent: int | None) -> int:
    """Trials at once on this machine (a local Ray of ``cpus`` CPUs)."""
    slots = int(cpus // spec.cpus)
    if gpu > 0:
        slots = min(slots, int(_local_gpus() // gpu))
    return max(0, min(slots, max_concurrent or slots))


def slots_on_cluster(spec: SweepSpec, gpu: float, max_concurrent: int | None) -> int:
    """Trials at once on the connected cluster: per node, as many as its CPUs (and GPUs) hold."""
    import ray

    slots = 0
    for node in ray.nodes():
        if node.get("Alive"):
            res = node.get("Resources", {})
            here = int(float(res.get("CPU", 0)) // spec.cpus)
            if gpu > 0:
                here = min(here, int(float(res.get("GPU", 0)) // gpu))
            slots += here
    return min(slots, max_concurrent or slots)


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def calibrate(spec: SweepSpec, gpu: float) -> dict[str, ModelCost]:
    """One epoch of each model of ``spec`` in this process (see the module docstring)."""
    from adgan.sweep.trial import splits_for
    from adgan.train import resolve_config, train

    costs: dict[str, ModelCost] = {}
    for model in spec.models:
        group = next(g for g in spec.groups() if g.model == model.name)
        config = trial_config(spec, group, {p: d.example() for p, d in model.search.items()})
        config.update(device="cuda" if gpu > 0 and _local_gpus() else "cpu", threads=math.ceil(spec.cpus))
        if model.is_iterative:
            config["epochs"] = 1
        splits = splits_for(resolve_config(config))  # loaded once per process, as in a trial's worker
        epoch_s, eval_s = None, 0.0
        with tempfile.TemporaryDirectory(prefix="adgan-plan-") as out:
            t0 = time.perf_counter()
            for rec in train(config, splits=splits, out=out, evaluate_test=False):
                if rec["kind"] == "epoch":
                    epoch_s = float(rec["epoch_seconds"]) + float(rec["eval_seconds"])
                    eval_s = float(rec["eval_seconds"])
            total = time.perf_counter() - t0
        epoch_s = total if epoch_s is None else epoch_s
        test_s = eval_s * len(splits.test) / max(len(splits.val), 1)  # scoring cost grows with the samples
        costs[model.name] = ModelCost(epoch_s=epoch_s, setup_s=TRIAL_SETUP_S + max(0.0, total - epoch_s),
                                      test_s=test_s)
        print(f"[{spec.name}] calibrated {model.name}: {epoch_s:.2f} s per epoch", file=sys.stderr)
    return costs


def costs_from_results(spec: SweepSpec, results_dir: Path | str) -> dict[str, ModelCost] | None:
    """Per-model costs measured by an earlier run of the same sweep and budget in ``results_dir`` (None
    when there is none, or it ran another budget, dataset or spec, or lacks a model of ``spec``)."""
    from adgan.sweep.results import read_table
    from adgan.sweep.storage import location

    try:
        loc = location(results_dir)  # a path, or a URI of results on an object store
        meta = json.loads(loc.child("spec.json").read_text())
        rows = read_table(loc, "trials", missing_ok=True)
        used = json.loads(loc.child("dataset.json").read_text())["dataset"] if (
            loc.child("dataset.json").is_file()) else meta.get("dataset", {}).get("name")
    except (OSError, json.JSONDecodeError, AdganError):
        return None
    if meta.get("budget_name") != spec.budget_name or used != spec.dataset:
        return None
    from adgan.sweep.records import defining, spec_record

    if defining(meta) != defining(spec_record(spec, spec.gpu)):
        return None  # another spec under the same name (wider networks, more data): its times do not apply
    costs = {}
    for model in spec.models:
        mine = [r for r in rows if r.get("model") == model.name and (r.get("epochs_run") or 0) > 0]
        if not mine:
            return None
        work = [(r.get("fit_seconds") or 0.0) + (r.get("score_seconds") or 0.0) for r in mine]
        epoch_s = statistics.median(w / r["epochs_run"] for w, r in zip(work, mine, strict=True))
        setup_s = statistics.median(
            max(0.0, (r.get("wall_seconds") or w) - w) for w, r in zip(work, mine, strict=True)
        )
        # The epochs ASHA actually let this model's trials run: its stopping depends on how the trials'
        # curves compare, which the expected-rung model below cannot know.
        epochs = statistics.fmean(r["epochs_run"] for r in mine)
        # Test scoring of a group's chosen trial: its validation scoring per sample, times the test samples.
        best = [r for r in read_table(loc, "best", missing_ok=True) if r.get("model") == model.name]
        per_sample = statistics.median(
            (r.get("score_seconds") or 0.0) / r["epochs_run"] / max(r.get("n_val") or 1, 1) for r in mine)
        n_test = statistics.fmean([b.get("n_test") or 0 for b in best] or [0])
        costs[model.name] = ModelCost(epoch_s=epoch_s, setup_s=setup_s, epochs_per_trial=epochs,
                                      test_s=per_sample * n_test)
    return costs


def estimate(spec: SweepSpec, costs: dict[str, ModelCost], slots: int, gpu: float) -> dict[str, float]:
    """Trial-seconds, wall seconds and CPU/GPU-hours, expected under ASHA and at most (no trial stopped)."""
    budget = spec.budget
    out = {"trial_s": 0.0, "trial_s_max": 0.0}
    for group in spec.groups():
        model = spec.model(group.model)
        cost = costs[group.model]
        grace = min(model.grace_period or budget.grace_period, budget.max_epochs)
        most = budget.max_epochs if model.is_iterative else 1
        expected = asha_epochs(most, grace, budget.reduction_factor) if model.is_iterative else 1
        if cost.epochs_per_trial is not None:
            expected = min(cost.epochs_per_trial, most)
        # The driver's test scoring of the group shares the CPUs with the trials: counted with them.
        out["trial_s"] += spec.trials(group) * (cost.setup_s + expected * cost.epoch_s) + cost.test_s
        out["trial_s_max"] += spec.trials(group) * (cost.setup_s + most * cost.epoch_s) + cost.test_s
    for key in ("", "_max"):
        trial_s = out[f"trial_s{key}"]
        out[f"wall_s{key}"] = STARTUP_S + trial_s / max(slots, 1)
        out[f"cpu_hours{key}"] = trial_s * spec.cpus / 3600
        out[f"gpu_hours{key}"] = trial_s * gpu / 3600
    return out


def _one_step(spec: SweepSpec) -> str:
    """The spec's models that fit in one step (a GAN, or an iterative baseline, trains in epochs)."""
    return ", ".join(m.name for m in spec.models if not m.is_iterative) or "none here"


def _n(count: float, word: str, plural: str | None = None) -> str:
    """``1 seed``, ``2 seeds``, ``3 classes`` (``plural`` when not ``word + "s"``)."""
    return f"{count:g} {word if count == 1 else plural or word + 's'}"


def duration(seconds: float) -> str:
    """``1h02m``, ``3m05s``, ``42s``."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def plan_text(
    spec: SweepSpec,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    max_concurrent: int | None = None,
    results_root: str | None = None,
    resume: bool = False,
) -> str:
    """What ``adgan sweep SPEC --dry-run`` prints (see the module docstring); ``resume``: of ``--resume``
    (the sweep in the results is checked as the resume itself checks it: ``check_resumable``)."""
    gpu = spec.gpu
    if address is None:
        cpus = num_cpus or os.cpu_count() or 1
        if gpu > 0 and not _local_gpus():
            gpu = 0.0  # as the sweep would: no GPU here, trials on CPU
        slots = slots_here(spec, cpus, gpu, max_concurrent)
        where = f"this machine: {_n(cpus, 'CPU')}" + (f", {_n(_local_gpus(), 'GPU')}" if gpu > 0 else "")
    else:
        slots, where, gpu = _cluster_slots(spec, address, max_concurrent)
    from adgan.sweep.storage import location

    results_dir = location(results_root or spec.results).child(spec.name).uri
    costs = costs_from_results(spec, results_dir)
    source = f"measured by the earlier run in {results_dir}"
    if costs is None:
        costs = calibrate(spec, gpu)
        source = "calibrated: one epoch of each model in this process"
    est = estimate(spec, costs, slots, gpu)
    groups = spec.groups()
    held = location(results_dir).child(TUNE_EXPERIMENT).exists()
    n_trials = sum(spec.trials(g) for g in groups)
    cases = sum(len(m.loss_cases) for m in spec.models)
    limit = f"; --max-concurrent {max_concurrent}" if max_concurrent else ""
    per_model = "; ".join(f"{m} {c.epoch_s:.2f} s/epoch + {c.setup_s:.1f} s set-up" for m, c in costs.items())
    lines = [
        f"plan of sweep {spec.name!r} ({spec.path}, budget {spec.budget_name}) on {spec.dataset}",
        f"  groups       {len(groups)} ({_n(len(spec.classes), 'class', 'classes')} x "
        f"{_n(cases, 'model/loss case')} x {_n(len(spec.seeds), 'seed')})",
        f"  trials       {n_trials} (up to {spec.budget.trials_per_group} per group; as many as a search "
        "space holds distinct settings where fewer, 1 for a model with nothing to search)",
        f"  epochs       up to {spec.budget.max_epochs} per trial of a model trained in epochs, 1 per "
        f"one-step fit ({_one_step(spec)}) (ASHA grace {spec.budget.grace_period}, reduction "
        f"{spec.budget.reduction_factor:g})",
        f"  per trial    {_n(spec.cpus, 'CPU')}, {_n(gpu, 'GPU')}",
        f"  at once      {_n(slots, 'trial')} ({where}{limit})",
        f"  cost/model   {per_model} ({source})",
    ]
    if slots == 0:  # (an estimate of a sweep that cannot run here would only mislead)
        lines.append("  estimate     none: no trial fits here, the sweep would be refused (see resources)")
    else:
        lines.append(
            f"  estimate     wall {duration(est['wall_s'])} with ASHA, at most "
            f"{duration(est['wall_s_max'])}; "
            f"{est['cpu_hours']:.2f} CPU-hours (at most {est['cpu_hours_max']:.2f}), {est['gpu_hours']:.2f} "
            "GPU-hours"
        )
    if resume:
        lines.append(f"  note         --resume continues sweep {spec.name!r} in {results_dir}: the plan "
                     "above is the whole sweep's, trials it already ran included")
    elif held:  # the plan of a sweep that would not start: say so, as the sweep itself would
        lines.append(f"  note         {results_dir} already holds sweep {spec.name!r}: `adgan sweep` would "
                     "refuse to start a new one there; continue it with --resume, or give another --results")
    return "\n".join(lines)


def _cluster_slots(spec: SweepSpec, address: str, max_concurrent: int | None) -> tuple[int, str, float]:
    """Slots on the cluster at ``address`` (connecting, then disconnecting), the cluster in words, and the
    GPU share a trial would get there (none on a cluster without GPUs)."""
    import ray

    from adgan.sweep.runner import _check_reachable, init_ray

    _check_reachable(address)
    started = not ray.is_initialized()
    init_ray(address)
    try:
        res = ray.cluster_resources()
        gpu = spec.gpu if float(res.get("GPU", 0)) > 0 else 0.0
        nodes = sum(bool(n.get("Alive")) for n in ray.nodes())
        where = (f"cluster {address}: {_n(nodes, 'node')}, {_n(res.get('CPU', 0), 'CPU')}, "
                 f"{_n(res.get('GPU', 0), 'GPU')}")
        return slots_on_cluster(spec, gpu, max_concurrent), where, gpu
    finally:
        if started:
            ray.shutdown()


def cost_summary(results_dir: str | os.PathLike[str]) -> str:
    """The end summary of a sweep: wall time (this run, and all runs on the directory) and the CPU/GPU-hours
    its trials reserved (each trial's time x the resources per trial it ran with)."""
    from adgan.sweep.provenance import read_runs
    from adgan.sweep.results import read_table
    from adgan.sweep.storage import location

    loc = location(results_dir)  # a path, or a URI of results on an object store
    runs = read_runs(loc)
    walls = [float(r["wall_seconds"]) for r in runs if isinstance(r.get("wall_seconds"), int | float)]
    try:
        resources = json.loads(loc.child("spec.json").read_text()).get("effective_resources", {})
        trials = read_table(loc, "trials", missing_ok=True)
    except (OSError, json.JSONDecodeError, AdganError):
        resources, trials = {}, []
    trial_s = sum(float(t.get("wall_seconds") or 0.0) for t in trials)
    cpu_h = trial_s * float(resources.get("cpus", 0)) / 3600
    gpu_h = trial_s * float(resources.get("gpu", 0)) / 3600
    wall = f"wall {duration(walls[-1])}" if walls else "wall -"
    # A killed driver never wrote its end: its time is unknown, and said to be left out, not silently.
    unknown = sum(1 for r in runs if not isinstance(r.get("wall_seconds"), int | float)
                  and r.get("status") != "running")
    notes = [f"{duration(sum(walls))} over {len(walls)} runs of this directory"] if len(walls) > 1 else []
    if unknown:
        notes.append(f"{'plus ' if notes else ''}{unknown} killed run{'s' if unknown > 1 else ''} whose time "
                     "is not recorded")
    if notes:
        wall += f" ({', '.join(notes)})"
    return f"{wall}; trials reserved {cpu_h:.2f} CPU-hours and {gpu_h:.2f} GPU-hours ({len(trials)} trials)"
