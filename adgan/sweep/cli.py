"""``adgan sweep``, ``adgan best`` and ``adgan export``: registered into the main ``adgan`` parser."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

from adgan.errors import ConfigError


def register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sweep``, ``specs``, ``best`` and ``export`` subcommands (each sets ``func``)."""
    p = subparsers.add_parser(
        "sweep",
        help="run a hyperparameter sweep from a spec (Ray Tune + Optuna + ASHA per group)",
        description="Run the sweep described by SPEC: one Optuna search and one ASHA per (model, class, "
        "loss case, seed) group, all in one Ray Tune queue. Results go to <results>/<sweep name>/ as "
        "Parquet (epochs, trials, best), W&B runs offline unless you are logged in.",
    )
    p.add_argument("spec", help="sweep spec YAML, e.g. sweeps/mnist.yaml, or a shipped spec's name (see "
                   "adgan specs)")
    p.add_argument("--address", default=None, help="join an existing Ray cluster (e.g. 10.0.0.1:6379)")
    p.add_argument("--max-concurrent", type=int, default=None, help="at most N trials at once")
    p.add_argument("--results", default=None,
                   help="results root (default: the spec's 'results'): a path, or an object-store URI "
                   "such as s3://bucket/prefix or gs://bucket/prefix (credentials from the environment; an "
                   "S3-compatible endpoint from AWS_ENDPOINT_URL)")
    p.add_argument("--optuna-storage", default=None, metavar="FILE",
                   help="the Optuna journal file (default: optuna.journal in the results directory; for "
                   "results on an object store, on this machine under ~/.adgan/sweeps/)")
    p.add_argument("--resume", action="store_true", help="continue a sweep whose driver was stopped")
    p.add_argument("--no-wandb", action="store_true", help="do not log to Weights & Biases")
    p.add_argument("--budget", default="default", help="a named budget of the spec, e.g. 'full'")
    p.add_argument("--cpus", type=int, default=None, help="CPUs of a local Ray (default: all)")
    p.add_argument(
        "--gpu",
        type=float,
        default=None,
        help="GPU share per trial, overriding the spec's resources.gpu (e.g. 0.25: four trials per GPU)",
    )
    p.add_argument(
        "--max-failures",
        type=int,
        default=2,
        help="retries of a trial whose worker died (Ray Tune FailureConfig)",
    )
    p.add_argument("--progress-every", type=float, default=30.0, help="seconds between progress lines")
    p.add_argument("--dashboard", action="store_true", help="start Ray's dashboard (local Ray, on 127.0.0.1)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (groups, trials, epochs, resources, slots) and an estimate of wall time and "
        "CPU/GPU-hours, then exit; starts no Ray (with --address it connects to count the cluster's slots)",
    )
    p.set_defaults(func=cmd_sweep)

    p = subparsers.add_parser("specs", help="list the example sweep specs shipped with adgan")
    p.set_defaults(func=cmd_specs)

    p = subparsers.add_parser("best", help="print each group's and each class's best configuration")
    p.add_argument("results", help="results directory of a sweep, e.g. results/mnist")
    p.set_defaults(func=cmd_best)

    p = subparsers.add_parser("export", help="export the chosen checkpoints for `adgan score`")
    p.add_argument("results", help="results directory of a sweep")
    p.add_argument("--out", required=True, help="directory receiving one checkpoint directory each")
    p.add_argument(
        "--per",
        choices=("group", "class"),
        default="class",
        help="class (default): the recommended detector of each class (best validation AUPRC over every "
        "model), with a MODEL_CARD.md; group: every group's chosen trial",
    )
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser(
        "upgrade",
        help="rewrite the results of an older adgan (schema version 1) in the current schema",
        description="Rewrite epochs/trials/best.parquet of schema version 1 as version 2 (adgan reads "
        "version 1 anyway, upgrading it in memory). The split sizes version 1 did not record, which the "
        "chance flag needs, are recomputed by loading each group's data (the dataset's files are needed).",
    )
    p.add_argument("results", help="results directory of a sweep")
    p.add_argument("--no-sizes", action="store_true", help="do not load the data to fill the split sizes")
    p.set_defaults(func=cmd_upgrade)


def cmd_sweep(args: argparse.Namespace) -> int:
    import os

    if args.address is None:
        # A local Ray on the loopback address only. Ray replaces a 127.0.0.1 node address by the machine's
        # outward one unless it runs as a local-only instance, which this (import-time) setting selects.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    from adgan.sweep.best import best_table, has_answer
    from adgan.sweep.runner import run_sweep
    from adgan.sweep.spec import load_spec, with_gpu

    for option, value, low in (("--cpus", args.cpus, 1), ("--max-concurrent", args.max_concurrent, 1),
                               ("--max-failures", args.max_failures, 0)):
        if value is not None and value < low:
            raise ConfigError(f"{option}: expected an integer >= {low}, got {value}")
    if not args.progress_every > 0:
        raise ConfigError(f"--progress-every: expected seconds > 0, got {args.progress_every}")
    spec = load_spec(args.spec, budget=args.budget)  # refused here, before Ray starts
    if args.gpu is not None:
        spec = with_gpu(spec, args.gpu)
    if args.dry_run:
        from adgan.sweep.plan import plan_text
        from adgan.sweep.runner import available_dataset, check_resumable

        spec = available_dataset(spec)
        if args.resume:  # refused as the resume itself would refuse it
            check_resumable(spec, args.results)
        print(plan_text(spec, address=args.address, num_cpus=args.cpus, max_concurrent=args.max_concurrent,
                        results_root=args.results, resume=args.resume))
        return 0
    out = run_sweep(
        spec,
        address=args.address,
        max_concurrent=args.max_concurrent,
        results_root=args.results,
        resume=args.resume,
        use_wandb=not args.no_wandb,
        num_cpus=args.cpus,
        max_failures=args.max_failures,
        progress_every=args.progress_every,
        dashboard=args.dashboard,
        optuna_storage=args.optuna_storage,
    )
    from adgan.sweep.plan import cost_summary

    print(best_table(out))
    print(f"\nresults: {out}\n{cost_summary(out)}")
    if not has_answer(out):  # a sweep that answered nothing has failed, whatever Tune made of its trials
        print("adgan: error: no group of the sweep ended with a checkpoint: nothing to recommend or export "
              "(the reasons of errored trials are listed above)", file=sys.stderr)
        return 1
    return 0


def _first_sentence(text: str) -> str:
    """The first sentence of a spec's leading comment block (which may run over several lines)."""
    words = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        words.append(line.lstrip("#").strip())
    block = " ".join(w for w in words if w)
    end = re.search(r"(?<!e\.g)(?<!i\.e)\.(\s|$)", block)  # (not at "e.g. ")
    return block[: end.start() + 1] if end else block


def cmd_specs(args: argparse.Namespace) -> int:
    """List the shipped specs: name, first comment line, path."""
    from adgan.sweep.spec import packaged_specs

    specs = packaged_specs()
    for name, path in specs.items():
        print(f"{name:<15} {_first_sentence(path.read_text())}")
    print(f"\nrun one with: adgan sweep <name> [--dry-run]   (files in {next(iter(specs.values())).parent})"
          if specs else "no shipped specs found", file=sys.stderr)
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    from adgan.sweep.best import best_table, unfinished_note

    print(best_table(args.results))
    note = unfinished_note(args.results)
    if note:
        print(note, file=sys.stderr)
    return 0


def cmd_upgrade(args: argparse.Namespace) -> int:
    from adgan.sweep.results import upgrade_directory

    done = upgrade_directory(args.results, fill_sizes=not args.no_sizes)
    print(f"{args.results}: " + (f"rewrote {', '.join(done)} in schema version 2" if done
                                 else "already in the current schema; nothing to do"))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from adgan.sweep.best import export, unfinished_note

    note = unfinished_note(args.results)
    if note:
        print(note, file=sys.stderr)
    left_out: list[str] = []
    for path in export(args.results, args.out, per=args.per, left_out=left_out):
        print(path)
    for label in left_out:
        print(f"note: class {label} not exported: no trial of it ended with a checkpoint (adgan best lists "
              "its groups and why)", file=sys.stderr)
    folder = shlex.quote(str(Path(args.out))) + "/<name>"  # (quoted: a pasted path with a space stays one)
    print(f"score with: adgan score --checkpoint {folder} --input FILE", file=sys.stderr)
    return 0
