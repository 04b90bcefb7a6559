"""Testing each group's chosen trial, printing the answer (``adgan best``), exporting it (``adgan export``).

The choices follow :mod:`adgan.sweep.recommend` (validation only): within a group the chosen trial, per
class the recommended detector. A finished group's chosen checkpoint is scored once on the test split
(:func:`evaluate_best`). Exports are plain detector directories (``detector.json`` + ``state.pt``, whose
metadata holds the config, data provenance and preprocessing facts) plus ``sweep_result.json`` and, per
class, a ``MODEL_CARD.md``; ``adgan score`` loads them with neither Ray nor W&B.

Results may be on an object store (``adgan.sweep.storage``): checkpoints are then URIs, scored from a
temporary local copy and exported by copying their files down; the export itself is always local.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from adgan.atomic import write_atomic
from adgan.errors import DataError, clip
from adgan.jsontext import json_text
from adgan.metrics import cutoff_order
from adgan.runfiles import NOT_DETECTOR_FILES, PLUGIN_DIR, TUNE_EXPERIMENT
from adgan.sweep.recommend import (
    Recommendation,
    beats_chance,
    finite,
    fit_rows,
    groups_without_result,
    recommend,
    scored,
    select_best,
    test_at_cutoffs,
    trials_compared,
    unanswered,
    unfinished_text,
)
from adgan.sweep.results import read_table
from adgan.sweep.storage import Location, local_copy, location

TEST_METRICS = ("auprc", "auroc", "auprc_trapz", "f1", "precision", "recall", "threshold", "q")


def evaluate_best(group_trials: list[Mapping[str, Any]], class_name: str) -> dict[str, Any]:
    """The ``best.parquet`` row of one finished group: its chosen trial scored once on test."""
    from adgan import metrics
    from adgan.models import DETECTORS, Detector
    from adgan.models.base import scores_of
    from adgan.sweep.trial import as_started, splits_for
    from adgan.train import figures_at_cutoffs, resolve_config

    first = group_trials[0]
    counts = {
        s: sum(t.get("status") == s for t in group_trials)
        for s in ("completed", "stopped early", "diverged", "errored")
    }
    row: dict[str, Any] = {
        **{k: first.get(k) for k in ("sweep", "group_id", "model", "dataset", "anomaly_class", "loss_case",
                                     "seed")},
        "family": first.get("family") or DETECTORS.get(str(first["model"])).family,
        "class_name": class_name,
        "n_trials": len(group_trials),
        "n_completed": counts["completed"],
        "n_stopped": counts["stopped early"],
        "n_diverged": counts["diverged"],
        "n_errored": counts["errored"],
        "n_scored": sum(scored(t) for t in group_trials),
    }
    best = select_best(group_trials)
    if best is None:
        return row
    config = json.loads(best["config"]) if isinstance(best["config"], str) else dict(best["config"])
    splits = splits_for(resolve_config(as_started(config)))
    # A URI on an object store: the detector's files downloaded first (not the training state, which the
    # driver may be deleting meanwhile: adgan.sweep.callback).
    with local_copy(best["checkpoint"], skip=NOT_DETECTOR_FILES) as path:
        detector = Detector.load(path)
    scores = scores_of(detector, splits.test.x)
    test = metrics.evaluate(splits.test.y, scores)
    row.update({
        "trial_id": best["trial_id"], "params": best["params"], "config": best["config"],
        "val_auprc": best["best_val_auprc"], "val_auroc": best["best_val_auroc"],
        "best_epoch": best["best_epoch"], "checkpoint": best["checkpoint"],
        "n_test": len(splits.test), "n_test_anomalies": int(splits.test.y.sum()),
        "n_train": len(splits.train), "n_val": len(splits.val), "n_val_anomalies": int(splits.val.y.sum()),
        "fit_seconds": best.get("fit_seconds"), "data_source": best.get("data_source"),
        "code_version": best.get("code_version"),
        **{f"test_{k}": test.get(k) for k in TEST_METRICS},
        "test_at_cutoffs": json.dumps(figures_at_cutoffs(detector, splits.test.y, scores), sort_keys=True),
    })
    return row


def group_beats_chance(row: Mapping[str, Any]) -> bool | None:
    """Whether a ``best.parquet`` row's validation AUPRC is better than chance (None: unknown)."""
    return beats_chance(row.get("val_auprc"), row.get("n_val"), row.get("n_val_anomalies"),
                        trials_compared([row]))


def _fmt(v: Any, digits: int = 4) -> str:
    return f"{v:.{digits}f}" if finite(v) else "-"


def _params(p: Any) -> str:
    d = json.loads(p) if isinstance(p, str) else (p or {})
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(d.items()))


def _with_spread(mean: Any, std: Any, digits: int = 3) -> str:
    return _fmt(mean, digits) + (f"±{std:.{digits}f}" if finite(std) else "")


def _detector(model: str | None, case: str | None) -> str:
    if model is None:
        return "-"
    return model if case in (None, "default") else f"{model} [{case}]"


CHANCE_NOTE = ("! = no better than chance on validation: the AUPRC is below the 95th percentile of the best "
               "of as many random rankings of that validation split as trials were compared (docs/sweeps.md)")


def _class_label(index: int, name: str | None) -> str:
    """``3 Dress``, or ``3`` alone where the class has no name of its own."""
    return str(index) if (name or "") in ("", str(index)) else f"{index} {name}"


def recommendation_lines(recs: Sequence[Recommendation], rows: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """The per-class recommendation table of ``adgan best`` (and the end of ``adgan sweep``); a class of
    ``rows`` (``best`` rows) without a recommendation (no trial of it ended with a checkpoint) says so."""
    lines = [
        "recommended detector per class: best validation AUPRC over every model (mean over seeds); test "
        "AUPRC is the estimate for it, never used to choose",
        f"{'class':<16} {'detector':<20} {'val AUPRC':>10} {'test AUPRC':>13} {'chance':>6} "
        f"{'single model':>13} {'kNN':>6}  settings",
    ]
    for rec in recs:
        c, r = rec.chosen, rec.row()
        flag = "!" if rec.beats_chance is False else " "
        single = rec.single_model
        label = _class_label(c.anomaly_class, c.class_name)[:16]
        lines.append(
            f"{label:<16} {_detector(c.model, c.loss_case)[:20]:<20} "
            f"{_fmt(c.val_auprc, 3) + flag:>10} {_with_spread(c.test_auprc, c.test_auprc_std):>13} "
            f"{_fmt(rec.test_chance, 3):>6} "
            f"{(_fmt(single.test_auprc, 3) + ' ' + single.model) if single else '-':>13} "
            f"{_fmt(rec.knn.test_auprc, 3) if rec.knn else '-':>6}  {_params(r['params'])}"
        )
    for _, cls, name in unanswered(recs, rows):
        label = _class_label(cls, name)[:16]
        lines.append(f"{label:<16} no answer: no trial of this class ended with a checkpoint (every group "
                     "below errored, or diverged before its first scored epoch)")
    if any(rec.beats_chance is False for rec in recs):
        lines.append(CHANCE_NOTE)
    return lines


def _spec_json(results_dir: str | Path) -> dict[str, Any]:
    """The sweep's ``spec.json`` as the runner wrote it; empty when it is missing or unreadable."""
    try:
        return json.loads(location(results_dir).child("spec.json").read_text())
    except (OSError, ValueError, DataError):
        return {}


def _best_rows(results_dir: str | Path) -> list[dict[str, Any]]:
    """The best table's rows; none (not an error) for a sweep none of whose groups has ended yet."""
    is_sweep = location(results_dir).child("spec.json").is_file()
    return read_table(results_dir, "best", missing_ok=is_sweep)


def _groups_without_result(
    results_dir: str | Path, best_rows: Sequence[Mapping[str, Any]] | None = None
) -> tuple[list[str], list[str]]:
    """(planned group ids, those without a row in ``best``); ``best_rows``: that table, when already read."""
    planned = _spec_json(results_dir).get("groups") or []  # (none before adgan recorded its groups)
    rows = _best_rows(results_dir) if best_rows is None else best_rows
    return planned, groups_without_result(planned, rows)


def unfinished_note(results_dir: str | Path) -> str | None:
    """``unfinished_text`` of the sweep in ``results_dir`` (None when every planned group has a result)."""
    return unfinished_text(*_groups_without_result(results_dir))


def best_table(results_dir: str | Path) -> str:
    """What ``adgan best`` prints: the recommendation per class, then every group's chosen trial."""
    rows = sorted(_best_rows(results_dir),
                  key=lambda r: (r["dataset"], r["anomaly_class"], r["model"], r["loss_case"], r["seed"]))
    if not rows:
        return "\n".join([f"{results_dir}: no group has finished yet", *error_lines(results_dir)])
    lines = recommendation_lines(recommend(rows), rows) + [
        "",
        "every group's chosen trial (validation AUPRC decides; test AUPRC shown)",
        f"{'class':<14} {'model':<9} {'loss case':<12} {'seed':>4} {'val AUPRC':>10} {'test AUPRC':>10} "
        f"{'test AUROC':>10} {'test F1':>7}  hyperparameters",
    ]
    flagged = False
    for r in rows:
        cls = _class_label(r["anomaly_class"], r["class_name"])[:14]
        flag = "!" if r["checkpoint"] and group_beats_chance(r) is False else " "
        flagged |= flag == "!"
        lines.append(
            f"{cls:<14} {r['model']:<9} {r['loss_case']:<12} {r['seed']:>4} "
            f"{_fmt(r['val_auprc']) + flag:>10} "
            f"{_fmt(r['test_auprc']):>10} {_fmt(r['test_auroc'], 3):>10} {_fmt(r['test_f1'], 3):>7}  "
            + (_params(r["params"]) if r["checkpoint"] else "no trial finished with a checkpoint")
        )
    if flagged:
        lines.append(CHANCE_NOTE)
    return "\n".join(lines + error_lines(results_dir))


def error_reasons(trials: Iterable[Mapping[str, Any]]) -> list[tuple[int, str, str, str]]:
    """Why trials errored: ``(count, reason, a group id, a trial id)`` per distinct reason (the message's
    last line, the exception; one reason whatever values it names: k=20 and k=33 "need at least #
    samples"), the most frequent first."""
    reasons: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for t in trials:
        if t.get("status") != "errored":
            continue
        text = [line.strip() for line in str(t.get("message") or "").splitlines() if line.strip()]
        reason = text[-1] if text else "(no message recorded)"
        reasons.setdefault(re.sub(r"\d+(\.\d+)?", "#", reason), []).append((reason, t))
    ranked = sorted(reasons.values(), key=lambda group: -len(group))
    return [(len(g), g[0][0], str(g[0][1].get("group_id")), str(g[0][1].get("trial_id"))) for g in ranked]


def error_lines(results_dir: str | Path, limit: int = 3) -> list[str]:
    """``error_reasons`` of the sweep's trials as lines (``limit`` reasons), none when no trial errored:
    said where the sweep's answer is read (``adgan best``, the end of ``adgan sweep``), not left in
    ``trials.parquet``'s ``message`` column."""
    ranked = error_reasons(read_table(results_dir, "trials", missing_ok=True))
    if not ranked:
        return []
    total = sum(n for n, *_ in ranked)
    lines = ["", f"{total} trial(s) errored ({len(ranked)} reason(s); each trial's whole message is in "
                 "trials.parquet's message column):"]
    for n, reason, group, trial in ranked[:limit]:
        lines.append(f"  {n} x {clip(reason, 300)}  (e.g. group {group}, trial {trial})")
    if len(ranked) > limit:
        lines.append(f"  ... and {len(ranked) - limit} other reason(s)")
    return lines


def has_answer(results_dir: str | Path) -> bool:
    """Whether some group of the sweep ended with a chosen checkpoint (something to recommend)."""
    return any(r["checkpoint"] for r in _best_rows(results_dir))


def export(results_dir: str | Path, out: str | Path, *, per: str = "class",
           left_out: list[str] | None = None) -> list[Path]:
    """Copy the recommended detector of each class (``per="class"``, the default; with a ``MODEL_CARD.md``)
    or each group's chosen checkpoint (``per="group"``) to ``out/<name>/`` with a ``sweep_result.json``.
    ``left_out``: where given, the classes with groups but no recommended detector (no trial of theirs
    ended with a checkpoint), labelled as ``adgan best`` shows them, are appended to it.

    Raises:
        DataError: No results, or a chosen checkpoint directory is missing.
    """
    if per not in ("group", "class"):
        raise DataError(f"export: per must be 'group' or 'class', got {per!r}")
    best = _best_rows(results_dir)
    rows = [r for r in best if r["checkpoint"]]
    if not rows:
        raise DataError(f"{results_dir}: no group has a chosen checkpoint yet")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: a file, not a folder; export writes a folder per model into it")
    if per == "class":
        groups = _groups_without_result(results_dir, best)
        recs = recommend(rows)
        plan = [(rec.chosen.representative, _class_folder(rec.chosen.representative), rec) for rec in recs]
        if left_out is not None:
            left_out += [_class_label(cls, name) for _, cls, name in unanswered(recs, best)]
    else:
        plan = [(r, f"{_class_folder(r)}_{r['model']}_{r['loss_case']}_s{r['seed']}", None) for r in rows]
    # Every destination and source checked before anything is copied: an export that stops half-way would
    # leave --out holding some classes of this sweep beside others of an earlier one.
    dests = [out / _safe(name) for _, name, _ in plan]
    # (one folder on case-insensitive file systems, and on macOS's, which also equate Unicode forms)
    folded = [unicodedata.normalize("NFC", d.name).casefold() for d in dests]
    if len(set(folded)) < len(folded):
        twice = next(d for d, f in zip(dests, folded, strict=True) if folded.count(f) > 1)
        raise DataError(f"export: two models would be written to {twice} (names that differ only in "
                        "letter case or in characters a folder name cannot hold); export with --per group, "
                        "or rename a class")
    for (row, _, _), dest in zip(plan, dests, strict=True):
        _check_source(row, results_dir)
        if dest.exists() or dest.is_symlink():
            _check_replaceable(dest, row)
    written = []
    for (row, _, rec), dest in zip(plan, dests, strict=True):
        _copy_detector(row, dest, results_dir)
        if rec is not None:
            write_atomic(dest / "MODEL_CARD.md", model_card(rec, results_dir, dest, groups))
        written.append(dest)
    return written


def _class_folder(row: Mapping[str, Any]) -> str:
    """``<dataset>_c<index>``, plus ``-<class name>`` where the class has a name of its own
    (``fashion-mnist_c3-Dress``): class folders named ``1``, ``10``, ``2`` are indices 0, 1, 2, and
    ``_c1`` alone would read as class "1" while it holds class "10"."""
    label = _class_label(row["anomaly_class"], row["class_name"]).replace(" ", "-", 1)
    return f"{row['dataset']}_c{label.rstrip('.')}"  # (KDD99's "normal.": no name ending in a dot)


def _safe(name: str) -> str:
    """A folder name of letters, digits and ``-_.+``, not ending in a dot (which Windows drops)."""
    return "".join(ch if ch.isalnum() or ch in "-_.+" else "_" for ch in name).rstrip(".") or "_"


def checkpoint_in(results_dir: str | Path, recorded: str) -> Location:
    """Where a checkpoint recorded in the results is now: inside ``results_dir`` when the results were moved
    or copied there (a cluster's results synced to a laptop, a renamed folder; recorded paths are
    absolute), else where it was recorded (a local directory, or one on an object store)."""
    parts = recorded.rstrip("/").split("/")
    if TUNE_EXPERIMENT in parts:  # <sweep dir>/tune/<trial>/checkpoint_*: its last "tune" is the sweep's
        i = len(parts) - 1 - parts[::-1].index(TUNE_EXPERIMENT)
        here = location(results_dir).child(*parts[i:])
        if here.child("detector.json").is_file():
            return here
    return location(recorded)


def _check_source(row: Mapping[str, Any], results_dir: str | Path) -> Location:
    """The chosen checkpoint of ``row``, found (a DataError naming it where it is missing)."""
    src = checkpoint_in(results_dir, row["checkpoint"])
    if not src.child("detector.json").is_file():
        raise DataError(f"{row['checkpoint']}: chosen checkpoint of {row['group_id']} is missing, and "
                        f"{location(results_dir).uri} holds no copy of it under {TUNE_EXPERIMENT}/ (results "
                        "moved without their tune/ folder?)")
    return src


def _copy_detector(row: Mapping[str, Any], dest: Path, results_dir: str | Path) -> Path:
    """Copy ``row``'s chosen detector to ``dest`` (replacing an earlier export of it, checked by the caller)
    with its ``sweep_result.json`` and the uncommitted changes its code version ran with."""
    src = _check_source(row, results_dir)
    if dest.exists() or dest.is_symlink():
        _check_replaceable(dest, row)
        shutil.rmtree(dest)
    # The detector only: a trial's checkpoint also holds what a restarted trial needs to continue
    # (train_state.pt with the optimisers, the trial's logs) or its recorded outcome (finished.json),
    # which a deployed model does not.
    src.download(dest, skip=NOT_DETECTOR_FILES)
    _bundle_plugin(dest)
    for name in code_diffs(results_dir, row.get("code_version")):
        write_atomic(dest / name, location(results_dir).child(name).read_bytes())
    result = {k: v for k, v in row.items() if k != "best_val_auprc"}
    for key in ("params", "config", "test_at_cutoffs"):  # JSON columns: objects in the JSON file
        if isinstance(result.get(key), str):
            result[key] = json.loads(result[key])
    write_atomic(dest / "sweep_result.json", json_text(result, indent=2, sort_keys=True, default=str))
    return dest


def code_diffs(results_dir: str | Path, version: Any) -> list[str]:
    """The diffs (``code-<sha256[:12]>.diff``, in the results) of the sweep's runs whose code version is
    ``version``: a ``.dirty`` version is its commit plus one of these (a resumed sweep's runs may differ);
    none for a clean version."""
    from adgan.sweep.provenance import read_runs

    if not (isinstance(version, str) and version.endswith(".dirty")):
        return []
    names = [r.get("code_diff") for r in read_runs(results_dir) if r.get("code_version") == version]
    here = location(results_dir)
    return sorted({n for n in names if isinstance(n, str) and EXPORT_DIFF.fullmatch(n)
                   and here.child(n).is_file()})  # (a diff recorded but since removed: none to copy)


def _bundle_plugin(dest: Path) -> Path | None:
    """A detector of a plugin loaded from a ``.py`` file: a copy of that file in ``dest/plugin/``, so that
    the exported folder can be scored where the original file is not (``ADGAN_PLUGINS=<the copy>``).
    Returns the copy; None for adgan's own detectors, a plugin given as a module name (an installed
    package, to install there too) or a plugin file no longer at its recorded place."""
    from adgan import plugins

    header = json.loads((dest / "detector.json").read_text())
    plugin = header.get("plugin")
    if not (isinstance(plugin, str) and plugin.endswith(".py") and Path(plugin).is_file()):
        return None
    trained_with = header.get("plugin_sha256")
    if trained_with and plugins.fingerprints([plugin]).get(plugin) != trained_with:
        print(f"adgan: warning: {plugin} changed since the detector exported to {dest} was trained: the copy "
              "bundled is the file as it is now, which may not load or score it as trained", file=sys.stderr)
    copy = dest / PLUGIN_DIR / Path(plugin).name
    copy.parent.mkdir(exist_ok=True)
    write_atomic(copy, Path(plugin).read_bytes())
    return copy


def _check_replaceable(dest: Path, row: Mapping[str, Any]) -> None:
    """An export replaces only an earlier export of the same sweep and class (exporting again once the
    sweep has finished): never a folder of something else, nor another sweep's model of that name.

    Raises:
        DataError: ``dest`` is not an adgan export, or one of another sweep, dataset or class.
    """
    try:
        earlier = json.loads((dest / "sweep_result.json").read_text())
    except (OSError, ValueError):
        earlier = None
    if dest.is_symlink() or not isinstance(earlier, dict):
        raise DataError(f"{dest} exists and is not a model exported by adgan (no sweep_result.json): not "
                        "replaced; export to another --out, or remove it first")
    mine = {k: row.get(k) for k in ("sweep", "dataset", "anomaly_class")}
    theirs = {k: earlier.get(k) for k in mine}
    if mine != theirs:
        raise DataError(f"{dest} holds the model exported from sweep {theirs['sweep']!r} "
                        f"({theirs['dataset']}, class {theirs['anomaly_class']}), not one of sweep "
                        f"{mine['sweep']!r}: not replaced; export to another --out, or remove it first")
    # Files someone added beside the exported ones (notes, evaluations) would go with the folder.
    added = sorted(str(f.relative_to(dest)) for f in dest.rglob("*")
                   if not f.is_dir() and not _exported_file(f.relative_to(dest)))
    if added:
        more = f" and {len(added) - 5} more" if len(added) > 5 else ""
        raise DataError(f"{dest} holds files an export does not write ({', '.join(added[:5])}{more}) beside "
                        "the model exported earlier: not replaced; move them out, or export to another --out")


EXPORT_DIFF = re.compile(r"code-[0-9a-f]{12}\.diff")


def _exported_file(rel: Path) -> bool:
    """Whether ``rel`` (a path inside an export folder) is one that an export writes, or one that using
    the export leaves there unasked (the bundled plugin's byte code, a file browser's own files)."""
    if "__pycache__" in rel.parts or rel.name in OS_FILES:
        return True
    if len(rel.parts) == 2 and rel.parts[0] == PLUGIN_DIR:
        return rel.suffix == ".py"
    return len(rel.parts) == 1 and (rel.name in EXPORT_FILES or bool(EXPORT_DIFF.fullmatch(rel.name)))


OS_FILES = (".DS_Store", "Thumbs.db", "desktop.ini")


# What an export folder holds: the detector's own files (``Detector.save``), the sweep's row and the card
# (plus ``plugin/<file>.py`` and ``code-*.diff``: ``_exported_file``).
EXPORT_FILES = ("detector.json", "state.pt", "sweep_result.json", "MODEL_CARD.md")


def _chance_line(rec: Recommendation) -> str:
    """The model card's verdict on chance, with the level the validation AUPRC was held against."""
    verdict = {True: "yes", False: "**no**", None: "unknown"}
    k = rec.trials_compared
    return (f"Better than chance on validation: {verdict[rec.beats_chance]} (its validation AUPRC against "
            f"{_fmt(rec.val_chance_threshold)}, the 95th percentile of the best AUPRC of {k} random "
            f"ranking{'s' if k > 1 else ''} of this validation split, as many as the trials compared for "
            "this class: an AUPRC level, not a cutoff for scores).")


def _labels_section(rep: Mapping[str, Any], meta: Mapping[str, Any], dest: Path) -> list[str]:
    """The model card's "From scores to labels": the score cutoffs the checkpoint chose on validation (with
    their figures there and on test) and the test cutoff behind the protocol's F1."""
    chosen, on = meta.get("cutoffs") or {}, meta.get("cutoffs_from") or {}
    test = test_at_cutoffs(rep)
    lines = ["## From scores to labels", ""]
    if chosen:
        dash = {"precision": "-", "recall": "-", "f1": "-", "false_alarm_rate": "-"}
        lines += [
            f"Score cutoffs chosen on the validation split ({on.get('n', '?')} samples, "
            f"{on.get('n_anomalies', '?')} anomalies) at the selected epoch; `adgan score --flag NAME` "
            "writes a `flagged` column (1 = score at or above the cutoff). The test columns measure each "
            "cutoff on data that took no part in choosing it.",
            "",
            "| --flag | score cutoff | validation precision / recall / false alarms | test precision / "
            "recall / F1 / false alarms |",
            "| --- | --- | --- | --- |",
        ]
        for name in cutoff_order(chosen):
            c = chosen[name]
            t = test.get(name) or dash
            lines.append(
                f"| `{name}` | {c['cutoff']:.9g} | {_fmt(c['precision'], 3)} / {_fmt(c['recall'], 3)} / "
                f"{_pct(c['false_alarm_rate'])} | {_fmt(t['precision'], 3)} / {_fmt(t['recall'], 3)} / "
                f"{_fmt(t['f1'], 3)} / {_pct(t['false_alarm_rate'])} |")
        lines += [
            "",
            "`best-f1` is the cutoff of the highest F1 on validation, whose anomaly share ("
            f"{_pct(on.get('n_anomalies', 0) / on['n'] if on.get('n') else None)}) need not be yours: where "
            "anomalies are rarer, the same cutoff flags the same share of normals and its precision is "
            "lower. `fpr-5%` and `fpr-1%` flag at most that share of the validation normals, whatever the "
            "anomaly share: the choice when the false-alarm rate is what you can afford. Any score value "
            "works too: `--flag 0.25`.",
            "",
            *_few_normals_lines(on),
        ]
    else:
        lines += ["The checkpoint records no cutoffs chosen on validation (trained by an earlier adgan); "
                  f"`adgan score --checkpoint {shlex.quote(str(dest))} --flag VALUE` flags at a score value "
                  "of your choice.",
                  ""]
    lines += [
        f"The test F1 of the metrics above (precision {_fmt(rep.get('test_precision'), 3)}, recall "
        f"{_fmt(rep.get('test_recall'), 3)}) is the protocol's: the top q = {_fmt(rep.get('test_q'), 3)} of "
        f"the test scores flagged, q being the test split's anomaly share, i.e. a score cutoff of "
        f"{_fmt(rep.get('test_threshold'), 6)} (`test_threshold` in sweep_result.json) chosen on test "
        "itself: comparable with published figures, not a cutoff to ship. Scores have no fixed scale "
        "across models.",
        "",
    ]
    return lines


def _few_normals_lines(on: Mapping[str, Any]) -> list[str]:
    """The card's caution where the validation split has too few normals for a false-alarm cutoff to
    mean its rate (fewer than 100: ``fpr-1%`` then allows no false alarm at all there)."""
    try:
        normals = int(on["n"]) - int(on["n_anomalies"])
    except (KeyError, TypeError, ValueError):
        return []
    if normals >= 100:
        return []
    allowed = "; ".join(f"`fpr-{r}%` allows {normals * r // 100}" for r in (5, 1))
    return [f"**Few validation normals ({normals})**: {allowed} false alarm(s) among them, so these cutoffs "
            "rest on a handful of scores and their false-alarm rate on new data can be far from the name "
            "(see the test columns); more validation normals (a larger split or dataset) make them "
            "reliable.", ""]


def _pct(v: Any) -> str:
    return f"{float(v):.1%}" if finite(v) else "-"


def _inputs(data: Mapping[str, Any]) -> str:
    """What ``adgan score --input`` takes for a model trained on ``data`` (``DatasetInfo.to_dict()``)."""
    prep = data.get("preprocessing") or {}
    if data.get("kind") == "image":
        return ".npy of images, an image file, or a folder of images"
    if prep.get("format") == "kdd99":
        return "raw KDD99 rows in a CSV file (gzip'd or not), or encoded rows in .npy"
    if prep.get("format") == "plain":
        return ".npy/.npz rows, a numeric CSV without header, or a Parquet file of numeric columns"
    return "a CSV/Parquet table with the training columns, or encoded rows in .npy"


def class_cost(results_dir: str | Path, dataset: str, anomaly_class: int) -> dict[str, float]:
    """What the sweep spent on one class: trials, trial hours, CPU and GPU hours (at the resources each
    trial held: the sweep's recorded ``effective_resources``; a trial on the CPU held no GPU)."""
    trials = [t for t in read_table(results_dir, "trials", missing_ok=True)
              if t["dataset"] == dataset and t["anomaly_class"] == anomaly_class]
    cpus, gpus = effective_resources(results_dir)
    hours = sum(t["wall_seconds"] or 0.0 for t in trials) / 3600.0
    gpu_hours = sum((t["wall_seconds"] or 0.0) for t in trials
                    if not str(json.loads(t["config"] or "{}").get("device", "cpu")).startswith("cpu")) / 3600
    return {"trials": float(len(trials)), "trial_hours": hours, "cpu_hours": hours * cpus,
            "gpu_hours": gpu_hours * gpus}


def effective_resources(results_dir: str | Path) -> tuple[float, float]:
    """(CPUs, GPU share) each trial held, as the runner recorded them in ``spec.json``
    (``effective_resources``: after ``--gpu`` and the no-GPU fallback)."""
    res = _spec_json(results_dir).get("effective_resources") or {}
    return float(res.get("cpus", 1.0)), float(res.get("gpu", 0.0))


def _partial_lines(groups: tuple[list[str], list[str]], prefix: str) -> list[str]:
    """The model card's warning when some of the class's groups (ids starting with ``prefix``,
    ``<dataset>/c<class>/``) had no result at export; ``groups``: ``_groups_without_result``."""
    planned, missing = ([g for g in ids if g.startswith(prefix)] for ids in groups)
    if not missing:
        return []
    return [f"**Partial: {len(missing)} of the {len(planned)} groups of this class had no result when this "
            f"was exported** (still running or interrupted; e.g. `{missing[0]}`): the choice is among the "
            "groups that ended. Export again once the sweep has finished.", ""]


def model_card(
    rec: Recommendation, results_dir: str | Path, dest: Path, groups: tuple[list[str], list[str]]
) -> str:
    """``MODEL_CARD.md`` of an exported per-class recommendation; ``groups``: the sweep's
    ``_groups_without_result`` (read once by ``export`` for every card)."""
    c, rep = rec.chosen, rec.chosen.representative
    config = rep.get("config") or {}
    config = json.loads(config) if isinstance(config, str) else dict(config)
    header = json.loads((dest / "detector.json").read_text())
    meta, plugin = header.get("meta", {}), header.get("plugin")
    bundled = dest / PLUGIN_DIR / Path(plugin).name if isinstance(plugin, str) else None
    bundled = bundled if bundled is not None and bundled.is_file() else None
    data = meta.get("data", {})
    ran = meta.get("config") or config  # as the run resolved them (the row's: as asked, e.g. "auto")
    cost = class_cost(results_dir, c.dataset, c.anomaly_class)
    settings = {k: v for k, v in config.items() if k not in ("device", "threads", "data_dir")}
    lines = [
        f"# {c.dataset}, class {c.anomaly_class} ({c.class_name}): {_detector(c.model, c.loss_case)}",
        "",
        "Recommended by `adgan export` from the sweep in "
        f"`{location(results_dir).uri}`: of every model the sweep ran on this class (GANs and baselines), "
        "the best validation AUPRC" + (f" (mean over {c.seeds} seeds)" if c.seeds > 1 else "") + ". Test "
        "figures are the estimate for this choice; they took no part in it.",
        "",
        *_partial_lines(groups, f"{c.dataset}/c{c.anomaly_class}/"),
        "## Data and protocol",
        f"- dataset: `{c.dataset}` from `{data.get('source', rep.get('data_source'))}`",
        f"- sha256: `{data.get('sha256', '?')}`, {data.get('n_samples', '?')} samples",
        f"- protocol: `{data.get('protocol', '?')}` (seed {rep.get('seed')}): anomalous class "
        f"{c.anomaly_class} ({c.class_name}); {rep.get('n_train')} training normals"
        + (f" (the detector was fit on a seeded subsample of {fit_rows(rep)}: `fit_samples`)"
           if fit_rows(rep) not in (None, rep.get("n_train")) else "") + ", validation "
        f"{rep.get('n_val')} ({rep.get('n_val_anomalies')} anomalies), test {rep.get('n_test')} "
        f"({rep.get('n_test_anomalies')} anomalies)",
        "",
        "## Detector",
        f"- model: `{c.model}` ({c.family}), loss case `{c.loss_case}`, best epoch {rep.get('best_epoch')}",
        f"- settings: `{json.dumps(settings, sort_keys=True)}`",
        f"- ran on device `{ran.get('device', '?')}` with {ran.get('threads', '?')} CPU thread(s) "
        "(a GAN's figures in their last digits depend on both)",
        f"- trial `{rep.get('trial_id')}` of group `{rep.get('group_id')}`, code version "
        f"`{rep.get('code_version')}`" + _diff_note(dest, rep.get("code_version")),
        "",
        "## Metrics (higher score = more anomalous)",
        "| split | AUPRC | chance (anomaly share) | AUROC | F1 at top-q |",
        "| --- | --- | --- | --- | --- |",
        f"| validation | {_with_spread(c.val_auprc, c.val_auprc_std, 4)} | {_fmt(rec.val_chance)} | "
        f"{_fmt(c.val_auroc)} | - |",
        f"| test | {_with_spread(c.test_auprc, c.test_auprc_std, 4)} | {_fmt(rec.test_chance)} | "
        f"{_fmt(c.test_auroc)} | {_fmt(rep.get('test_f1'))} (q = {_fmt(rep.get('test_q'), 3)}) |",
        "",
        *([f"AUPRC and AUROC are means over the {c.seeds} seeds (± spread); F1 is the exported checkpoint's "
           f"(seed {rep.get('seed')}), whose own test AUPRC is {_fmt(rep.get('test_auprc'))}.", ""]
          if c.seeds > 1 else []),
        _chance_line(rec),
        "",
        *_labels_section(rep, meta, dest),
        "Compared with (test AUPRC, each chosen on validation): "
        + "; ".join(f"{label} {_detector(o.model, o.loss_case)} {_fmt(o.test_auprc)}"
                    for label, o in (("best GAN", rec.best_gan), ("best baseline", rec.best_baseline),
                                     ("kNN", rec.knn), ("one model for every class", rec.single_model))
                    if o is not None) + ".",
        "",
        "## Cost of the sweep for this class",
        f"{int(cost['trials'])} trials, {cost['trial_hours']:.3f} trial hours, {cost['cpu_hours']:.3f} CPU "
        f"hours, {cost['gpu_hours']:.3f} GPU hours.",
        "",
        *_use_lines(plugin, bundled, dest, data, bool(meta.get("cutoffs")), header.get("plugin_sha256")),
    ]
    return "\n".join(lines)


def _diff_note(dest: Path, version: Any) -> str:
    """The card's words on a ``.dirty`` code version: the diffs ``_copy_detector`` copied beside the card
    into ``dest``, or that none was in the results (the commit alone does not rebuild the code)."""
    if not (isinstance(version, str) and version.endswith(".dirty")):
        return ""
    diffs = sorted(f.name for f in dest.iterdir() if EXPORT_DIFF.fullmatch(f.name))
    if not diffs:
        return " (a checkout with uncommitted changes, whose diff is not in the results: not recorded, or " \
               "removed since; the commit alone is not the code that trained this model)"
    return (f" (a checkout with uncommitted changes: {' or '.join(f'`{d}`' for d in diffs)} in this folder, "
            "`git apply` on that commit)")


def _use_lines(plugin: str | None, bundled: Path | None, dest: Path, data: Mapping[str, Any],
               cutoffs: bool, trained_with: str | None) -> list[str]:
    """The model card's "Use" section: the commands that score with the exported detector, shell-quoted (a
    folder with a space would split a command pasted from the card); ``trained_with``: the sha256 of the
    plugin file the detector was trained with, if recorded."""
    import hashlib

    env = f"ADGAN_PLUGINS={shlex.quote(str(bundled or plugin))} " if plugin else ""
    copied = hashlib.sha256(bundled.read_bytes()).hexdigest() if bundled is not None else None
    changed = ([f"**The copy is not the file the detector was trained with**: the plugin changed since "
                f"(sha256 {trained_with[:16]}... at training, {copied[:16]}... copied); it may not load or "
                "score the detector as trained."] if trained_with and copied and copied != trained_with
               else [])
    score = f"{env}adgan score --checkpoint {shlex.quote(str(dest))} --input FILE"
    return [
        "## Use",
        *([f"The detector comes from the plugin `{plugin}`: scoring imports it first (ADGAN_PLUGINS)"
           + (f"; a copy of the file is in `{bundled}` (modules it imports are not copied)." if bundled
              else ".")] if plugin else []),
        *changed,
        "```bash",
        f"{score}   # {_inputs(data)}",
        *([f"{score} --flag fpr-5%   # and a flagged column (From scores to labels)"] if cutoffs else []),
        "```",
        "",
        *_input_lines(data),
    ]


def _input_lines(data: Mapping[str, Any], shown: int = 50) -> list[str]:
    """The card's description of the input the detector takes (a table's columns and their categories, an
    image's channels and size), from the data facts its checkpoint records."""
    prep = data.get("preprocessing") or {}
    if data.get("kind") == "image":
        shape = data.get("input_shape") or []
        size = f"{shape[-2]}x{shape[-1]}" if len(shape) >= 2 else "?"
        channels = prep.get("channels", shape[0] if shape else "?")
        return [f"Input: images brought to {channels} channel(s) of {size} pixels (resized as in training), "
                "integers 0..255 or floats in [-1, 1] (`adgan score --pixel-range` for another range).", ""]
    if prep.get("format") != "table":
        return []
    ignored = [c for c in (prep.get("label_column"), *(prep.get("drop_columns") or ())) if c]
    numeric, categories = list(prep.get("numeric") or ()), list(prep.get("categories") or ())

    def values(vals: list[Any]) -> str:
        more = (f", and {len(vals) - shown} more (all in detector.json: meta.data.preprocessing.categories)"
                if len(vals) > shown else "")
        return ", ".join(f"`{v}`" for v in vals[:shown]) + more

    return [
        "Input: a table with these columns, in any order"
        + (f" ({', '.join(f'`{c}`' for c in ignored)} may be there too, and are ignored; any other column "
           "is refused: `--keep` carries an id beside the scores)" if ignored else
           " (any other column is refused: `--keep` carries an id beside the scores)") + ":",
        "",
        *([f"- numbers ({len(numeric)}): {', '.join(f'`{c}`' for c in numeric)}"] if numeric else []),
        *(f"- `{c}`, a category: {values(list(vals))}" for c, vals in categories),
        "",
        *(["A category value not listed is encoded as none of the listed ones, with a warning (`--strict` "
           "refuses it).", ""] if categories else []),
    ]
