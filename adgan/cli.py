"""The ``adgan`` command line: train, score, and (from ``adgan.sweep``) sweep, best, export, report."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from adgan.errors import AdganError, ConfigError, DataError, InputWarning, with_store_hint

TRAIN_HELP = "train one detector on one dataset and anomaly class"
# A best validation AUROC below this is far below chance: a score pointing the wrong way, most likely.
INVERTED_AUROC = 0.2
REPLACED = ".replaced"  # in a run directory: the old run while --overwrite has not yet replaced it


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless it is None or the help already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or "default" in text:
            return text
        return super()._get_help_string(action)


def _add_train(sub: argparse._SubParsersAction) -> None:
    from adgan.data import list_datasets
    from adgan.models import DETECTORS, list_detectors

    cases = "; ".join(f"{m}: {', '.join(DETECTORS.get(m).loss_cases)}" for m in list_detectors())
    p = sub.add_parser(
        "train",
        help=TRAIN_HELP,
        description="Train one detector, scoring the validation split after every epoch, keeping the "
        "checkpoint with the best validation AUPRC and reporting test metrics for it at the end.",
        formatter_class=_DefaultsFormatter,
    )
    p.add_argument("--model", required=True, choices=list_detectors(), help="detector name")
    p.add_argument("--dataset", required=True, metavar="NAME|FILE",
                   help=f"a dataset name ({', '.join(list_datasets())}) or a declaration file of your own "
                   "data (.yaml/.json: image folders, .npz, CSV/Parquet tables; see docs/protocol.md)")
    p.add_argument("--anomaly-class", default=None,
                   help="the class treated as anomalous: its name or index (e.g. Dress or 3; where class "
                   "names are numbers, a number is a name: docs/protocol.md) (default: the first class)")
    p.add_argument("--loss-case", default=None, help=f"loss case (default: the model's first); what each "
                   f"trains and scores with: docs/models.md. {cases}")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and batches")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (GANs)")
    p.add_argument("--batch-size", type=int, default=None, help="minibatch size")
    p.add_argument("--lr", type=float, default=None, help="learning rate")
    p.add_argument("--latent-dim", type=int, default=None, help="latent size")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="any other hyperparameter of the model, e.g. --set w_con=40 (repeatable)",
    )
    p.add_argument("--data-dir", default=None,
                   help="the data root holding <dataset>/ (e.g. mnist/, or torchvision's MNIST/raw/), or "
                   "that folder itself (docs/protocol.md: Where files come from)")
    p.add_argument("--image-size", type=int, choices=(28, 32), default=None,
                   help="image side (default: the model's)")
    p.add_argument("--scale", action=argparse.BooleanOptionalAction, default=None,
                   help="tables: min-max scale features, fitted on train (default: on for declared tables, "
                        "off for kdd99 as in the published figures)")
    p.add_argument("--max-train", type=int, default=None, help="subsample the training normals")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CPU with AMX, or CUDA)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all CPUs given)")
    p.add_argument("--out", required=True, help="run directory (checkpoint/, metrics.jsonl, summary.json)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run already in --out (kept if the new run fails before its first epoch)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out (same options) after its last epoch")
    p.set_defaults(func=cmd_train)


@contextlib.contextmanager
def _resume_hint(out: Path, resumable: bool) -> Iterator[None]:
    """On Ctrl-C during training: say how to continue (the state of every finished epoch is saved)."""
    try:
        yield
    except KeyboardInterrupt:
        done = _epochs_done(out) if resumable else 0
        if done:
            print(f"\nadgan: stopped after epoch {done}; continue with the same command and --resume (the "
                  f"state after each finished epoch is in {out})", file=sys.stderr)
        raise


def _split_sizes(splits: Any) -> str:
    """``train 900 normals, validation 230 (50 anomalies), test 460 (100 anomalies)``: what a run trains and
    is measured on, to check against the data one built."""
    def part(split: Any) -> str:
        k = int(split.y.sum())
        return f"{len(split)} ({k} anomal{'y' if k == 1 else 'ies'})"

    # (the protocols train on normals alone: the training split is said as normals, as part() if ever not)
    train = f"{len(splits.train)} normals" if not splits.train.y.any() else part(splits.train)
    return f"train {train}, validation {part(splits.val)}, test {part(splits.test)}"


def _epochs_done(out: Path) -> int:
    """Epochs an interrupted run in ``out`` logged (for the progress bar of ``--resume``)."""
    log = out / "metrics.jsonl"
    lines = log.read_text().splitlines() if log.is_file() else []
    return sum(1 for line in lines if '"kind": "epoch"' in line)  # (a line cut by a kill counts none)


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as a dict, values parsed as JSON where they are (else kept as text)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AdganError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from adgan.data import list_datasets, resolve_declaration
    from adgan.runfiles import RUN_FILES, TRAIN_LOCK
    from adgan.sweep.lock import ResultsLock
    from adgan.train import resolve_config

    declaration = resolve_declaration(args.dataset)
    if declaration is None and args.dataset.lower().endswith((".yaml", ".yml", ".json")):
        raise ConfigError(f"--dataset {args.dataset}: no such declaration file")
    if declaration is None and args.dataset not in list_datasets():
        raise ConfigError(
            f"--dataset {args.dataset!r}: neither a dataset name ({', '.join(list_datasets())}) nor a "
            "declaration file (.yaml/.yml/.json) of your own data"
        )
    config: dict[str, Any] = {
        "model": args.model, "dataset": declaration["name"] if declaration else args.dataset,
        "dataset_decl": declaration,
        "anomaly_class": 0 if args.anomaly_class is None else args.anomaly_class, "seed": args.seed,
        "data_dir": args.data_dir, "image_size": args.image_size, "scale": args.scale,
        "max_train": args.max_train, "device": args.device, "bf16": args.bf16, "threads": args.threads,
    }
    for key in ("loss_case", "epochs", "batch_size", "lr", "latent_dim"):
        value = getattr(args, key)
        if value is not None:
            config[key] = value
    sets = parse_sets(args.set)
    config.update(sets)
    resolved = resolve_config(config)  # a bad value is reported before the progress bar starts
    given = args.anomaly_class is not None or "anomaly_class" in sets
    print(_class_line(resolved, given=given), file=sys.stderr)
    out = Path(args.out)
    if args.resume and args.overwrite:
        raise AdganError("--resume continues the run in --out, --overwrite replaces it: pass one of them")
    # One process per run folder: a second one (its --resume, its --overwrite) would write the same files.
    with ResultsLock(out, name=TRAIN_LOCK, what="training run", elsewhere="--out"):
        _recover_replaced(out)
        previous = [out / name for name in RUN_FILES if (out / name).exists()]
        if previous and not (args.overwrite or args.resume):
            raise AdganError(
                f"{out} already holds a run ({previous[0].name}); pass --resume to continue it or "
                "--overwrite to replace it"
            )
        with _replacing(out, previous if args.overwrite else []) as new_run_started:
            summary = _train_with_progress(args, config, out, new_run_started)
    if summary.get("status") == "diverged":
        print(f"diverged: {summary['message']}", file=sys.stderr)
        return 3
    print(
        f"best epoch {summary['best_epoch']}: val AUPRC {summary['best_val_auprc']:.4f}; test AUPRC "
        f"{summary.get('test_auprc', math.nan):.4f} AUROC {summary.get('test_auroc', math.nan):.4f} "
        f"F1 {summary.get('test_f1', math.nan):.4f} (top {summary.get('test_q', math.nan):.1%} flagged)\n"
        + "".join(f"at the {name} cutoff chosen on validation ({c['cutoff']:.6g}): test precision "
                  f"{c['precision']:.4f} recall {c['recall']:.4f} F1 {c['f1']:.4f}, false alarms "
                  f"{c['false_alarm_rate']:.1%} (adgan score --flag {name})\n"
                  for name, c in _in_cutoff_order(summary.get("test_at_cutoffs")))
        + f"checkpoint: {summary['checkpoint']}"
    )
    auroc = summary.get("best_val_auroc", math.nan)
    n, anomalies = _validation_counts(summary.get("checkpoint"))
    # (the best epoch's: the others were worse on validation AUPRC; few anomalies reach 0.2 by chance)
    if auroc < INVERTED_AUROC and min(anomalies, n - anomalies) >= 10:
        print(f"adgan: warning: validation AUROC {auroc:.3f} (0.5 = chance): the scores rank the normal "
              "samples above the anomalies; does this detector's score point the wrong way? The contract "
              "is higher = more anomalous (docs/architecture.md)", file=sys.stderr)
    return 0


def _validation_counts(checkpoint: str | None) -> tuple[int, int]:
    """``(samples, anomalies)`` of the validation split a saved detector's cutoffs were chosen on, as its
    ``detector.json`` records them; ``(0, 0)`` where it records none."""
    try:
        meta = json.loads((Path(str(checkpoint)) / "detector.json").read_text()).get("meta") or {}
        facts = meta.get("cutoffs_from") or {}
        return int(facts.get("n", 0)), int(facts.get("n_anomalies", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0, 0


def _in_cutoff_order(figures: Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    """``(name, figures)`` of a run's cutoffs in their fixed order (a resumed run reads them from JSON)."""
    from adgan.metrics import cutoff_order

    return [(name, figures[name]) for name in cutoff_order(figures or {})]


def _class_line(resolved: Mapping[str, Any], given: bool) -> str:
    """Which class the run treats as the anomaly, by name and index (a default, or a number read as a
    name, is never left to guess)."""
    from adgan.data import dataset_classes

    classes = dataset_classes(resolved["dataset"])
    k = int(resolved["anomaly_class"])
    if len(classes) == 1:  # normal vs anomaly: nothing to choose
        return f"anomaly class {classes[0]!r} (the dataset's one class)"
    shown = ", ".join(f"{i}={c}" for i, c in enumerate(classes[:12])) + (" ..." if len(classes) > 12 else "")
    return (f"anomaly class {classes[k]!r} (index {k}; classes {shown})"
            + ("" if given else ": the first class, as no --anomaly-class was given"))


def _recover_replaced(out: Path) -> None:
    """An ``--overwrite`` killed before the new run's first epoch (SIGKILL, out of memory: no ``finally``)
    left the old run in ``out/.replaced``: put it back (the new run's files, if any, had no epoch). Killed
    after, while the old run was being deleted: finish deleting it."""
    from adgan.runfiles import RUN_FILES

    aside = out / REPLACED
    if not aside.is_dir():
        return
    if _epochs_done(out):
        shutil.rmtree(aside, ignore_errors=True)
        return
    _put_back(out, aside, RUN_FILES)
    print(f"adgan: put back the run in {out} that an interrupted --overwrite had set aside", file=sys.stderr)


def _put_back(out: Path, aside: Path, names: Sequence[str]) -> None:
    """Remove the files ``names`` (and code diffs) of a new run in ``out`` and move the set-aside run back."""
    for new in [out / name for name in names] + list(out.glob("code-*.diff")):
        if new.is_dir():
            shutil.rmtree(new)
        elif new.exists():
            new.unlink()
    for path in aside.iterdir():
        path.rename(out / path.name)
    aside.rmdir()


@contextlib.contextmanager
def _replacing(out: Path, previous: Sequence[Path]) -> Iterator[Callable[[], None]]:
    """``--overwrite``: the old run's files (``previous``, in ``out``) are set aside in ``out/.replaced``
    and deleted once the new run has its first result (the caller calls the function yielded), put back if
    it fails before that: a data file the new run refuses, or a typo found on loading, must not cost the
    old run. From its first epoch on the new run is the one to keep (``--resume`` continues it)."""
    from adgan.runfiles import RUN_FILES

    if not previous:
        yield lambda: None
        return
    aside = out / REPLACED  # (none left here: _recover_replaced ran first)
    aside.mkdir()
    old_diffs = list(out.glob("code-*.diff"))  # a dirty checkout's diff, named by the old config.json
    for path in [*previous, *old_diffs]:
        path.rename(aside / path.name)
    started = False

    def new_run_started() -> None:
        nonlocal started
        if not started:
            started = True
            shutil.rmtree(aside, ignore_errors=True)

    try:
        yield new_run_started
    finally:
        if not started:
            _put_back(out, aside, RUN_FILES)
            print(f"adgan: the run in {out} was kept: the new run failed before its first epoch",
                  file=sys.stderr)


def _train_with_progress(args: argparse.Namespace, config: dict[str, Any], out: Path,
                         on_first: Callable[[], None]) -> dict[str, Any]:
    """Run ``train(config)`` with a progress bar and a line per epoch; return its summary record.
    ``on_first()`` is called with the first record (an epoch's, or the summary of a run that ended first)."""
    from tqdm import tqdm

    from adgan.models import DETECTORS
    from adgan.train import load_splits, resolve_config, train

    model_cls = DETECTORS.get(args.model)
    total = int(config.get("epochs", getattr(model_cls.Config, "epochs", 1))) if model_cls.is_iterative else 1
    summary: dict[str, Any] = {}
    done = _epochs_done(out) if args.resume else 0
    if done:
        from adgan.train import RunDir

        RunDir(out).saved_state(resolve_config(config))  # another config: refused, not "resuming"
        print(f"resuming {out} after epoch {done} of {total}", file=sys.stderr)
    splits = load_splits(resolve_config(config))  # before the bar: the data's source line, not inside it
    print(f"splits: {_split_sizes(splits)}", file=sys.stderr)
    # initial=: the epochs of the interrupted run count as done, not as done in no time (the rate, the ETA)
    with tqdm(total=total, initial=done, unit="epoch", desc=args.model, file=sys.stderr,
              dynamic_ncols=True) as bar, _resume_hint(out, model_cls.is_iterative):
        # The training state is saved after every epoch, so that an interrupted run can be resumed.
        for rec in train(config, splits=splits, out=args.out, save_state=model_cls.is_iterative,
                         resume=args.resume):
            on_first()
            if rec["kind"] == "summary":
                summary = rec
                break
            losses = " ".join(f"{k[5:]}={v:.4g}" for k, v in rec.items() if k.startswith("loss_"))
            bar.write(
                f"epoch {rec['epoch']:3d}  val AUPRC {rec['val_auprc']:.4f}  AUROC {rec['val_auroc']:.4f}  "
                f"{losses}  {rec['epoch_seconds']:.1f}s {rec['samples_per_s']:.0f} samples/s"
                + ("  *best" if rec["is_best"] else "")
            )
            bar.update(1)
    return summary


def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score new data with a saved detector",
        description="Write one anomaly score per input row (higher = more anomalous). Input: .npy/.npz "
        "images (N,H,W), (N,C,H,W) or (N,H,W,C), integers 0..255 or floats (in the training .npz's declared "
        "pixel_range, else in [-1,1]; --pixel-range says otherwise); an image file, or a folder of "
        "images (any depth; the output then has a path column, rows in sorted path order); .npy/.npz "
        "tabular (N,D) already in the model's feature space; for a KDD Cup 99 model, .csv raw rows (41 "
        "features, optional label column); for a model trained on a declared table, its CSV (header row) "
        "or Parquet file; for a model trained on plain rows (.npz), a numeric CSV without header or a "
        "Parquet file of numeric columns. "
        "Category values the model's training rows did not hold are encoded as none of the known ones, with "
        "a warning that counts them; --strict refuses them.",
    )
    p.add_argument("--checkpoint", required=True,
                   help="run directory or checkpoint directory (a path, or a URI such as s3://bucket/... "
                   "of a sweep's results)")
    p.add_argument("--input", required=True, action=_Once,
                   help=".npy/.npz/.csv/.parquet file, image file or image folder (one; a folder for many "
                   "images)")
    p.add_argument("--output", default=None, action=_Once, help="output CSV file, .csv (default: "
                   "<input>.scores.csv; '-' = stdout)")
    p.add_argument("--pixel-range", nargs=2, type=float, metavar=("BLACK", "WHITE"), default=None,
                   help="the values of black and white in float images (.npy/.npz), e.g. 0 1 or 0 255 "
                   "(default: the pixel_range declared for the training .npz, else -1 1, model space)")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--strict", action="store_true",
                   help="refuse rows whose category values the model's training rows did not hold "
                   "(default: encode them as none of the known values and warn)")
    p.add_argument("--flag", default=None, metavar="CUTOFF",
                   help="also write a 'flagged' column (1 = score at or above the cutoff): best-f1, "
                   "fpr-5%% or fpr-1%% (cutoffs the checkpoint chose on its validation split: the highest "
                   "F1 there, or at most 5%%/1%% of its normals flagged; see MODEL_CARD.md), or a score")
    p.add_argument("--keep", action="append", default=[], metavar="COLUMN",
                   help="copy this column of the input table (CSV with a header row, or Parquet) into the "
                   "output, before the score: an id or a time to join the scores on; it need not be a "
                   "feature of the model (repeatable)")
    p.set_defaults(func=cmd_score)


def resolve_checkpoint(path: str | Path) -> Path:
    """Accept a run directory (holding ``checkpoint/``) or a checkpoint directory itself."""
    path = Path(path)
    if (path / "detector.json").is_file():
        return path
    if (path / "checkpoint" / "detector.json").is_file():
        return path / "checkpoint"
    raise DataError(
        f"{path}: no detector checkpoint here (expected detector.json or checkpoint/detector.json)"
    )


def cmd_score(args: argparse.Namespace) -> int:
    import csv
    import io

    import numpy as np

    from adgan.data import prepare_file, prepare_image_folder
    from adgan.models import Detector
    from adgan.models.base import scores_of, torch_device

    device = torch_device(args.device, "--device")  # before a checkpoint is fetched from a store
    from adgan.runfiles import NOT_DETECTOR_FILES
    from adgan.sweep.storage import is_uri, local_copy

    # A checkpoint on an object store (a URI of a sweep's results, e.g. s3://...) is read from a local copy.
    with local_copy(args.checkpoint, skip=NOT_DETECTOR_FILES) as checkpoint:
        try:
            detector = Detector.load(resolve_checkpoint(checkpoint), device=device)
        except DataError as exc:  # (a downloaded copy: the message names the URI, not a deleted temp folder)
            if not is_uri(args.checkpoint):
                raise
            raise DataError(str(exc).replace(str(checkpoint), str(args.checkpoint).rstrip("/"))) from None
    src = Path(args.input)
    if not (src.is_file() or src.is_dir()):
        raise DataError(f"{src}: input file or folder not found")
    dest = args.output or str(src) + ".scores.csv"
    if dest != "-":
        _check_output(Path(dest), src)  # before scoring: a bad name fails at once, not after minutes
    cutoff = _cutoff(detector.meta, args.flag, args.checkpoint) if args.flag is not None else None
    info = detector.meta.get("data")
    if not info:
        raise DataError(f"{args.checkpoint}: the checkpoint records no data preprocessing facts")
    paths: list[str] | None = None
    kept = _kept(src, info, args.keep, args.flag is not None)  # before scoring: a wrong name fails at once
    with warnings.catch_warnings():  # every warning about the input said (one line each: main's hook)
        warnings.simplefilter("always", InputWarning)
        if src.is_dir():  # rows in sorted relative-path order, written beside the scores
            x, paths = prepare_image_folder(src, info)
        else:
            x = prepare_file(src, info, strict=args.strict, pixel_range=args.pixel_range, keep=args.keep)
    scores = scores_of(detector, x)
    if any(len(values) != len(scores) for _, values in kept):  # (the scores' own reader: a guard)
        raise DataError(f"{src}: {len(kept[0][1])} rows in the kept columns, {len(scores)} scores")
    columns = [[repr(float(s)) for s in scores]]  # (the shortest text that reads back as the same float)
    unscored = np.isnan(scores)
    if unscored.any():  # the contract allows NaN: a row the detector could not score (never "normal")
        print(f"adgan: warning: {int(unscored.sum())} of {len(scores)} scores are NaN (the first at row "
              f"{int(np.argmax(unscored)) + 1}): the detector could not score those rows"
              + ("; their flagged cell is left empty" if cutoff is not None else ""), file=sys.stderr)
    header = ["score"]
    if cutoff is not None:
        flagged = scores >= cutoff
        columns.append(["" if u else "1" if f else "0" for f, u in zip(flagged, unscored, strict=True)])
        header.append("flagged")
        print(f"flagged {int(flagged.sum())} of {len(scores) - int(unscored.sum())} scored rows at score "
              f"cutoff {cutoff:.9g} ({args.flag})", file=sys.stderr)
    if paths is not None:
        columns.insert(0, paths)
        header.insert(0, "path")
    for name, values in reversed(kept):  # (first, in the order given)
        columns.insert(0, values)
        header.insert(0, name)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(zip(*columns, strict=True))
    if dest == "-":
        sys.stdout.write(buf.getvalue())
    else:
        _write_output(Path(dest), buf.getvalue())
        print(f"wrote {len(scores)} score{'s' if len(scores) != 1 else ''} to {dest}", file=sys.stderr)
    return 0


def _kept(src: Path, info: dict[str, Any], names: Sequence[str], flags: bool) -> list[tuple[str, list[str]]]:
    """``adgan score --keep``: the input's columns ``names`` with their values, one per data row."""
    if not names:
        return []
    from adgan.data import kept_columns

    for name in names:
        if name == "score" or (name == "flagged" and flags):
            raise ConfigError(f"--keep {name}: the output has a column of that name already (adgan's)")
        if names.count(name) > 1:
            raise ConfigError(f"--keep {name}: given twice")
    return list(zip(names, kept_columns(src, info, names), strict=True))


def _check_output(dest: Path, src: Path) -> None:
    """Refuse an ``--output`` the scores cannot or should not be written to (``ConfigError``)."""
    if src.is_file() and dest.resolve() == src.resolve():
        raise ConfigError(f"--output {dest}: that is the input file; the scores would replace the data")
    if not dest.parent.is_dir():
        raise ConfigError(f"--output {dest}: no folder {dest.parent} to write it in")
    if dest.is_dir():
        raise ConfigError(f"--output {dest}: that is a folder; give the name of the CSV file to write")
    if dest.suffix.lower() not in ("", ".csv", ".txt"):
        # (the scores are written as CSV whatever the name: a .npy or .parquet of CSV text fails later)
        raise ConfigError(f"--output {dest}: adgan score writes CSV (a 'score' column, and 'path' for a "
                          f"folder of images); give a .csv name, not {dest.suffix!r}")


def _write_output(dest: Path, text: str) -> None:
    """The scores' CSV ``text`` to ``dest``: a file replaced atomically (an interrupted run leaves the
    previous file, not half of one); a named pipe or a device (/dev/stdout, >(gzip ...)) written through."""
    from adgan.atomic import write_atomic

    target = dest.resolve()  # (a link: its target is written, the link kept)
    if not target.exists() or target.is_file():
        write_atomic(target, text)
    else:
        with open(target, "w") as out:
            out.write(text)


def _cutoff(meta: Mapping[str, Any], flag: str, checkpoint: str) -> float:
    """The score cutoff ``--flag`` names: a cutoff the checkpoint chose on validation, or a number."""
    chosen = meta.get("cutoffs") or {}
    if flag in chosen:
        return float(chosen[flag]["cutoff"])
    try:
        value = float(flag)
    except ValueError:
        value = math.nan
    if math.isfinite(value):
        return value
    if not chosen:
        raise ConfigError(f"--flag {flag}: {checkpoint} records no cutoffs chosen on validation (trained by "
                          "an adgan before them); give a score value, or train it again")
    raise ConfigError(f"--flag {flag}: expected one of {', '.join(chosen)} (cutoffs {checkpoint} chose on "
                      "validation) or a finite score value")


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (its first word that is not an option), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


class _Once(argparse.Action):
    """An option that takes one value: given twice, an error (argparse would keep the last silently, and
    ``--input a.png --input b.png`` would score b.png alone)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if getattr(namespace, self.dest, None) not in (None, self.default):
            parser.error(f"{option_string} given twice; it takes one value"
                         + (" (a folder of images scores all of them)" if self.dest == "input" else ""))
        setattr(namespace, self.dest, values)


class _Version(argparse.Action):
    """``--version``: computed when asked for (it runs git), not when the parser is built."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from adgan.version import versions

        print(versions())
        parser.exit()


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``adgan`` parser. Given the command line ``argv``, the ``train`` subcommand's options (whose
    choices list the registered models and datasets, importing torch) are built only when ``train`` is
    the command, so that the other commands start quickly."""
    parser = argparse.ArgumentParser(
        prog="adgan", description="GAN-based anomaly detection toolbox",
        epilog="Detectors and datasets of one's own: ADGAN_PLUGINS=<module or .py file>[:...] loads their "
               "plugins in every command (docs/architecture.md; a sweep spec names its own in plugins:).")
    parser.add_argument("--version", action=_Version, help="print adgan's version and its libraries'")
    sub = parser.add_subparsers(dest="command", required=True)
    if argv is None or _command(argv) == "train":
        _add_train(sub)
    else:
        sub.add_parser("train", help=TRAIN_HELP, add_help=False)
    _add_score(sub)
    from adgan.report import register_commands as register_report
    from adgan.sweep.cli import register_commands as register_sweep

    register_sweep(sub)
    register_report(sub)
    return parser


# The commands that build or load detectors, and so need the plugins of ADGAN_PLUGINS.
_NEED_PLUGINS = ("train", "score", "sweep")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from adgan import plugins

        plugins.load_env()  # detectors of one's own (ADGAN_PLUGINS), before the models are listed
    except AdganError as exc:
        if _command(argv) in _NEED_PLUGINS:
            print(f"adgan: error: {exc}", file=sys.stderr)
            return 2
        # Reading results (best, report, export), help: no detector class is needed, so a broken plugin
        # does not stop them.
        print(f"adgan: warning: {exc} (not needed by this command: going on)", file=sys.stderr)
    args = build_parser(argv).parse_args(argv)
    shown = warnings.showwarning
    warnings.showwarning = _input_warnings_as_lines(shown)
    try:
        return int(args.func(args) or 0)
    except AdganError as exc:
        print(f"adgan: error: {with_store_hint(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `adgan best ... | head`: the reader is gone; nothing to say to it
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # (else Python reports the pipe again at exit)
        return 141
    except OSError as exc:  # a path that cannot be read or written: the message names it
        said = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
        print(f"adgan: error: {with_store_hint(said)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("adgan: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown
        # Arrow objects (an object store's file system, a Parquet reader) left in reference cycles are
        # freed now, while Arrow's runtime is alive: freed in the interpreter's final teardown, their
        # threads can abort the process after its work is done ("terminate called without an active
        # exception", apache/arrow#34314).
        gc.collect()


def _input_warnings_as_lines(show: Callable[..., None]) -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints adgan's own warnings about the user's input
    (``InputWarning``) as one line, as its errors are, and passes any other warning to ``show``."""

    def show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                     file: Any = None, line: str | None = None) -> None:
        if issubclass(category, InputWarning):
            from tqdm import tqdm

            tqdm.write(f"adgan: warning: {message}", file=sys.stderr)  # (above a progress bar, if one runs)
        else:
            show(message, category, filename, lineno, file, line)

    return show_warning


if __name__ == "__main__":
    sys.exit(main())
