"""The ``adgan train`` / ``adgan score`` command line, end to end on small data."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from adgan.cli import build_parser, main
from adgan.data import load_dataset
from adgan.data.fakes import fake_kdd_rows, write_kdd_csv
from adgan.models import Detector


def _train(out: Path, *extra: str) -> int:
    return main(["train", "--model", "ganomaly", "--dataset", "synthetic-images", "--epochs", "2",
                 "--batch-size", "32", "--latent-dim", "16", "--set", "base_filters=8",
                 "--max-train", "256", "--threads", "1", "--out", str(out), *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    assert _train(out) == 0
    return out


def test_train_writes_checkpoint_metrics_and_summary(trained: Path, capsys: pytest.CaptureFixture) -> None:
    lines = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in lines if r.get("kind") == "epoch"]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(0.0 <= r["val_auprc"] <= 1.0 for r in records)
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["status"] == "completed" and 0.0 <= summary["test_auprc"] <= 1.0
    assert (trained / "checkpoint" / "detector.json").is_file()
    config = json.loads((trained / "config.json").read_text())["config"]
    assert config["model"] == "ganomaly" and config["base_filters"] == 8 and config["epochs"] == 2
    assert config["threads"] == 1  # recorded as used (training's float sums depend on it)


def test_train_records_the_threads_it_used_when_not_told(tmp_path: Path) -> None:
    from adgan.train import cpus_available, train

    records = list(train({"model": "knn", "dataset": "synthetic-tabular", "anomaly_class": 0},
                         out=tmp_path / "run"))
    assert records[-1]["kind"] == "summary"
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert saved["threads"] == cpus_available()


def test_train_prints_one_line_per_epoch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _train(tmp_path / "run", "--epochs", "1") == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "epoch 1" in text and "val AUPRC" in text and "checkpoint:" in text


def test_score_npy_matches_the_detector(trained: Path, tmp_path: Path) -> None:
    x = load_dataset("synthetic-images", 0, 0, image_size=32).test.x[:20]
    src = tmp_path / "x.npy"
    np.save(src, x)
    assert main(["score", "--checkpoint", str(trained), "--input", str(src)]) == 0
    lines = (tmp_path / "x.npy.scores.csv").read_text().splitlines()
    assert lines[0] == "score" and len(lines) == 21
    expected = Detector.load(trained / "checkpoint").score(x)
    np.testing.assert_allclose(np.array(lines[1:], dtype=np.float64), expected, rtol=1e-6)


def test_score_flags_at_a_cutoff_chosen_on_validation_or_given(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The checkpoint records score cutoffs chosen on validation; ``--flag`` names one (or gives a value)
    and the output gains a ``flagged`` column; the run's summary measured each on test."""
    from adgan import metrics

    splits = load_dataset("synthetic-images", 0, 0, image_size=32)
    meta = json.loads((trained / "checkpoint" / "detector.json").read_text())["meta"]
    detector = Detector.load(trained / "checkpoint")
    assert meta["cutoffs"] == metrics.cutoffs(splits.val.y, detector.score(splits.val.x))
    assert meta["cutoffs_from"] == {"split": "validation", "n": len(splits.val),
                                    "n_anomalies": int(splits.val.y.sum())}
    summary = json.loads((trained / "summary.json").read_text())
    test_scores = detector.score(splits.test.x)
    for name, c in meta["cutoffs"].items():
        assert summary["test_at_cutoffs"][name] == pytest.approx(
            metrics.at_cutoff(splits.test.y, test_scores, c["cutoff"]))

    src = tmp_path / "x.npy"
    np.save(src, splits.test.x[:30])
    for flag, cutoff in (("best-f1", meta["cutoffs"]["best-f1"]["cutoff"]), ("0.5", 0.5)):
        out = tmp_path / f"{flag}.csv"
        assert main(["score", "--checkpoint", str(trained), "--input", str(src), "--output", str(out),
                     "--flag", flag]) == 0
        rows = np.loadtxt(out, delimiter=",", skiprows=1)
        assert out.read_text().splitlines()[0] == "score,flagged" and rows.shape == (30, 2)
        assert (rows[:, 1] == (rows[:, 0] >= cutoff)).all()
        assert f"flagged {int(rows[:, 1].sum())} of 30 scored rows at score cutoff {cutoff:.9g} ({flag})" \
            in capsys.readouterr().err
    assert main(["score", "--checkpoint", str(trained), "--input", str(src), "--flag", "fpr-2%"]) == 2
    err = capsys.readouterr().err
    assert "--flag fpr-2%: expected one of best-f1, fpr-1%, fpr-5%" in err and "finite score value" in err
    with pytest.raises(SystemExit) as stopped:  # argparse keeps the last of two; the first goes unscored
        main(["score", "--checkpoint", str(trained), "--input", str(src), "--input", str(src)])
    assert stopped.value.code == 2 and "--input given twice; it takes one value" in capsys.readouterr().err
    # A checkpoint of an adgan before cutoffs: named cutoffs refused with the way out, values still work.
    old = tmp_path / "old"
    shutil.copytree(trained / "checkpoint", old)
    header = json.loads((old / "detector.json").read_text())
    del header["meta"]["cutoffs"]
    (old / "detector.json").write_text(json.dumps(header))
    assert main(["score", "--checkpoint", str(old), "--input", str(src), "--flag", "best-f1"]) == 2
    assert "records no cutoffs chosen on validation" in capsys.readouterr().err
    assert main(["score", "--checkpoint", str(old), "--input", str(src), "--flag", "0.5"]) == 0


def test_score_leaves_rows_the_detector_could_not_score_unflagged_and_says_so(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The detector contract allows NaN scores (a row it cannot score): such a row is neither flagged nor
    passed as normal, and the count is said."""
    from adgan.models import base

    scores_of = base.scores_of

    def with_a_nan(detector: Detector, x: np.ndarray) -> np.ndarray:
        out = scores_of(detector, x).copy()
        out[1] = np.nan
        return out

    monkeypatch.setattr(base, "scores_of", with_a_nan)
    src = tmp_path / "x.npy"
    np.save(src, load_dataset("synthetic-images", 0, 0, image_size=32).test.x[:5])
    assert main(["score", "--checkpoint", str(trained), "--input", str(src), "--output", "-",
                 "--flag", "0"]) == 0  # cutoff 0: every scored row flagged
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "score,flagged" and out.splitlines()[2] == "nan,"
    assert [line.split(",")[1] for line in out.splitlines()[1:]] == ["1", "", "1", "1", "1"]
    assert "1 of 5 scores are NaN (the first at row 2): the detector could not score those rows; their " \
        "flagged cell is left empty" in err and "flagged 4 of 4 scored rows" in err


def test_score_refuses_wrong_channels_and_missing_files(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    src = tmp_path / "rgb.npy"
    np.save(src, np.zeros((4, 3, 32, 32), np.float32))
    assert main(["score", "--checkpoint", str(trained), "--input", str(src)]) == 2
    err = capsys.readouterr().err
    assert "adgan: error:" in err and str(src) in err and "channel" in err
    assert main(["score", "--checkpoint", str(tmp_path / "nothing"), "--input", str(src)]) == 2
    assert "no detector checkpoint" in capsys.readouterr().err


def test_score_raw_kdd_csv(fake_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "knn"
    assert main(["train", "--model", "knn", "--dataset", "kdd99", "--data-dir", str(fake_data_dir),
                 "--out", str(out)]) == 0
    rows = fake_kdd_rows(12, seed=5)
    src = write_kdd_csv(tmp_path / "new.csv", rows, compress=False)
    dest = tmp_path / "s.csv"
    assert main(["score", "--checkpoint", str(out), "--input", str(src), "--output", str(dest)]) == 0
    scores = np.loadtxt(dest, skiprows=1)
    assert scores.shape == (12,) and np.isfinite(scores).all()


def test_train_refuses_bad_values(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--model", "ganomaly", "--dataset", "mnist-5k", "--anomaly-class", "12",
                 "--out", str(tmp_path / "r")]) == 2
    assert "anomaly_class 12" in capsys.readouterr().err
    assert main(["train", "--model", "ganomaly", "--dataset", "synthetic-images", "--set", "w_conn=3",
                 "--out", str(tmp_path / "r")]) == 2
    assert "w_conn" in capsys.readouterr().err
    missing = tmp_path / "parts.yaml"
    assert main(["train", "--model", "knn", "--dataset", str(missing), "--out", str(tmp_path / "r")]) == 2
    assert f"--dataset {missing}: no such declaration file" in capsys.readouterr().err
    # YAML's null for a hyperparameter: refused by name, no traceback (failed deep in the fit before).
    assert main(["train", "--model", "knn", "--dataset", "synthetic-tabular", "--set", "k=null",
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "hyperparameter 'k' of model 'knn': expected int, got None" in err and "Traceback" not in err


def test_train_checks_its_config_at_the_call() -> None:
    """``train(config)`` refuses a wrong config when called, not at its first record; a misspelt run key
    gets a suggestion; a training run of 0 epochs is refused."""
    from adgan.errors import ConfigError
    from adgan.train import train

    with pytest.raises(ConfigError, match=r"config key 'anomaly_clas' is neither a run key nor a "
                                          r"hyperparameter of 'knn' \(did you mean 'anomaly_class'\?\)"):
        train({"model": "knn", "dataset": "synthetic-tabular", "anomaly_clas": 0})
    with pytest.raises(ConfigError, match=r"epochs: a training run needs at least 1 epoch, got 0"):
        train({"model": "ganomaly", "dataset": "synthetic-tabular", "epochs": 0})
    records = train({"model": "knn", "dataset": "synthetic-tabular", "max_train": 64}, evaluate_test=False)
    assert [r["kind"] for r in records] == ["epoch", "summary"]
    # Preloaded splits of another class, seed or dataset than the config's: the run would file one's
    # metrics under the other's name.
    from adgan.data import load_dataset

    splits = load_dataset("synthetic-images", 1, seed=5, verbose=False, max_train=64)
    with pytest.raises(ConfigError, match=r"the splits are not the config's: anomaly_class 0 \(splits: 1\); "
                                          r"seed 0 \(splits: 5\); max_train None \(splits: 64\)"):
        train({"model": "knn", "dataset": "synthetic-images"}, splits=splits)
    with pytest.raises(ConfigError, match=r"dataset 'synthetic-tabular' \(splits: 'synthetic-images'\)"):
        train({"model": "knn", "dataset": "synthetic-tabular", "anomaly_class": 0, "seed": 5}, splits=splits)
    with pytest.raises(ConfigError, match=r"image_size 32 \(splits: 28\)"):  # the recorded config would lie
        train({"model": "ganomaly", "dataset": "synthetic-images", "anomaly_class": 1, "seed": 5,
               "max_train": 64, "image_size": 32}, splits=splits)
    summary = list(train({"model": "knn", "dataset": "synthetic-images", "anomaly_class": 1, "seed": 5,
                          "max_train": 64}, splits=splits))[-1]
    assert summary["data"]["anomaly_class"] == summary["config"]["anomaly_class"] == 1
    assert summary["config"]["device"] != "auto"  # recorded as used: "cpu", or a CUDA device
    # Run keys of the wrong type or range, at the call (not deep in torch or scikit-learn, or taken wrongly).
    for key, value, expected in (("bf16", "false", "true or false"), ("threads", -2, "a whole number >= 1"),
                                 ("seed", 2**32, r"a whole number in 0 \.\. 2\*\*32 - 1"),
                                 ("max_train", 0, "a whole number >= 1"), ("scale", "yes", "true, false")):
        with pytest.raises(ConfigError, match=rf"{key} must be {expected}.*, got {value!r}"):
            train({"model": "knn", "dataset": "synthetic-tabular", key: value})


def test_train_refuses_a_checkpoint_folder_of_the_users_before_training(tmp_path: Path) -> None:
    """``out/checkpoint`` holding someone's files: refused before the first epoch trains, nothing deleted."""
    from adgan.errors import DataError
    from adgan.train import train

    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "notes.txt").write_text("mine")
    records = train({"model": "knn", "dataset": "synthetic-tabular"}, out=tmp_path)
    with pytest.raises(DataError, match=r"checkpoint: exists and is not a saved detector"):
        next(records)
    assert (tmp_path / "checkpoint" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "config.json").exists()


def test_train_help_documents_every_option() -> None:
    parser = build_parser(["train"])
    train = next(a for a in parser._actions if a.dest == "command").choices["train"]
    for action in train._actions:
        assert action.help, f"adgan train option {action.option_strings} has no help text"


def test_commands_other_than_train_do_not_import_torch() -> None:
    code = (
        "import sys, adgan.cli\n"
        "for cmd in (['best', 'r'], ['report', 'r'], ['export', 'r', '--out', 'o'], ['score', '--checkpoint',"
        " 'c', '--input', 'i']):\n"
        "    adgan.cli.build_parser(cmd).parse_args(cmd)\n"
        "assert 'torch' not in sys.modules and 'pandas' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_train_refuses_to_overwrite_a_run_unless_asked(trained: Path, capsys: pytest.CaptureFixture) -> None:
    before = (trained / "summary.json").read_text()
    assert main(["train", "--model", "knn", "--dataset", "synthetic-images", "--out", str(trained)]) == 2
    assert f"{trained} already holds a run" in capsys.readouterr().err
    assert (trained / "summary.json").read_text() == before  # untouched


def test_train_overwrite_replaces_every_file_and_accepts_class_names(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    assert _train(out, "--epochs", "1") == 0
    assert (out / "checkpoint").is_dir()
    assert main(["train", "--model", "pca", "--dataset", "synthetic-images", "--anomaly-class", "disk",
                 "--out", str(out), "--overwrite"]) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["model"] == "pca" and config["anomaly_class"] == 3  # 'disk' is class 3
    assert Detector.load(out / "checkpoint").name == "pca"
    assert main(["train", "--model", "pca", "--dataset", "synthetic-images", "--anomaly-class", "square",
                 "--out", str(tmp_path / "r2")]) == 2
    assert "hstripes, vstripes, checker, disk, ring" in capsys.readouterr().err


def test_train_overwrite_keeps_the_old_run_when_the_new_one_fails_before_its_first_epoch(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    assert main(["train", "--model", "knn", "--dataset", "synthetic-images", "--set", "k=3",
                 "--out", str(out)]) == 0
    before = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    from PIL import Image

    for name in ("a", "b"):  # too few images: found when the new run loads its data, not before
        (tmp_path / "few" / name).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "few" / name / "0.png")
    bad = tmp_path / "few.yaml"
    bad.write_text("name: few\nformat: image-folder\nroot: few\nchannels: 1\n")
    assert main(["train", "--model", "knn", "--dataset", str(bad), "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "fewer than min_per_class" in err and f"the run in {out} was kept" in err
    assert {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    # Once the new run has its first epoch, it replaces the old one: nothing of the old is left aside.
    assert main(["train", "--model", "knn", "--dataset", "synthetic-images", "--set", "k=5",
                 "--out", str(out), "--overwrite"]) == 0
    assert json.loads((out / "config.json").read_text())["config"]["k"] == 5
    assert not (out / ".replaced").exists()
    # Killed (no `finally`) while the new run loaded its data: the next command puts the old run back.
    before = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    (out / ".replaced").mkdir()
    for path in [p for p in out.iterdir() if p.name != ".replaced"]:  # as --overwrite sets it aside
        path.rename(out / ".replaced" / path.name)
    (out / "config.json").write_text("{}")  # what the killed new run had written
    capsys.readouterr()
    assert main(["train", "--model", "knn", "--dataset", "synthetic-images", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"put back the run in {out} that an interrupted --overwrite had set aside" in err
    assert f"{out} already holds a run" in err
    assert {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


def _train_on_table(tmp_path: Path, name: str, text: str, declared: str) -> Path:
    """kNN trained on the CSV ``text`` (label column ``flag``, 0/1) declared as dataset ``name`` with the
    declaration lines ``declared``; returns its run directory."""
    (tmp_path / "t.csv").write_text(text)
    decl = tmp_path / "t.yaml"
    decl.write_text(f"name: {name}\nformat: table\npath: t.csv\nlabel_column: flag\nlabels: anomaly\n"
                    + declared)
    assert main(["train", "--model", "knn", "--dataset", str(decl), "--out", str(tmp_path / "run")]) == 0
    return tmp_path / "run"


def test_train_shows_input_warnings_as_adgan_lines(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """adgan's warnings about the user's input read as its errors do (one 'adgan: warning:' line), in train
    as in score, not as Python's file:line report."""
    rows = "".join(f"u{i},{i % 7},{int(i % 10 == 0)}\n" for i in range(300))
    _train_on_table(tmp_path, "ids", "id,a,flag\n" + rows, "categorical: [id]\n")
    err = capsys.readouterr().err
    assert "adgan: warning: dataset 'ids'" in err and "an identifier rather than a category?" in err
    assert "InputWarning" not in err


def test_score_keeps_columns_of_the_input_table_beside_the_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """--keep copies an id (not a feature: dropped in training, or absent from it) and a feature column into
    the output, row for row with the scores, in the order given; bad uses are refused by name."""
    rows = "".join(f"u{i},{(i * 7) % 11}.5,{'xy'[i % 2]},{int(i % 10 == 0)}\n" for i in range(200))
    _train_on_table(tmp_path, "kept", "id,a,c,flag\n" + rows, "categorical: [c]\ndrop_columns: [id]\n")
    new = tmp_path / "new.csv"
    new.write_text("a,id,c\n0.5,u7,x\n99.5,,y\n3.5,u9,y\n")  # an empty id is kept as empty
    out = tmp_path / "s.csv"
    base = ["score", "--checkpoint", str(tmp_path / "run"), "--input", str(new), "--output", str(out)]
    assert main([*base, "--keep", "id", "--keep", "a"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "id,a,score" and [ln.split(",")[:2] for ln in lines[1:]] == [
        ["u7", "0.5"], ["", "99.5"], ["u9", "3.5"]]
    assert main([*base[:-2], "--output", str(tmp_path / "plain.csv")]) == 0  # the id is dropped in training
    scores = [ln.split(",")[-1] for ln in lines[1:]]
    assert [ln for ln in (tmp_path / "plain.csv").read_text().splitlines()[1:]] == scores
    capsys.readouterr()
    assert main([*base, "--keep", "nope"]) == 2
    assert "no column 'nope' to keep; its columns are: a, id, c" in capsys.readouterr().err
    (tmp_path / "semi.csv").write_text("a;id;c\n0.5;u7;x\n")  # a spreadsheet's export: said as such
    assert main([*base[:4], str(tmp_path / "semi.csv"), "--keep", "id"]) == 2
    assert "(one column named with ';': only comma-separated files are read)" in capsys.readouterr().err
    assert main([*base, "--keep", "score"]) == 2
    assert "--keep score: the output has a column of that name already" in capsys.readouterr().err
    assert main([*base, "--keep", "id", "--keep", "a", "--keep", "a"]) == 2
    assert "--keep a: given twice" in capsys.readouterr().err
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.float32))
    assert main([*base[:3], "--input", str(tmp_path / "x.npy"), "--output", "-", "--keep", "id"]) == 2
    assert "--keep copies columns of a table with named columns" in capsys.readouterr().err


def test_score_names_a_damaged_checkpoint(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import shutil

    src = tmp_path / "x.npy"
    np.save(src, np.zeros((2, 1, 32, 32), np.float32))
    broken = tmp_path / "broken"
    shutil.copytree(trained / "checkpoint", broken)
    (broken / "state.pt").write_bytes(b"not a torch file")
    assert main(["score", "--checkpoint", str(broken), "--input", str(src)]) == 2
    assert f"{broken / 'state.pt'}: not a readable ganomaly state" in capsys.readouterr().err
    (broken / "state.pt").unlink()
    assert main(["score", "--checkpoint", str(broken), "--input", str(src)]) == 2
    assert f"{broken / 'state.pt'}: missing" in capsys.readouterr().err
    header = json.loads((broken / "detector.json").read_text())
    (broken / "detector.json").write_text(json.dumps({**header, "model": "ganomalyy"}))
    assert main(["score", "--checkpoint", str(broken), "--input", str(src)]) == 2
    assert "model 'ganomalyy' is not registered" in capsys.readouterr().err
    # An output path that cannot be written: one line naming it, no traceback.
    dest = tmp_path / "no" / "such" / "dir" / "s.csv"
    assert main(["score", "--checkpoint", str(trained), "--input", str(src), "--output", str(dest)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("adgan: error:") and str(dest) in err and "Traceback" not in err


def test_train_resume_continues_an_interrupted_run(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from adgan.train import train

    out = tmp_path / "run"
    config = {"model": "ganomaly", "dataset": "synthetic-images", "epochs": 2, "batch_size": 32,
              "latent_dim": 16, "base_filters": 8, "max_train": 256, "threads": 1}
    records = train(config, out=out, save_state=True)
    assert next(records)["epoch"] == 1
    records.close()  # interrupted after its first epoch
    # Other options: refused before anything says it is resuming (no "resuming ..." line, no progress bar).
    assert _train(out, "--resume", "--set", "lr=0.01") == 2
    err = capsys.readouterr().err
    assert "saved by a run of another config (lr 0.0002 -> 0.01)" in err and "resuming" not in err, err
    assert _train(out, "--resume") == 0  # the same options as the interrupted run
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in logged if r["kind"] == "epoch"] == [1, 2]
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"
    assert main(["train", "--model", "ganomaly", "--dataset", "synthetic-images", "--out", str(out),
                 "--resume", "--overwrite"]) == 2


def test_resume_refuses_a_run_whose_data_were_encoded_otherwise(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A run started by an adgan that encoded the same file another way (a declared table's categories
    learnt from the whole file, before they were learnt from the training rows): its saved networks take
    other inputs, so --resume says so instead of failing on the weights' shapes."""
    from adgan.train import train

    out = tmp_path / "run"
    config = {"model": "ganomaly", "dataset": "synthetic-images", "epochs": 2, "batch_size": 32,
              "latent_dim": 16, "base_filters": 8, "max_train": 256, "threads": 1}
    records = train(config, out=out, save_state=True)
    assert next(records)["epoch"] == 1
    records.close()
    provenance = json.loads((out / "config.json").read_text())
    shape = tuple(provenance["data"]["input_shape"])
    provenance["data"]["input_shape"] = [1, 28, 29]  # what another encoding would have recorded
    (out / "config.json").write_text(json.dumps(provenance))
    assert _train(out, "--resume") == 2
    err = capsys.readouterr().err
    said = f"train_state.pt: the run's data were encoded otherwise (input shape (1, 28, 29) then, {shape} now"
    assert said in err and "--overwrite to start over" in err and "Traceback" not in err


def test_specs_lists_each_shipped_spec_with_its_first_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    from adgan.cli import main

    assert main(["specs"]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines() if line.strip())
    assert {"mnist", "smoke", "own_arrays", "kdd99"} <= set(lines)
    assert all(text.endswith(".") for text in lines.values()), lines  # a sentence, not a cut first line
    assert lines["own_arrays"].endswith("or 0/1 anomaly flags with labels: anomaly).")
    assert "the `normal.` rows are the anomaly" in lines["kdd99"]


def test_resume_without_a_saved_state_says_how_to_start_again(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "--model", "knn", "--dataset", "synthetic-tabular", "--max-train", "64",
            "--out", str(tmp_path / "r")]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2  # a one-shot fit keeps no training state
    err = capsys.readouterr().err
    assert "train_state.pt: no saved training state to resume from" in err and "--overwrite" in err


def test_train_refuses_a_data_dir_without_the_files_though_the_cache_has_them(
        fake_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """--data-dir pointing at a folder that holds the IDX files itself but whose name does not say which
    dataset they are (MNIST's and Fashion-MNIST's share names), while the cache holds another MNIST: refused
    with the fix, not trained on the cache's copy under the asked one's name. Named for the dataset, the
    folder is taken."""
    cache = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    (cache / "adgan").mkdir(parents=True)
    (cache / "adgan" / "mnist").symlink_to(fake_data_dir / "mnist")
    digits = tmp_path / "digits"
    digits.symlink_to(fake_data_dir / "mnist")
    assert main(["train", "--model", "knn", "--dataset", "mnist", "--data-dir", str(digits),
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"data_dir (--data-dir) {digits}: no complete copy of dataset 'mnist'" in err
    assert f"the files are directly in {digits}, whose name does not say" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()
    assert main(["train", "--model", "knn", "--dataset", "mnist", "--data-dir", str(fake_data_dir / "mnist"),
                 "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    # The data's source line on a line of its own, before the progress bar (not inside it).
    assert re.search(rf"\n\[adgan\.data\] mnist: \d+ samples from {re.escape(str(fake_data_dir / 'mnist'))} "
                     r"sha256 ", err), err
    assert err.index("[adgan.data]") < err.index("knn:"), err


def test_version_names_adgan_and_its_libraries_without_importing_torch() -> None:
    probe = ("import sys, contextlib\nfrom adgan.cli import main\n"
             "with contextlib.suppress(SystemExit): main(['--version'])\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    version, torch_imported = out.stdout.strip().splitlines()
    assert version.startswith("adgan 0.") and "torch 2." in version and "ray 2." in version, version
    assert torch_imported == "False"


def test_code_version_is_not_the_commit_of_a_repository_adgan_is_installed_in(tmp_path: Path) -> None:
    """An installed adgan under a project's .venv inside that project's git repository: its recorded code
    version is its package version, not the project's commit."""
    import importlib.util

    from adgan import version

    project = tmp_path / "project"
    site = project / ".venv" / "lib" / "site-packages" / "adgan"
    site.mkdir(parents=True)
    shutil.copy(version.__file__, site / "version.py")
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (project / "a.txt").write_text("a")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "a"], check=True)
    spec = importlib.util.spec_from_file_location("foreign_version", site / "version.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.code_version() == version.__version__
    if (Path(version.__file__).resolve().parent.parent / ".git").exists():  # adgan's own checkout does
        assert version.code_version().startswith(version.__version__ + "+g")


def test_a_dirty_checkout_keeps_its_diff_beside_the_code_version(tmp_path: Path) -> None:
    """A run from a checkout with uncommitted changes records ``<sha>.dirty``, which names no code: the
    diff itself is written beside it (``code-<hash>.diff``), so that the run's code can be rebuilt."""
    import importlib.util

    from adgan import version

    repo = tmp_path / "my projects" / "adgan"  # (a space in the path)
    (repo / "adgan").mkdir(parents=True)
    shutil.copy(version.__file__, repo / "adgan" / "version.py")
    (repo / "notes.csv").write_bytes("caf\u00e9,1\n".encode("latin-1"))  # a tracked file that is not UTF-8
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "a"], check=True)

    def load() -> object:
        spec = importlib.util.spec_from_file_location("checkout_version", repo / "adgan" / "version.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    written: dict[str, bytes] = {}
    clean = load()
    assert re.fullmatch(r"0\.\d+\.\d+\+g[0-9a-f]{12}", clean.code_version())
    assert clean.save_uncommitted_diff(written.__setitem__) is None
    with open(repo / "adgan" / "version.py", "a") as f:
        f.write("# a local change\n")
    (repo / "notes.csv").write_bytes("caf\u00e9,2\n".encode("latin-1"))
    dirty = load()
    assert dirty.code_version().endswith(".dirty")
    name = dirty.save_uncommitted_diff(written.__setitem__)
    assert name is not None and re.fullmatch(r"code-[0-9a-f]{12}\.diff", name)
    assert b"+# a local change" in written[name]
    # git apply on the commit rebuilds the code the run used
    (tmp_path / name).write_bytes(written[name])
    subprocess.run([*git, "checkout", "-q", "--", "."], check=True)
    subprocess.run([*git, "apply", str(tmp_path / name)], check=True)
    assert (repo / "adgan" / "version.py").read_text().endswith("# a local change\n")
    assert (repo / "notes.csv").read_bytes() == "caf\u00e9,2\n".encode("latin-1")


def test_a_score_pointing_the_wrong_way_is_said_after_training(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from adgan.models import DETECTORS, register_detector
    from adgan.models.baselines import KNN

    class NegKNN(KNN):
        name = "negknn-for-test"

        def score(self, x: np.ndarray) -> np.ndarray:
            return -super().score(x)

    register_detector(NegKNN)
    try:
        for model in ("negknn-for-test", "knn"):
            assert main(["train", "--model", model, "--dataset", "synthetic-tabular",
                         "--out", str(tmp_path / model)]) == 0
            err = capsys.readouterr().err
            said = "the scores rank the normal samples above the anomalies; does this detector's score" in err
            assert said == (model == "negknn-for-test"), err
    finally:
        DETECTORS.unregister("negknn-for-test")


def test_a_running_training_run_folder_is_refused_to_a_second_process(tmp_path: Path) -> None:
    """Its --resume or --overwrite in another terminal would write the same files as the running run: both
    refused, naming the holder, and the running run is untouched. The first run is stopped (SIGSTOP) once
    it has logged an epoch, so it provably runs while the others try."""
    import signal

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "adgan.cli", "train", "--model", "ganomaly", "--dataset", "synthetic-images",
           "--epochs", "3", "--batch-size", "32", "--latent-dim", "16", "--set", "base_filters=8",
           "--max-train", "256", "--threads", "1", "--out", str(out)]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        log = out / "metrics.jsonl"
        while first.poll() is None and not (log.is_file() and '"kind": "epoch"' in log.read_text()):
            time.sleep(0.2)
        first.send_signal(signal.SIGSTOP)
        logged = log.read_text()
        for extra in ("--resume", "--overwrite"):
            r = subprocess.run([*cmd, extra], capture_output=True, text=True, timeout=300)
            assert r.returncode == 2, r.stderr[-2000:]
            assert f"{out} is in use by another training run (PID {first.pid} on " in r.stderr, r.stderr
            assert "give this one another --out" in r.stderr
        assert log.read_text() == logged and (out / "checkpoint").is_dir()
        first.send_signal(signal.SIGCONT)
        _, err = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, err[-2000:]
    # The lock went with the process that held it (one epoch is enough to show it).
    again = subprocess.run([*cmd, "--overwrite", "--epochs", "1"], capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]


def test_ctrl_c_in_training_says_how_to_resume_and_the_resume_where_it_starts(tmp_path: Path) -> None:
    import signal

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "adgan.cli", "train", "--model", "ganomaly", "--dataset", "synthetic-images",
           "--epochs", "10", "--batch-size", "32", "--latent-dim", "16", "--set", "base_filters=8",
           "--max-train", "256", "--threads", "1", "--out", str(out)]
    # SIGINT as a terminal's Ctrl-C delivers it: pytest-xdist's workers ignore it, and a child inherits that.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        log, state = out / "metrics.jsonl", out / "train_state.pt"
        # Until the first epoch is logged and its state saved (after the log line, atomically).
        while proc.poll() is None and not (
            log.is_file() and '"kind": "epoch"' in log.read_text() and state.is_file()
        ):
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "continue with the same command and --resume" in err and "adgan: interrupted" in err
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0 and f"resuming {out} after epoch" in resumed.stderr, resumed.stderr[-2000:]


def test_train_says_the_sizes_of_the_splits_it_trains_and_measures_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a user checks against the data they built (a sweep's tables and the model card record it too)."""
    from adgan.train import load_splits, resolve_config

    args = ["train", "--model", "knn", "--dataset", "synthetic-tabular", "--max-train", "64", "--out",
            str(tmp_path / "r")]
    assert main(args) == 0
    s = load_splits(resolve_config({"model": "knn", "dataset": "synthetic-tabular", "max_train": 64}))
    said = (f"splits: train 64 normals, validation {len(s.val)} ({int(s.val.y.sum())} anomalies), test "
            f"{len(s.test)} ({int(s.test.y.sum())} anomalies)")
    assert said in capsys.readouterr().err
