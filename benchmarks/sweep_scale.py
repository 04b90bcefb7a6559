"""A sweep of many tiny groups end to end: does the driver's cost per trial grow with the trials already seen?

    python benchmarks/sweep_scale.py --seeds 200 [--results DIR_OR_URI] [--cpus N] [--keep]

The spec (written to a temporary file): the kNN baseline on ``synthetic-images``, all 5 classes x seeds
0..N-1, 2 trials per group of 1 epoch each, W&B off: ``5 x N`` groups, ``10 x N`` trials whose own work is
about a second, so the sweep's time is the driver's and Ray's bookkeeping. Printed: the wall time of the
``adgan sweep`` command, the trials finished per 30 s over the first and the last tenth of the time the
trials ran (from ``epochs.parquet``'s ``reported_at``: a kNN trial reports its one epoch as it ends), their
ratio, and the bytes of Tune's storage per trial. With ``--profile SECONDS`` (and py-spy on ``PATH`` or in
``PYSPY``), the driver is profiled for that long once 60% of the trials have finished, into
``<results>/driver-profile.txt``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adgan.sweep.results import read_table  # noqa: E402
from adgan.sweep.storage import location  # noqa: E402


def spec_text(seeds: int) -> str:
    return yaml.safe_dump({
        "name": f"scale-{5 * seeds}",
        "dataset": {"name": "synthetic-images"},
        "classes": "all",
        "seeds": list(range(seeds)),
        "models": {"knn": {"search": {"k": {"type": "int", "low": 1, "high": 20}}}},
        "budget": {"trials_per_group": 2, "max_epochs": 1, "grace_period": 1, "reduction_factor": 2},
        "resources": {"cpus": 1, "gpu": 0},
    }, sort_keys=False)


def per_30s(times: list[float]) -> tuple[float, float, float]:
    """Trials finished per 30 s over the first and the last tenth of [first finish, last finish], and the
    whole span in seconds."""
    t0, t1 = min(times), max(times)
    span = max(t1 - t0, 1e-9)
    first = sum(t <= t0 + span / 10 for t in times)
    last = sum(t >= t1 - span / 10 for t in times)
    return first * 30 / (span / 10), last * 30 / (span / 10), span


def _profile_when_60(proc: subprocess.Popen, results: str, total: int, seconds: float, out: Path) -> None:
    pyspy = os.environ.get("PYSPY") or shutil.which("py-spy")
    if not pyspy:
        print("no py-spy: not profiled", file=sys.stderr)
        return
    while proc.poll() is None:
        done = len(read_table(results, "trials", missing_ok=True))
        if done >= 0.6 * total:
            subprocess.run([pyspy, "record", "--pid", str(proc.pid), "--duration", str(int(seconds)),
                            "--format", "raw", "--output", str(out), "--nonblocking"], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return
        time.sleep(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=200, help="seeds per class (groups = 5 x seeds)")
    parser.add_argument("--results", default=None, help="results root (default: a temporary directory)")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    parser.add_argument("--profile", type=float, default=0.0, help="py-spy the driver this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the results (default: removed)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="adgan-scale-"))
    spec = tmp / "scale.yaml"
    spec.write_text(spec_text(args.seeds))
    root = args.results or str(tmp / "results")
    name = f"scale-{5 * args.seeds}"
    results = f"{root.rstrip('/')}/{name}"
    cmd = [sys.executable, "-m", "adgan.cli", "sweep", str(spec), "--results", root, "--no-wandb",
           "--progress-every", "60"]
    if args.cpus:
        cmd += ["--cpus", str(args.cpus)]
    log = tmp / "sweep.log"
    t0 = time.perf_counter()
    r0 = os.times()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        if args.profile:
            _profile_when_60(proc, results, 10 * args.seeds, args.profile, tmp / "driver-profile.txt")
        rc = proc.wait()
    wall = time.perf_counter() - t0
    r1 = os.times()
    if rc != 0:
        print(log.read_text()[-5000:])
        raise SystemExit(rc)
    epochs = read_table(results, "epochs")
    times = [e["reported_at"].timestamp() for e in epochs]
    first, last, span = per_30s(times)
    loc = location(results).child("tune")
    files = loc.files()
    n_trials = len(read_table(results, "trials"))
    tune_bytes = sum(size for _, size in files)
    print(f"# {5 * args.seeds} groups, {n_trials} trials; command: {' '.join(cmd[1:])}")
    print(f"wall {wall:.1f} s; children user {r1.children_user - r0.children_user:.1f} s, "
          f"sys {r1.children_system - r0.children_system:.1f} s")
    print(f"trials finished per 30 s: first tenth {first:.1f}, last tenth {last:.1f} (ratio first/last "
          f"{first / last if last else float('inf'):.2f}); trials ran over {span:.1f} s")
    per_trial = tune_bytes / max(n_trials, 1) / 1e3
    print(f"Tune's storage: {tune_bytes / 1e6:.2f} MB in {len(files)} files, {per_trial:.1f} KB per trial")
    if args.profile and (tmp / "driver-profile.txt").is_file():
        print(f"profile: {tmp / 'driver-profile.txt'}")
    if not args.keep and not args.profile:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept: {tmp}")


if __name__ == "__main__":
    main()
