"""One answer per class, chosen on validation, the same in ``adgan best``, the report and ``adgan export``;
deterministic tie-breaks; the chance flag."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_report import N_VAL, N_VAL_ANOM, SMALL_PLAN, html_tables, make_sweep, row_of, write_tables

from adgan import metrics
from adgan.cli import main as cli_main
from adgan.errors import DataError
from adgan.models import create_detector
from adgan.report import build_report
from adgan.sweep.best import _labels_section, best_table, error_lines, export, has_answer
from adgan.sweep.recommend import beats_chance, chance_threshold, fit_rows, recommend, select_best
from adgan.sweep.results import read_table
from adgan.train import figures_at_cutoffs


def planted_sweep(root: Path) -> dict[str, list[dict[str, Any]]]:
    """mnist-5k class 0: egbad fm-fm (val 0.80, test ~0.50) beats bce-bce (val 0.60, test ~0.91) and knn
    (val 0.70, test 0.97) on validation, so validation and test would choose differently. Every chosen
    checkpoint is a real saved detector, so that ``adgan export`` can copy it."""
    rows = make_sweep(root, plan=SMALL_PLAN)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y_val, y_test = np.repeat([0, 1], [40, 10]), np.repeat([0, 1], [80, 20])
    for r in rows["best"]:
        if r["model"] == "knn":
            r.update(val_auprc=0.70, val_auroc=0.75, test_auprc=0.97)
        ckpt = root / "ckpt" / r["group_id"].replace("/", "_")
        detector = create_detector("knn").fit(x)
        # What training records: cutoffs chosen on validation; the group's end measures them on test.
        detector.meta = {"cutoffs": metrics.cutoffs(y_val, rng.normal(size=50) + y_val),
                         "cutoffs_from": {"split": "validation", "n": 50, "n_anomalies": 10}}
        detector.save(ckpt)
        r["test_at_cutoffs"] = json.dumps(figures_at_cutoffs(detector, y_test, rng.normal(size=100) + y_test))
        r["checkpoint"] = str(ckpt)
    write_tables(root, rows, ("best",))
    return rows


def test_best_report_and_export_give_the_same_validation_choice(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "fake"
    rows = planted_sweep(root)
    (rec,) = recommend(rows["best"])
    assert (rec.chosen.model, rec.chosen.loss_case, rec.chosen.seeds) == ("egbad", "fm-fm", 2)
    assert rec.chosen.test_auprc == pytest.approx(0.50)  # reported as the estimate, not used to choose
    assert rec.knn is not None and rec.knn.test_auprc == 0.97 and rec.best_baseline is rec.knn
    assert rec.single_model is not None and rec.single_model.model == "egbad"

    # adgan best: the recommendation table first.
    assert cli_main(["best", str(root)]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[2]
    assert first.startswith("0") and "egbad [fm-fm]" in first and "0.500±0.028" in first

    # The report opens with the same answer.
    html = build_report(root, tmp_path / "report").html.read_text()
    table = html_tables(html).tables["mnist-5k: recommended detector per class"]
    row = row_of(table, "0")
    assert row["recommended"] == "egbad [fm-fm]" and row["test AUPRC"].startswith("0.5000 ± ")
    assert row["kNN (test)"] == "0.9700" and row["beats chance (val)"] == "yes"
    # ... and says, for that detector, what the cutoffs it chose on validation do on test (as the card).
    tables = html_tables(html).tables
    cut = tables["Recommended detector per class at the cutoffs chosen on validation (test)"]
    assert cut[0] == ["dataset", "class", "detector", "--flag", "precision", "recall", "F1", "false alarms"]
    rep = rec.chosen.representative
    for name, f in json.loads(rep["test_at_cutoffs"]).items():
        line = next(r for r in cut[1:] if r[3] == name)
        assert line[:3] == ["mnist-5k", "0", "egbad [fm-fm]"]
        assert line[4:7] == [f"{f['precision']:.4f}", f"{f['recall']:.4f}", f"{f['f1']:.4f}"]

    # adgan export (default: per class) ships that detector, with a model card.
    (dest,) = export(root, tmp_path / "exported")
    result = json.loads((dest / "sweep_result.json").read_text())
    assert (result["model"], result["loss_case"], result["seed"]) == ("egbad", "fm-fm", 0)  # seeds tie: lower
    card = (dest / "MODEL_CARD.md").read_text()
    assert "egbad [fm-fm]" in card and "adgan score --checkpoint" in card and "chance" in card
    assert "| test | 0.5000±0.0283 | 0.2000 |" in card
    # The chance level is said to be an AUPRC level; the score cutoff behind F1 is given, with its caveat.
    assert "an AUPRC level, not a cutoff for scores" in card
    cutoff = f"a score cutoff of {float(result['test_threshold']):.6f}" if result.get("test_threshold") \
        is not None else "a score cutoff of -"
    assert "## From scores to labels" in card and cutoff in card and "not a cutoff to ship" in card
    # The cutoffs the checkpoint chose on validation, each with its figures there and on test.
    chosen = json.loads((dest / "detector.json").read_text())["meta"]["cutoffs"]
    on_test = result["test_at_cutoffs"]
    for name, c in chosen.items():
        t = on_test[name]
        assert (f"| `{name}` | {c['cutoff']:.9g} | {c['precision']:.3f} / {c['recall']:.3f} / "
                f"{c['false_alarm_rate']:.1%} | {t['precision']:.3f} / {t['recall']:.3f} / {t['f1']:.3f} / "
                f"{t['false_alarm_rate']:.1%} |") in card
    assert "validation split (50 samples, 10 anomalies)" in card and "anomaly share (20.0%)" in card
    # 40 validation normals: the false-alarm cutoffs rest on few scores, and the card says so.
    assert ("**Few validation normals (40)**: `fpr-5%` allows 2; `fpr-1%` allows 0 false alarm(s) among "
            "them") in card
    many = {"cutoffs": chosen, "cutoffs_from": {"split": "validation", "n": 1200, "n_anomalies": 200}}
    assert "Few validation normals" not in "\n".join(_labels_section(result, many, dest))
    assert f"adgan score --checkpoint {dest} --input FILE --flag fpr-5%" in card
    # A checkpoint of an adgan before cutoffs: the card says so and how to flag at a value of one's own.
    older = "\n".join(_labels_section(result, {}, dest))
    assert "records no cutoffs chosen on validation" in older and "--flag VALUE" in older
    assert not (dest / "train_state.pt").exists()
    # Per group stays an option.
    assert len(export(root, tmp_path / "groups", per="group")) == len(rows["best"])


def test_tie_breaks_are_deterministic() -> None:
    trials = [
        {"trial_id": "z", "best_val_auprc": 0.7, "best_epoch": 3, "params": {"lr": 0.1}, "checkpoint": "c"},
        {"trial_id": "y", "best_val_auprc": 0.7, "best_epoch": 2, "params": {"lr": 0.2}, "checkpoint": "c"},
        {"trial_id": "x", "best_val_auprc": 0.7, "best_epoch": 2, "params": {"lr": 0.3}, "checkpoint": "c"},
        {"trial_id": "w", "best_val_auprc": 0.6, "best_epoch": 1, "params": {}, "checkpoint": "c",
         "test_auprc": 0.99},
    ]
    picks = set()
    for seed in range(20):  # any order of the rows (Tune's trial ids are random)
        shuffled = trials[:]
        random.Random(seed).shuffle(shuffled)
        picks.add(select_best(shuffled)["trial_id"])  # type: ignore[index]
    assert picks == {"y"}  # the earlier best epoch, then the smaller params in canonical order

    base = {"dataset": "d", "anomaly_class": 0, "class_name": "0", "loss_case": "default", "seed": 0,
            "checkpoint": "c", "val_auprc": 0.5, "n_val": 100, "n_val_anomalies": 10}
    rows = [{**base, "model": "b", "family": "baseline", "val_auroc": 0.7, "fit_seconds": 9.0},
            {**base, "model": "a", "family": "baseline", "val_auroc": 0.7, "fit_seconds": 9.0},
            {**base, "model": "c", "family": "gan", "val_auroc": 0.7, "fit_seconds": 1.0}]
    for seed in range(10):
        random.Random(seed).shuffle(rows)
        # Same AUPRC and AUROC: a baseline before the GAN however fast the GAN's fit was (measured seconds
        # differ between identical runs), then the name.
        assert recommend(rows)[0].chosen.model == "a"
    assert recommend([r for r in rows if r["model"] != "a"])[0].chosen.model == "b"
    rec = recommend(rows)[0]
    assert rec.single_model is not None and rec.single_model.model == rec.chosen.model == "a"


def test_chance_threshold_and_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A random ranking of 460 samples with 100 anomalies averages about the share (0.217); the 95th
    # percentile lies above it, and an AUPRC within that band is no better than chance.
    threshold = chance_threshold(N_VAL, N_VAL_ANOM)
    assert threshold is not None and N_VAL_ANOM / N_VAL < threshold < 0.30
    assert chance_threshold(N_VAL, N_VAL_ANOM) == threshold  # seeded: the same every time
    assert beats_chance(0.5, N_VAL, N_VAL_ANOM) is True and beats_chance(0.23, N_VAL, N_VAL_ANOM) is False
    assert beats_chance(0.5, None, None) is None
    # A sweep whose every detector is at chance on validation is flagged in all three places.
    root = tmp_path / "chance"
    rows = planted_sweep(root)
    for r in rows["best"]:
        r.update(val_auprc=0.22, val_auroc=0.5)
    write_tables(root, rows, ("best",))
    (rec,) = recommend(rows["best"])
    assert rec.beats_chance is False
    assert "no better than chance" in best_table(root)
    html = build_report(root, tmp_path / "report").html.read_text()
    assert row_of(html_tables(html).tables["mnist-5k: recommended detector per class"], "0")[
        "beats chance (val)"] == "NO"
    (dest,) = export(root, tmp_path / "exported")
    card = (dest / "MODEL_CARD.md").read_text()
    assert "Better than chance on validation: **no** (its validation AUPRC" in card


def test_the_chance_level_to_beat_is_that_of_the_best_of_the_trials_compared(tmp_path: Path) -> None:
    """A detector without skill that won the highest of K draws is not "better than chance": the level to
    beat is the 95th percentile of the best AUPRC of K random rankings, K the trials compared."""
    from adgan.sweep import recommend as rec_mod

    n, k = 60, 12
    levels = [chance_threshold(n, k, compared) for compared in (1, 2, 8, 40)]
    assert all(a < b for a, b in zip(levels, levels[1:], strict=False))  # (typed: not None)
    # Simulated: the best of 8 independent random rankings exceeds the level about 5% of the time (it
    # exceeds the one-trial level a third of the time: 1 - 0.95 ** 8).
    rng = np.random.default_rng(7)
    best = np.max([rec_mod._random_auprcs(rng, n, k, 4000) for _ in range(8)], axis=0)
    assert 0.04 < float(np.mean(best > levels[2])) < 0.06
    assert 0.30 < float(np.mean(best > levels[0])) < 0.37
    # One simulation per split size serves every K, so the level never falls as K grows (also where the
    # Pareto tail takes over, and for K so large that 0.95 ** (1/K) rounds to 1), and it does not depend on
    # what was asked before.
    many = [chance_threshold(400, 60, compared) for compared in (1, 3, 30, 300, 3000, 30000, 10**15)]
    assert all(a < b for a, b in zip(many, many[1:-1], strict=False)) and many[-1] >= many[-2], many
    rec_mod._null_best_auprc.cache_clear()
    rec_mod._null_auprcs.cache_clear()
    assert [chance_threshold(400, 60, compared) for compared in (10**15, 30000, 3000, 300, 30, 3, 1)] == \
        many[::-1]
    few = [chance_threshold(300, 3, compared) for compared in range(100, 3000, 7)]  # a lumpy law
    assert all(a <= b for a, b in zip(few, few[1:], strict=False))
    # Where the simulation leaves too few draws beyond the quantile, the Pareto tail fit to the largest
    # draws extrapolates it: from a sixteenth of the draws, the best-of-30 level all of them read off.
    values = rec_mod._null_auprcs(400, 60)
    beyond = 1 - rec_mod.CHANCE_QUANTILE ** (1 / 30)
    assert beyond * len(values) >= rec_mod.TAIL_DRAWS > beyond * len(values[::16])
    read_off = float(np.quantile(values, 1 - beyond))
    extrapolated = rec_mod._pareto_tail_quantile(values[::16], beyond)
    assert abs(extrapolated - read_off) < 0.005, (extrapolated, read_off)

    # In the answer: a class's K is every trial of its groups with a validation figure (errored ones not).
    root = tmp_path / "many"
    rows = planted_sweep(root)
    one_trial = chance_threshold(N_VAL, N_VAL_ANOM)
    assert one_trial is not None
    for r in rows["best"]:
        r.update(val_auprc=one_trial + 0.002, n_trials=5, n_errored=1)
    (rec,) = recommend(rows["best"])
    assert rec.trials_compared == 4 * len(rows["best"]) and rec.beats_chance is False
    assert rec.val_chance_threshold == chance_threshold(N_VAL, N_VAL_ANOM, rec.trials_compared)
    for r in rows["best"]:
        r.update(n_trials=1, n_errored=0)
    rows["best"] = rows["best"][:1]
    (rec,) = recommend(rows["best"])
    assert rec.trials_compared == 1 and rec.beats_chance is True
    # Recorded since: n_scored, the trials that reached a validation figure. A group without a checkpoint
    # (every trial diverged before its first scored epoch) adds none, so `adgan best` (every row) and
    # export or the report (rows with a checkpoint) compare the same K.
    scored = [{**r, "n_trials": 6, "n_errored": 0, "n_diverged": 2, "n_scored": 4} for r in rows["best"]]
    unscored = {**scored[0], "group_id": "g-none", "checkpoint": None, "val_auprc": None, "n_scored": 0}
    assert recommend(scored)[0].trials_compared == 4 * len(scored)
    assert recommend([*scored, unscored])[0].trials_compared == 4 * len(scored)
    old_style = {k: v for k, v in unscored.items() if k != "n_scored"}  # a row written before n_scored
    assert recommend([*scored, old_style])[0].trials_compared == 4 * len(scored)
    # The model card names the level and K of the sweep it was exported from.
    (dest,) = export(root, tmp_path / "exported")
    (written,) = recommend(read_table(root, "best"))
    card = (dest / "MODEL_CARD.md").read_text()
    assert (f"against {written.val_chance_threshold:.4f}, the 95th percentile of the best AUPRC of "
            f"{written.trials_compared} random rankings of this validation split, as many as the trials "
            "compared for this class") in card


def test_rows_a_baseline_was_fit_on_are_said_where_they_differ(tmp_path: Path) -> None:
    """A baseline's fit_samples keeps a subsample of the training normals: the report's table and the model
    card say how many rows the detector was fit on, and the comparison with kNN says when kNN's differ."""
    assert fit_rows({"n_train": 800, "config": json.dumps({"fit_samples": 100})}) == 100
    assert fit_rows({"n_train": 800, "config": {"fit_samples": 0}}) == 800  # 0: all rows
    assert fit_rows({"n_train": 80, "config": {"fit_samples": 100}}) == 80
    assert fit_rows({"n_train": None, "config": {}}) is None
    # A baseline row whose config does not say its fit_samples (a sweep before trials recorded their
    # resolved config): unknown, not the whole split; a GAN's config has none and fits every row.
    assert fit_rows({"n_train": 800, "family": "baseline", "config": {"k": 3}}) is None
    from adgan.report.sections import _train_rows  # the report: at most the training normals

    assert _train_rows({"n_train": 800, "family": "baseline", "config": {"k": 3}}) == "<= 800"
    assert fit_rows({"n_train": 800, "family": "gan", "config": {"lr": 1e-3}}) == 800
    from adgan.train import resolve_config  # a baseline without fit_samples (iforest): every row, resolved

    iforest = resolve_config({"model": "iforest", "dataset": "synthetic-tabular", "anomaly_class": 0})
    assert "fit_samples" not in iforest
    assert fit_rows({"n_train": 800, "family": "baseline", "config": json.dumps(iforest)}) == 800
    root = tmp_path / "fit"
    rows = planted_sweep(root)
    for r in rows["best"]:
        if r["model"] == "knn":
            r["config"] = {**r["config"], "fit_samples": 100}
    write_tables(root, rows, ("best",))
    html = build_report(root, tmp_path / "report").html.read_text()
    row = row_of(html_tables(html).tables["mnist-5k: recommended detector per class"], "0")
    assert row["training normals (fit)"] == "800" and row["kNN (test)"] == "0.9700 (fit on 100 rows)"
    for r in rows["best"]:  # kNN recommended: its own subsample is said
        if r["model"] == "knn":
            r.update(val_auprc=0.95)
    write_tables(root, rows, ("best",))
    html = build_report(root, tmp_path / "report2").html.read_text()
    row = row_of(html_tables(html).tables["mnist-5k: recommended detector per class"], "0")
    assert row["recommended"] == "knn" and row["training normals (fit)"] == "100 of 800"
    assert row["kNN (test)"] == "0.9700"
    (dest,) = export(root, tmp_path / "exported")
    assert ("800 training normals (the detector was fit on a seeded subsample of 100: `fit_samples`)"
            in (dest / "MODEL_CARD.md").read_text())


def test_a_card_exported_from_an_unfinished_sweep_says_so(tmp_path: Path) -> None:
    root = tmp_path / "partial"
    rows = planted_sweep(root)
    spec = json.loads((root / "spec.json").read_text())
    groups = [r["group_id"] for r in rows["best"]]
    spec["groups"] = [*groups, "mnist-5k/c0/anogan/fm/s0", "mnist-5k/c1/knn/default/s0"]  # never ended
    (root / "spec.json").write_text(json.dumps(spec))
    (dest,) = export(root, tmp_path / "exported")
    card = (dest / "MODEL_CARD.md").read_text()
    assert (f"**Partial: 1 of the {len(groups) + 1} groups of this class had no result when this was exported"
            "** (still running or interrupted; e.g. `mnist-5k/c0/anogan/fm/s0`)") in card
    spec["groups"] = groups  # all ended: no such line
    (root / "spec.json").write_text(json.dumps(spec))
    (dest,) = export(root, tmp_path / "exported")
    assert "Partial" not in (dest / "MODEL_CARD.md").read_text()


def test_export_says_which_class_it_left_out_for_want_of_an_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "half"
    rows = planted_sweep(root)
    failed = [{**r, "anomaly_class": 1, "class_name": "one", "checkpoint": None, "val_auprc": None,
               "test_auprc": None, "group_id": r["group_id"].replace("/c0/", "/c1/")} for r in rows["best"]]
    rows["best"] = [*rows["best"], *failed]
    write_tables(root, rows, ("best",))
    assert cli_main(["export", str(root), "--out", str(tmp_path / "out")]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1  # the one class answered
    assert "note: class 1 one not exported: no trial of it ended with a checkpoint" in err, err


def test_commands_in_the_card_are_shell_quoted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shlex

    root = tmp_path / "fake"
    planted_sweep(root)
    assert cli_main(["export", str(root), "--out", str(tmp_path / "exp out")]) == 0
    (dest,) = (tmp_path / "exp out").iterdir()
    card = (dest / "MODEL_CARD.md").read_text()
    assert f"adgan score --checkpoint {shlex.quote(str(dest))} --input FILE" in card
    assert f"score with: adgan score --checkpoint '{tmp_path / 'exp out'}'/<name>" in capsys.readouterr().err


def test_a_class_without_any_checkpoint_is_said_to_have_no_answer(tmp_path: Path) -> None:
    root = tmp_path / "failed"
    rows = planted_sweep(root)
    for r in rows["best"]:
        r.update(checkpoint=None, val_auprc=None, test_auprc=None)  # every trial errored
    write_tables(root, rows, ("best",))
    assert recommend(rows["best"]) == []
    table = best_table(root).splitlines()
    assert table[2].startswith("0")
    assert "no answer: no trial of this class ended with a checkpoint" in table[2]
    # The report says the same (the class was left out of its table).
    html = build_report(root, tmp_path / "report").html.read_text()
    row = row_of(html_tables(html).tables["mnist-5k: recommended detector per class"], "0")
    assert row["recommended"] == "no answer" and row["settings"].startswith("no trial of this class ended")
    assert not has_answer(root)
    # Why: the errored trials' reasons, most frequent first, values aside (k=20 and k=33 are one reason).
    for i, t in enumerate(rows["trials"]):
        t.update(status="errored", message=f"Traceback ...\n  File x\nDataError: knn: k={20 + i} needs more"
                 if i % 3 else "Traceback ...\nValueError: bad")
    write_tables(root, rows, ("trials",))
    lines = error_lines(root)
    n = len(rows["trials"])
    assert lines[1] == (f"{n} trial(s) errored (2 reason(s); each trial's whole message is in "
                        "trials.parquet's message column):")
    n_data_errors = n - len(range(0, n, 3))
    assert re.match(rf"  {n_data_errors} x DataError: knn: k=\d+ needs more  \(e.g. group ", lines[2])
    assert lines[3].startswith(f"  {len(range(0, n, 3))} x ValueError: bad  (e.g. group ")
    assert best_table(root).endswith("\n".join(lines[1:]))
    # The report says why too, beside its cost table's counts.
    html = build_report(root, tmp_path / "report2").html.read_text()
    why = html_tables(html).tables["Why trials errored"]
    assert why[0] == ["trials", "reason", "e.g. group", "trial"]
    assert [r[0] for r in why[1:]] == [str(n_data_errors), str(len(range(0, n, 3)))]
    assert why[2][1] == "ValueError: bad"


def test_export_checks_every_destination_before_copying_any(tmp_path: Path) -> None:
    """One destination it may not replace stops the export before anything is written: --out never ends up
    holding some models of this sweep beside others of an earlier one."""
    root = tmp_path / "fake"
    planted_sweep(root)
    out = tmp_path / "exported"
    first, *rest, last = export(root, out, per="group")
    assert rest and all(p.parent == out for p in (first, *rest, last))
    shutil.rmtree(first)
    result = json.loads((last / "sweep_result.json").read_text())
    (last / "sweep_result.json").write_text(json.dumps({**result, "sweep": "other"}))
    with pytest.raises(DataError, match=rf"{last.name} holds the model exported from sweep 'other'"):
        export(root, out, per="group")
    assert not first.exists()  # checked first, copied nothing
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match=r"--out .*afile: a file, not a folder"):
        export(root, tmp_path / "afile")


def test_export_folders_name_the_class_and_replace_only_their_own_earlier_export(tmp_path: Path) -> None:
    """A class whose name is not its index is in the folder's name (class folders "1", "10", "2": "_c1"
    alone would read as class "1"); exporting again replaces the same sweep's earlier export, never a folder
    of something else or another sweep's model."""
    root = tmp_path / "fake"
    rows = planted_sweep(root)
    (dest,) = export(root, tmp_path / "exported")
    assert dest.name == "mnist-5k_c0"  # mnist's class names are their indices
    (again,) = export(root, tmp_path / "exported")  # the same sweep, again (e.g. once it has finished)
    assert again == dest and (dest / "MODEL_CARD.md").is_file()
    # ... but not over files someone put beside the exported ones: refused, nothing deleted.
    (dest / "NOTES.txt").write_text("mine")
    (dest / "eval").mkdir()
    (dest / "eval" / "scores.csv").write_text("mine")
    with pytest.raises(DataError, match=r"mnist-5k_c0 holds files an export does not write \(NOTES.txt, "
                                        r"eval/scores.csv\) beside the model exported earlier: not replaced"):
        export(root, tmp_path / "exported")
    assert (dest / "NOTES.txt").read_text() == (dest / "eval" / "scores.csv").read_text() == "mine"
    shutil.rmtree(dest / "eval")
    (dest / "NOTES.txt").unlink()
    # What using the export leaves there unasked (a plugin's byte code, a file browser's files) is no
    # reason to refuse.
    (dest / "plugin" / "__pycache__").mkdir(parents=True)
    (dest / "plugin" / "__pycache__" / "mine.cpython-311.pyc").write_bytes(b"")
    (dest / ".DS_Store").write_bytes(b"")
    assert export(root, tmp_path / "exported") == [dest] and not (dest / ".DS_Store").exists()
    for r in rows["best"]:
        r["class_name"] = "10"
    write_tables(root, rows, ("best",))
    (named,) = export(root, tmp_path / "named")
    assert named.name == "mnist-5k_c0-10"
    for r in rows["best"]:
        r["class_name"] = "normal."  # KDD99's: no folder name ending in a dot (Windows drops it)
    write_tables(root, rows, ("best",))
    assert [p.name for p in export(root, tmp_path / "dotted")] == ["mnist-5k_c0-normal"]
    assert [p.name for p in export(root, tmp_path / "groups", per="group")][0].startswith(
        "mnist-5k_c0-normal_")
    mine = tmp_path / "mine" / "mnist-5k_c0"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    for r in rows["best"]:
        r["class_name"] = "0"
    write_tables(root, rows, ("best",))
    with pytest.raises(DataError, match=r"mnist-5k_c0 exists and is not a model exported by adgan \(no "
                                        r"sweep_result.json\): not replaced"):
        export(root, tmp_path / "mine")
    assert (mine / "notes.txt").read_text() == "mine"
    result = json.loads((dest / "sweep_result.json").read_text())
    (dest / "sweep_result.json").write_text(json.dumps({**result, "sweep": "other"}))
    with pytest.raises(DataError, match=r"holds the model exported from sweep 'other' \(mnist-5k, class 0\), "
                                        r"not one of sweep 'fake': not replaced"):
        export(root, tmp_path / "exported")


def test_an_export_of_a_dirty_checkouts_model_carries_its_diff(tmp_path: Path) -> None:
    """A model trained from a checkout with uncommitted changes (a ``.dirty`` code version): the diff the
    sweep recorded for that version goes into the export folder and the card names it; exporting again
    replaces it like the other exported files. A dirty version without a recorded diff is said to be so."""
    root = tmp_path / "fake"
    rows = planted_sweep(root)
    version = "0.1.0+gabcdef012345.dirty"
    for r in rows["best"]:
        r["code_version"] = version
    write_tables(root, rows, ("best",))
    (dest,) = export(root, tmp_path / "none")
    card = (dest / "MODEL_CARD.md").read_text()
    assert "whose diff is not in the results: not recorded, or removed since; the commit alone" in card
    diff = "code-0123456789ab.diff"
    (root / diff).write_bytes(b"diff --git a/x b/x\n")
    (root / "runs.json").write_text(json.dumps([
        {"code_version": version, "code_diff": diff}, {"code_version": "0.1.0+gother.dirty",
                                                       "code_diff": "code-ffffffffffff.diff"}]))
    for _ in range(2):
        (dest,) = export(root, tmp_path / "exported")
        assert (dest / diff).read_bytes() == b"diff --git a/x b/x\n"
        assert not (dest / "code-ffffffffffff.diff").exists()
        assert f"code version `{version}` (a checkout with uncommitted changes: `{diff}` in this folder, " \
               "`git apply` on that commit)" in (dest / "MODEL_CARD.md").read_text()
    (root / diff).unlink()  # recorded, since removed: exported without it, the card saying it is missing
    (dest,) = export(root, tmp_path / "exported")
    assert not (dest / diff).exists() and (dest / "sweep_result.json").is_file()
    assert "whose diff is not in the results" in (dest / "MODEL_CARD.md").read_text()


def test_the_card_says_what_input_the_detector_takes(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A table model's card lists its columns (numbers, and each category's values) and the columns it
    ignores; an image model's, its channels and size."""
    from adgan.data import DATASETS, load_dataset, register_declared
    from adgan.data.fakes import write_table
    from adgan.sweep.best import _input_lines

    monkeypatch.setattr(DATASETS, "_items", dict(DATASETS._items))
    write_table(tmp_path / "t.csv")
    register_declared({"name": "t", "format": "table", "path": str(tmp_path / "t.csv"),
                       "label_column": "label", "categorical": ["service", "proto"],
                       "drop_columns": ["land"]})
    lines = _input_lines(load_dataset("t", 0, verbose=False).info.to_dict())
    assert lines[0] == ("Input: a table with these columns, in any order (`label`, `land` may be there too, "
                        "and are ignored; any other column is refused: `--keep` carries an id beside the "
                        "scores):")
    assert lines[2:5] == ["- numbers (2): `bytes`, `rate`", "- `service`, a category: `ftp`, `http`, `smtp`",
                          "- `proto`, a category: `icmp`, `tcp`, `udp`"]
    assert "A category value not listed is encoded as none of the listed ones" in lines[6]
    many = {"kind": "tabular", "preprocessing": {"format": "table", "label_column": "y", "numeric": [],
                                                 "categories": [["id", [str(i) for i in range(60)]]]}}
    assert _input_lines(many)[2].endswith("`49`, and 10 more (all in detector.json: "
                                          "meta.data.preprocessing.categories)")
    image = load_dataset("synthetic-images", 0, image_size=32, max_train=8, verbose=False).info.to_dict()
    assert _input_lines(image)[0].startswith("Input: images brought to 1 channel(s) of 32x32 pixels")


def test_the_report_breaks_ties_as_best_and_export_do(tmp_path: Path) -> None:
    """Two loss cases tied on validation AUPRC and AUROC: the report's per-model choice (the loss-case
    star, the GAN-vs-baseline table) is the recommendation's (names break the tie), never the faster fit
    (a timing, which differs between identical runs)."""
    root = tmp_path / "fake"
    rows = planted_sweep(root)
    for r in rows["best"]:
        if r["model"] == "egbad":
            r.update(val_auprc=0.80, val_auroc=0.90, fit_seconds=9.0 if r["loss_case"] == "bce-bce" else 1.0)
    write_tables(root, rows, ("best",))
    (rec,) = recommend(rows["best"])
    assert (rec.chosen.model, rec.chosen.loss_case) == ("egbad", "bce-bce")
    tables = html_tables(build_report(root, tmp_path / "report").html.read_text()).tables
    cases = row_of(tables["mnist-5k / egbad: test (validation) AUPRC per loss case"], "0")
    assert cases["bce-bce"].endswith(" *") and not cases["fm-fm"].endswith(" *")
    gvb = row_of(tables["mnist-5k: best GAN vs best baseline (test AUPRC; both chosen on validation)"], "0")
    assert gvb["best GAN"].startswith("egbad [bce-bce]")


def test_a_sweep_with_planned_groups_not_ended_says_so_in_best_and_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An interrupted (or running) sweep: `adgan best` notes the planned groups without a result, and the
    report says the same beside its answer (it read as a finished sweep's, its headline over the classes
    that happened to end)."""
    root = tmp_path / "fake"
    rows = planted_sweep(root)
    done = sorted({r["group_id"] for r in rows["best"]})
    spec = json.loads((root / "spec.json").read_text())
    (root / "spec.json").write_text(json.dumps({**spec, "groups": [*done, "mnist-5k/c1/knn/default/s0"]}))
    note = (f"note: 1 of {len(done) + 1} groups of this sweep have no result yet (still running, or "
            "interrupted: continue with adgan sweep SPEC --resume), e.g. mnist-5k/c1/knn/default/s0")
    assert cli_main(["best", str(root)]) == 0
    assert note in capsys.readouterr().err
    report = build_report(root, tmp_path / "report").markdown.read_text()
    answer = report.split("## Recommended detector per class", 1)[1].split("\n## ", 1)[0]
    overview = report.split("## Overview", 1)[1].split("\n## ", 1)[0]
    assert note in answer and note in overview and report.count(note) == 2  # not in every other section
    (root / "spec.json").write_text(json.dumps({**spec, "groups": done}))  # every planned group ended
    assert "have no result yet" not in build_report(root, tmp_path / "report2").markdown.read_text()
