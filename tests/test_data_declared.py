"""Declared user datasets: every format loads, splits leak-free and deterministically, registers idempotently
and in a fresh process from its dict alone; bad declarations and files get errors naming what is wrong."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from adgan.data import (
    DATASETS,
    dataset_available,
    dataset_classes,
    dataset_kind,
    list_datasets,
    load_dataset,
    load_declaration_file,
    normalize_declaration,
    prepare_file,
    register_declared,
    resolve_declaration,
    split_indices,
)
from adgan.data.fakes import synthetic_class_images as _synth
from adgan.data.fakes import write_image_folders, write_mvtec_folder, write_table
from adgan.data.protocol import SplitFractions, image_split, normal_anomaly_split
from adgan.data.types import Splits
from adgan.errors import ConfigError, DataError, InputWarning

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("disk", "hstripes", "ring")  # synthetic classes 3, 0, 4; folder names sort in this order


@pytest.fixture(autouse=True)
def _own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Declared datasets registered by a test vanish after it (other tests list the registry)."""
    monkeypatch.setattr(DATASETS, "_items", dict(DATASETS._items))


def _table_decl(path: Path, **extra: object) -> dict:
    return {"name": "traffic", "format": "table", "path": str(path), "label_column": "label",
            "categorical": ["service", "proto"], **extra}


def _digest(s: Splits) -> str:
    h = hashlib.sha256()
    for part in (s.train, s.val, s.test):
        h.update(np.ascontiguousarray(part.x).tobytes())
        h.update(part.y.tobytes())
    return h.hexdigest()


def _check_leak_free(name: str, anomaly_class: int, **kw: object) -> Splits:
    """The invariants of every protocol, and determinism by seed."""
    s = load_dataset(name, anomaly_class, seed=3, verbose=False, **kw)
    idx = split_indices(name, anomaly_class, seed=3)
    everything = np.concatenate([idx.train, idx.val, idx.test])
    assert np.unique(everything).size == everything.size, "no sample in two splits"
    assert not s.train.y.any(), "train holds no anomaly"
    for part in (s.val, s.test):
        assert 0 < part.y.sum() < len(part)
    assert (len(s.train), len(s.val), len(s.test)) == (idx.train.size, idx.val.size, idx.test.size)
    assert _digest(s) == _digest(load_dataset(name, anomaly_class, seed=3, verbose=False, **kw))
    assert _digest(s) != _digest(load_dataset(name, anomaly_class, seed=4, verbose=False, **kw))
    assert s.info.n_samples >= everything.size and len(s.info.sha256) == 64
    json.dumps(s.info.to_dict(), sort_keys=True)
    return s


# ----- image folders -----
def test_image_folder(tmp_path: Path) -> None:
    root = write_image_folders(tmp_path / "shapes")
    name = register_declared({"name": "shapes", "format": "image-folder", "root": str(root), "channels": 1})
    assert name == "shapes" and "shapes" in list_datasets()
    assert dataset_classes(name) == CLASSES and dataset_kind(name) == "image" and dataset_available(name)
    for k in range(3):
        s = _check_leak_free(name, k, image_size=32)
        assert s.train.x.shape[1:] == (1, 32, 32) and s.info.classes == CLASSES
        # one-class protocol = the pooled one: 20 per class -> 40 normals: pool 32, val 3; anomalies 4 / 16
        assert (len(s.train), int(s.val.y.sum()), int(s.test.y.sum())) == (29, 4, 16)
    info = s.info
    assert info.protocol == "pooled-80-20-v1" and info.source == str(root) and info.n_samples == 60
    assert info.preprocessing["native_size"] == 28 and info.preprocessing["source_sizes"] == [[28, 28, 60]]
    assert info.preprocessing["declaration"]["root"] == str(root)
    # Images are the files' pixels, classes in folder order, files in name order.
    raw = DATASETS.get(name).load(None)
    assert np.array_equal(raw.images[20:40, 0], _synth("hstripes", 20))
    # The digest is of contents: a new mtime keeps it, a changed pixel changes it.
    f = root / "ring" / "000.png"
    os.utime(f, ns=(1, 1))
    assert load_dataset(name, 0, verbose=False).info.sha256 == info.sha256
    img = _synth("ring", 1)[0].copy()
    img[0, 0] ^= 1
    Image.fromarray(img).save(f)
    assert load_dataset(name, 0, verbose=False).info.sha256 != info.sha256


def test_accented_class_names_match_in_either_unicode_form(tmp_path: Path) -> None:
    """Folders named with decomposed accents (macOS writes "e" + U+0301 for "é") are the classes a user
    types with composed ones, in a declaration's classes and as anomaly_class, in the same order as a
    composed copy of the folders."""
    import unicodedata

    from adgan.data import class_index

    composed, decomposed = "\u00e9crou plat", unicodedata.normalize("NFD", "\u00e9crou plat")
    assert composed != decomposed
    orders = []
    for form, name in (("nfc", composed), ("nfd", decomposed)):
        root = write_image_folders(tmp_path / form)
        (root / "ring").rename(root / name)
        dataset = register_declared({"name": f"nuts-{form}", "format": "image-folder", "root": str(root),
                                     "channels": 1})
        orders.append([unicodedata.normalize("NFC", c) for c in dataset_classes(dataset)])
        classes = dataset_classes(dataset)
        assert class_index(classes, composed, dataset) == classes.index(name)
        assert load_dataset(dataset, composed if form == "nfd" else 0, verbose=False).info.n_samples == 60
        chosen = register_declared({"name": f"some-{form}", "format": "image-folder", "root": str(root),
                                    "channels": 1, "classes": [composed, "disk"]})
        assert dataset_classes(chosen) == (name, "disk")  # the folder's own spelling: found by it
        assert load_dataset(chosen, 0, verbose=False).info.n_samples == 40
    assert orders[0] == orders[1]


def test_image_folder_classes_subset_rgb_and_extensions(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    for cls, ext in (("disk", ".PNG"), ("hstripes", ".jpeg"), ("ring", ".bmp"), ("vstripes", ".TIFF")):
        (root / cls / "sub").mkdir(parents=True)
        for i, img in enumerate(_synth(cls, 12)):
            Image.fromarray(img).save(root / cls / ("sub" if i % 2 else "") / f"{i:02d}{ext}")
    (root / "ring" / "notes.txt").write_text("not an image")
    (root / ".cache").mkdir()
    name = register_declared({"name": "mixed", "format": "image-folder", "root": str(root), "channels": 3,
                              "classes": ["vstripes", "disk", "ring"], "min_per_class": 12})
    assert dataset_classes(name) == ("vstripes", "disk", "ring")
    s = _check_leak_free(name, 2)
    assert s.train.x.shape[1:] == (3, 28, 28) and s.info.n_samples == 36
    assert np.array_equal(s.train.x[:, 0], s.train.x[:, 2])  # grey files converted to RGB


def test_image_folder_sizes(tmp_path: Path) -> None:
    root = write_image_folders(tmp_path / "sizes", per_class=10)
    Image.fromarray(_synth("disk", 1)[0]).resize((40, 30)).save(root / "disk" / "003.png")
    decl = {"name": "sizes", "format": "image-folder", "root": str(root), "channels": 1}
    register_declared(decl)
    with pytest.raises(DataError, match=r"images of different sizes: .*disk/000.png is 28x28, "
                                        r".*disk/003.png is 30x40 \(height x width\); declare image_size"):
        load_dataset("sizes", 0, verbose=False)
    register_declared({**decl, "name": "sized", "image_size": 32})
    s = load_dataset("sized", 0, verbose=False)
    assert s.train.x.shape[1:] == (1, 32, 32) and s.info.preprocessing["native_size"] == 32
    assert s.info.preprocessing["source_sizes"] == [[28, 28, 29], [30, 40, 1]]
    Image.fromarray(np.zeros((20, 28), np.uint8)).save(root / "disk" / "003.png")
    with pytest.raises(DataError, match=r"disk/000.png is 28x28, .*003.png is 20x28"):
        load_dataset("sizes", 0, verbose=False)


def test_deep_images(tmp_path: Path) -> None:
    from adgan.data.folders import read_image

    deep = (np.arange(28 * 28).reshape(28, 28) * 80).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "a.png")  # 16-bit greyscale: scaled, not clipped at 255
    assert np.array_equal(read_image(tmp_path / "a.png", 1)[0], np.rint(deep / 257).astype(np.uint8))
    Image.fromarray(deep.astype(np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(DataError, match=r"f.tif: 32-bit float image \(mode F\); its value range is unknown"):
        read_image(tmp_path / "f.tif", 3)
    # 12-bit data in 16-bit files keeps a few grey levels once mapped to 8 bits: said, once for the files.
    from adgan.data.folders import read_images

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_images([tmp_path / "a.png"], 1, None, "full")  # (values up to 62,640: no warning)
    for k in range(3):
        Image.fromarray((deep % 3700 + 400 + k).astype(np.uint16)).save(tmp_path / f"n{k}.png")
    with pytest.warns(InputWarning) as record:
        read_images([tmp_path / "a.png", *(tmp_path / f"n{k}.png" for k in range(3))], 1, None, "camera")
    (message,) = [str(w.message) for w in record]
    top = int((deep % 3700).max()) + 402
    assert message.startswith(f"camera: 3 of 4 images are 16-bit with values only up to {top} of 65535 ")
    assert "about 16 grey levels; stretch them to the full 16-bit range" in message


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("empty", r"shapes/hstripes: no image files \(.png, .jpg"),
        ("few", r"shapes/ring: 4 images, fewer than min_per_class 10"),
        ("loose", r"image files directly in the root \(e.g. stray.png\)"),
        ("none", r"shapes: no class subfolders"),
        ("missing-class", r"declared class 'cube' not found; the class folders are: disk, hstripes, ring"),
        ("no-root", r"root: folder .*nowhere not found"),
        ("broken", r"disk/000.png: cannot read as an image"),
    ],
)
def test_image_folder_errors(tmp_path: Path, setup: str, message: str) -> None:
    root = tmp_path / "shapes"
    decl: dict = {"name": "shapes", "format": "image-folder", "root": str(root), "channels": 1}
    if setup == "none":
        root.mkdir()
    else:
        write_image_folders(root, per_class=12)
    if setup == "empty":
        for f in (root / "hstripes").iterdir():
            f.unlink()
    elif setup == "few":
        for f in sorted((root / "ring").iterdir())[4:]:
            f.unlink()
    elif setup == "loose":
        Image.fromarray(_synth("disk", 1)[0]).save(root / "stray.png")
    elif setup == "missing-class":
        decl["classes"] = ["disk", "cube"]
    elif setup == "no-root":
        decl["root"] = str(tmp_path / "nowhere")
    elif setup == "broken":
        (root / "disk" / "000.png").write_bytes(b"not a png")
    register_declared(decl)  # registering reads nothing: the error comes when the data is needed
    with pytest.raises(DataError, match=message):
        dataset_classes("shapes")
        load_dataset("shapes", 0, verbose=False)


# ----- normal-vs-anomaly folders (MVTec AD layout) -----
def test_normal_anomaly_folder(tmp_path: Path) -> None:
    root = write_mvtec_folder(tmp_path / "bottle", size=36)
    name = register_declared({"name": "bottle", "format": "normal-anomaly-folder", "root": str(root),
                              "channels": 3, "image_size": 32})
    assert dataset_classes(name) == ("anomaly",) and dataset_kind(name) == "image"
    s = _check_leak_free(name, 0)
    assert s.info.protocol == "normal-anomaly-v1" and s.train.x.shape[1:] == (3, 32, 32)
    assert s.info.preprocessing["anomaly_types"] == ["ring", "vstripes"]
    idx = split_indices(name, 0, seed=3)
    assert np.array_equal(np.sort(idx.train), np.arange(30)), "train = train/good, all of it"
    raw = DATASETS.get(name).load(None)
    # test/good (10): 2 validate, 8 test; ring (10): 2 / 8; vstripes (5): 1 / 4 -- per type
    assert [int(np.isin(raw.labels[idx.val], k).sum()) for k in (0, 1, 2)] == [2, 2, 1]
    assert [int(np.isin(raw.labels[idx.test], k).sum()) for k in (0, 1, 2)] == [8, 8, 4]
    with pytest.raises(DataError, match=r"'bottle' has no class 1; valid anomaly_class values: 0='anomaly'"):
        load_dataset(name, 1, verbose=False)


def test_normal_anomaly_folder_errors(tmp_path: Path) -> None:
    root = write_mvtec_folder(tmp_path / "b")
    register_declared({"name": "b", "format": "normal-anomaly-folder", "root": str(root), "channels": 1})
    (root / "train" / "bad").mkdir()
    with pytest.raises(DataError, match=r"train: holds bad; train/ may only hold good/"):
        load_dataset("b", 0, verbose=False)
    (root / "train" / "bad").rmdir()
    for d in ("ring", "vstripes"):
        for f in (root / "test" / d).iterdir():
            f.unlink()
        (root / "test" / d).rmdir()
    with pytest.raises(DataError, match=r"test: no defect folders besides good/"):
        load_dataset("b", 0, verbose=False)


# ----- .npz arrays -----
def test_npz_images_and_rows(tmp_path: Path) -> None:
    x = np.concatenate([_synth(c, 20) for c in CLASSES])
    y = np.repeat(np.array([7, 2, 5]), 20)
    np.savez(tmp_path / "hw.npz", x=x, y=y)
    np.savez(tmp_path / "hwc.npz", x=np.repeat(x[..., None], 3, axis=3), y=y.astype(np.float64))
    np.savez(tmp_path / "float.npz", x=x.astype(np.float32) / 255, y=y)
    register_declared({"name": "hw", "format": "npz", "path": str(tmp_path / "hw.npz")})
    assert dataset_kind("hw") == "image" and dataset_classes("hw") == ("2", "5", "7")  # numeric order
    a = _check_leak_free("hw", 0)
    register_declared({"name": "hwc", "format": "npz", "path": str(tmp_path / "hwc.npz"), "channels": 3})
    b = load_dataset("hwc", 0, seed=3, verbose=False)
    assert b.train.x.shape[1:] == (3, 28, 28) and np.array_equal(b.train.x[:, 1], a.train.x[:, 0])
    register_declared({"name": "fl", "format": "npz", "path": str(tmp_path / "float.npz"),
                       "pixel_range": [0, 1]})
    c = load_dataset("fl", 0, seed=3, verbose=False)
    np.testing.assert_allclose(c.train.x, a.train.x, atol=1e-5)
    register_declared({"name": "fl0", "format": "npz", "path": str(tmp_path / "float.npz")})
    with pytest.raises(DataError, match=r"float images need 'pixel_range'"):
        load_dataset("fl0", 0, verbose=False)

    rng = np.random.default_rng(1)
    rows = np.concatenate([rng.normal(size=(80, 4)), rng.normal(8.0, 1.0, size=(20, 4))]).astype(np.float32)
    flag = np.r_[np.zeros(80, bool), np.ones(20, bool)]
    np.savez(tmp_path / "rows.npz", x=rows, y=flag)
    name = register_declared({"name": "rows", "format": "npz", "path": str(tmp_path / "rows.npz"),
                              "labels": "anomaly"})
    assert dataset_kind(name) == "tabular" and dataset_classes(name) == ("anomaly",)
    s = _check_leak_free(name, 0)
    assert s.info.protocol == "normal-anomaly-v1" and s.train.x.shape[1:] == (4,)
    assert (len(s.train), int(s.val.y.sum()), int(s.test.y.sum())) == (58, 4, 16)
    assert s.info.preprocessing["format"] == "plain"
    np.savez(tmp_path / "bad.npz", x=rows, z=flag)
    register_declared({"name": "bad", "format": "npz", "path": str(tmp_path / "bad.npz")})
    with pytest.raises(DataError, match=r"bad.npz: an .npz dataset needs arrays 'x' and 'y'; it holds x, z$"):
        dataset_kind("bad")


# ----- tables -----
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_table_formats(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"t{suffix}"
    if suffix == ".csv.gz":
        import gzip

        write_table(tmp_path / "plain.csv")
        path.write_bytes(gzip.compress((tmp_path / "plain.csv").read_bytes()))
    else:
        write_table(path)
    name = register_declared(_table_decl(path, labels="anomaly", anomaly_values=["scan", "flood"]))
    s = _check_leak_free(name, 0)
    prep = s.info.preprocessing
    assert s.info.protocol == "normal-anomaly-v1" and s.info.kind == "tabular"
    assert prep["columns"] == ["bytes", "rate", "land", "service=ftp", "service=http", "service=smtp",
                               "proto=icmp", "proto=tcp", "proto=udp"]
    assert prep["categories"] == [["service", ["ftp", "http", "smtp"]], ["proto", ["icmp", "tcp", "udp"]]]
    assert prep["anomaly_types"] == ["scan", "flood"] and prep["label_column"] == "label"
    table = write_table(tmp_path / "again.csv")
    idx = split_indices(name, 0, seed=3)
    first = table.take(pa.array(idx.test[:3])).to_pylist()
    # A declared table is min-max scaled with the training range by default (adgan.data.default_scale).
    raw = load_dataset(name, 0, seed=s.info.seed, scale=False, verbose=False)
    assert prep["scale"] is True and raw.info.preprocessing["scale"] is False
    lo, hi = np.asarray(prep["scale_min"]), np.asarray(prep["scale_max"])
    assert np.allclose(s.test.x, (raw.test.x - lo) / np.where(hi > lo, hi - lo, 1), atol=1e-6)
    assert np.allclose(s.train.x.min(0), 0) and np.allclose(s.train.x.max(0)[hi > lo], 1)
    for row, enc in zip(first, raw.test.x[:3], strict=True):
        assert enc[:3].tolist() == pytest.approx([row["bytes"], row["rate"], row["land"]])
        assert enc[3:6].tolist() == [float(row["service"] == v) for v in ("ftp", "http", "smtp")]


def test_categories_are_learnt_from_the_training_rows_alone(tmp_path: Path) -> None:
    """A category value that no training row holds (here one only the anomalies have; with one class
    anomalous in turn, the values its normal classes lack) is not a feature: the encoding is learnt from the
    training rows, and validation and test rows holding it are encoded as none of the known values, as new
    input's unseen values are (adgan score warns about those)."""
    import pyarrow.csv as pcsv

    n = 400
    rng = np.random.default_rng(0)
    label = np.array(["ok", "ok", "ok", "scan"] * (n // 4))
    proto = np.where(rng.random(n) < 0.5, "tcp", "udp").astype(object)
    proto[label == "scan"] = np.where(rng.random(int((label == "scan").sum())) < 0.5, "gre", "tcp")
    path = tmp_path / "t.csv"
    pcsv.write_csv(pa.table({"x": rng.normal(size=n), "proto": proto.astype(str), "label": label}), path)
    name = register_declared({"name": "t", "format": "table", "path": str(path), "label_column": "label",
                              "categorical": ["proto"], "labels": "anomaly", "anomaly_values": ["scan"]})
    s = load_dataset(name, 0, scale=False, verbose=False)
    prep = s.info.preprocessing
    assert prep["categories"] == [["proto", ["tcp", "udp"]]]
    assert prep["columns"] == ["x", "proto=tcp", "proto=udp"]
    assert s.train.x.shape[1] == s.test.x.shape[1] == 3
    idx = split_indices(name, 0, seed=0)
    for part, rows in ((s.val, idx.val), (s.test, idx.test)):
        gre = proto[rows] == "gre"
        assert gre.any() and not part.x[gre, 1:].any() and part.y[gre].all()
        assert (part.x[~gre, 1:].sum(axis=1) == 1).all()
    # Scoring the same raw rows later encodes them as the splits did, with a warning counting the value.
    rows = pa.table({"x": [0.0, 0.0], "proto": ["gre", "udp"]})
    pcsv.write_csv(rows, tmp_path / "new.csv")
    info = json.loads(json.dumps(s.info.to_dict(), sort_keys=True))
    with pytest.warns(InputWarning, match="'gre' \\(1 row\\)"):
        assert prepare_file(tmp_path / "new.csv", info).tolist() == [[0, 0, 0], [0, 0, 1]]
    # One class anomalous, the others normal: each anomalous class's splits have the encoding of their
    # own training rows (the "scan" rows, normal when "ok" is the anomaly, hold no "udp").
    name = register_declared({"name": "t1", "format": "table", "path": str(path), "label_column": "label",
                              "categorical": ["proto"]})
    for anomalous, values in (("scan", ["tcp", "udp"]), ("ok", ["gre", "tcp"])):
        one = load_dataset(name, anomalous, scale=False, verbose=False)
        assert one.info.preprocessing["categories"] == [["proto", values]] and one.test.x.shape[1] == 3


def test_numbers_stored_as_text_are_the_same_feature_in_every_file(tmp_path: Path) -> None:
    """A Parquet column of numbers stored as strings (a writer's choice) and a CSV's numbers padded with
    spaces (which makes a CSV reader type the column as text) are the numeric feature the same numbers
    are in a numeric column: the same encoded rows, for training and for scoring."""
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    table = write_table(tmp_path / "t.parquet")
    texts = table.set_column(table.column_names.index("rate"), "rate",
                             pc.cast(table.column("rate"), pa.string()))
    pq.write_table(texts, tmp_path / "text.parquet")
    csv = (tmp_path / "t.csv")
    pcsv.write_csv(table, csv)
    lines = csv.read_text().splitlines()
    at = lines[0].split(",").index('"bytes"')
    padded = [lines[0]] + [",".join(f" {c} " if i == at else c for i, c in enumerate(line.split(",")))
                           for line in lines[1:]]
    (tmp_path / "padded.csv").write_text("\n".join(padded) + "\n")
    encoded = {}
    for stem in ("t.parquet", "text.parquet", "padded.csv"):
        name = register_declared(_table_decl(tmp_path / stem, name=stem.replace(".", "-")))
        s = load_dataset(name, 0, seed=0, verbose=False)
        assert s.info.preprocessing["columns"][:3] == ["bytes", "rate", "land"]
        info = json.loads(json.dumps(s.info.to_dict()))  # (as a checkpoint keeps it)
        encoded[stem] = (s.train.x, prepare_file(tmp_path / "text.parquet", info),
                         prepare_file(tmp_path / "padded.csv", info))
    for got in encoded.values():
        for a, b in zip(got, encoded["t.parquet"], strict=True):
            np.testing.assert_array_equal(a, b)
    texts = texts.set_column(texts.column_names.index("rate"), "rate",
                             pa.array(["0.5"] * (len(texts) - 1) + ["n/a"]))
    pq.write_table(texts, tmp_path / "bad.parquet")  # one cell that is no number: that cell is named
    with pytest.raises(DataError, match=rf"row {len(texts)}: 'n/a'\); declare it in 'categorical'"):
        load_dataset(register_declared(_table_decl(tmp_path / "bad.parquet", name="bad")), 0, verbose=False)


def test_table_one_class_and_subset(tmp_path: Path) -> None:
    write_table(tmp_path / "t.csv")
    name = register_declared(_table_decl(tmp_path / "t.csv", classes=["scan", "ok", "flood"]))
    assert dataset_classes(name) == ("scan", "ok", "flood")
    for k in range(3):
        s = _check_leak_free(name, k)
        assert s.info.protocol == "pooled-80-20-v1"
    register_declared(_table_decl(tmp_path / "t.csv", name="two", classes=["ok", "flood"], test_fraction=0.3))
    s = load_dataset("two", 1, verbose=False)
    raw = DATASETS.get("two").load(None)
    n_ok, n_flood = int((raw.labels == 0).sum()), int((raw.labels == 1).sum())
    assert s.info.n_samples == n_ok + n_flood < 240  # scan rows left out
    assert len(s.test) - int(s.test.y.sum()) == n_ok - n_ok * 7 // 10
    assert s.info.protocol.startswith("pooled-80-20-v1(test_fraction=0.3, ")


def test_table_labels_written_as_floats_are_the_integers(tmp_path: Path) -> None:
    """pandas writes a float label column as "1.0" to CSV; Parquet's floats read as text are "1": either
    file gives the classes 1, 2, 10 (in numeric order), as the docs say ("1" and "1.0" are one label);
    0.0/1.0 flags are flags, and ``anomaly_values: [1.0]`` names the label 1.0."""
    import pyarrow.parquet as pq

    labels = [1.0, 2.0, 10.0] * 20
    (tmp_path / "t.csv").write_text("a,lab\n" + "".join(f"{3 * i}.0,{v!r}\n" for i, v in enumerate(labels)))
    pq.write_table(pa.table({"a": [3.0 * i for i in range(60)], "lab": labels}), tmp_path / "t.parquet")
    for suffix in ("csv", "parquet"):
        path = tmp_path / f"t.{suffix}"
        name = register_declared({"name": f"f{suffix}", "format": "table", "path": str(path),
                                  "label_column": "lab"})
        assert dataset_classes(name) == ("1", "2", "10")
        picked = register_declared({"name": f"p{suffix}", "format": "table", "path": str(path),
                                    "label_column": "lab", "classes": ["10.0", "1.0"]})  # as quoted text
        assert dataset_classes(picked) == ("10", "1")
        assert load_dataset(name, "10", verbose=False).info.anomaly_class == 2
    mixed = tmp_path / "mixed.csv"  # one label spelled two ways is one class
    mixed.write_text("a,lab\n" + "".join(f"{i},{'1' if i % 2 else '1.0'}\n{i},2\n" for i in range(20)))
    assert dataset_classes(register_declared({"name": "mixed", "format": "table", "path": str(mixed),
                                              "label_column": "lab"})) == ("1", "2")
    flags = tmp_path / "flags.csv"
    flags.write_text("a,flag\n" + "".join(f"{i % 7},{1.0 if i % 5 == 0 else 0.0}\n" for i in range(100)))
    quoted = {"anomaly_values": ["1.0"]}  # as text in the declaration
    for i, extra in enumerate(({}, {"anomaly_values": [1.0]}, {"anomaly_values": [1]}, quoted)):
        name = register_declared({"name": f"flags{i}",
                                  "format": "table", "path": str(flags), "label_column": "flag",
                                  "labels": "anomaly", **extra})
        s = load_dataset(name, 0, verbose=False)
        assert int(s.val.y.sum() + s.test.y.sum()) == 20
    from adgan.data.declared import _label_texts  # .npz labels stored as text compare the same way

    assert _label_texts(np.array(["1.0", "2", "x", "2.5"]), "y").tolist() == ["1", "2", "x", "2.5"]


@pytest.mark.parametrize(
    ("decl", "message"),
    [
        ({"label_column": "kind"},
         r"t.csv: no label column 'kind' \(declared in 'label_column'\); the columns are: bytes, proto, "
         r"rate, service, label, land"),
        ({"categorical": ["proto"]},
         r"column 'service' is not numeric \(row 1: '(http|ftp|smtp)'\); declare it in 'categorical'"),
        ({"categorical": ["proto", "svc"]},
         r"no column 'svc' \(declared in 'categorical'\); the columns are"),
        ({"labels": "anomaly"}, r"labels: anomaly expects 0/1 flags, row 1 has '(ok|scan|flood)'"),
        ({"min_per_class": 100}, r"class 'flood' has \d+ samples, fewer than min_per_class 100"),
        ({"labels": "anomaly", "anomaly_values": ["scan", "flod"]},
         r"anomaly_values: 'flod' occurs in no row; the label values are: 'flood', 'ok', 'scan'"),
    ],
)
def test_table_errors(tmp_path: Path, decl: dict, message: str) -> None:
    write_table(tmp_path / "t.csv")
    name = register_declared({**_table_decl(tmp_path / "t.csv"), **decl})
    with pytest.raises(DataError, match=message):
        dataset_classes(name)
        load_dataset(name, 0, verbose=False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (",bytes,label\n0,1.0,ok\n1,2.0,scan\n",  # pandas' to_csv() with its index
         r"column 1 has no name \(''\): often a row index that pandas wrote"),
        ("bytes,bytes,label\n1,2,ok\n", r"column name\(s\) 'bytes' appear more than once"),
        ("bytes,proto,label\n", r"t.csv: no data rows \(only a header\)"),
        ("bytes,proto,label\n1.0,tcp,ok\n2.0,,scan\n", r"row 2: column 'proto' is empty"),
        ("bytes,proto,label\n1.0,tcp,ok\n2.0,udp,\n", r"row 2: column 'label' is empty"),
        ("bytes;proto;label\n1.0;tcp;ok\n",
         r"bytes;proto;label \(one column named with ';': only comma-separated files are read\)"),
        ("bytes,proto,label\n1.0,tcp,ok\n2.0,udp\n3.0,tcp,ok\n",  # a cell missing: the line is named
         r"Expected 3 columns, got 2.* \(line 3 of the file holds 2 cells, the header 3"),
    ],
)
def test_table_files_a_user_might_have(tmp_path: Path, text: str, message: str) -> None:
    """Files as tools write them: an index column, a name twice, no rows, empty cells, another separator."""
    (tmp_path / "t.csv").write_text(text)
    name = register_declared({"name": "mine", "format": "table", "path": str(tmp_path / "t.csv"),
                              "label_column": "label", "categorical": ["proto"] if "proto" in text else [],
                              "min_per_class": 1})
    with pytest.raises(DataError, match=message):
        dataset_classes(name)
        load_dataset(name, 0, verbose=False)


def test_a_numeric_column_counting_the_rows_is_warned_about(tmp_path: Path) -> None:
    """A row number or id left among the features would make the file's order part of the model."""
    from adgan.errors import InputWarning

    rows = "".join(f"{1000 + i},{(i * 37) % 101}.5,{'ok' if i % 5 else 'scan'}\n" for i in range(100))
    (tmp_path / "t.csv").write_text("row,bytes,label\n" + rows)
    decl = {"name": "numbered-rows", "format": "table", "path": str(tmp_path / "t.csv"),
            "label_column": "label"}
    with pytest.warns(InputWarning, match=r"numeric column 'row' counts the rows \(1000, 1001, 1002, "
                                          r"\.\.\.\): a row number or an id rather than a feature\? list "
                                          r"it in 'drop_columns'"):
        load_dataset(register_declared(decl), 0, verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)  # dropped: nothing to say; 'bytes' is no counter
        dropped = register_declared({**decl, "name": "dropped", "drop_columns": ["row"]})
        load_dataset(dropped, 0, verbose=False)


def test_a_date_column_is_refused_with_what_to_do(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    stamps = pa.array(np.datetime64("2024-01-01T00:00:00") + np.arange(40) * np.timedelta64(1, "h"))
    pq.write_table(pa.table({"t": stamps, "bytes": np.arange(40.0), "label": ["ok", "scan"] * 20}),
                   tmp_path / "t.parquet")
    name = register_declared({"name": "dated", "format": "table", "path": str(tmp_path / "t.parquet"),
                              "label_column": "label", "min_per_class": 1})
    with pytest.raises(DataError, match=r"column 't' is not numeric \(dates or times, e.g. '2024-01-01 "
                                        r"00:00:00'\); convert it to numbers first .* or list it in "
                                        r"'drop_columns'"):
        load_dataset(name, 0, verbose=False)


def test_na_is_a_category_not_a_missing_value(tmp_path: Path) -> None:
    regions = ("NA", "N/A", "null", "EU")
    rows = "".join(f"{i}.0,{regions[i % 4]},{'ok' if i % 5 else 'scan'}\n" for i in range(200))
    (tmp_path / "t.csv").write_text("bytes,region,label\n" + rows)
    name = register_declared({"name": "regions", "format": "table", "path": str(tmp_path / "t.csv"),
                              "label_column": "label", "categorical": ["region"], "min_per_class": 1})
    s = load_dataset(name, 0, verbose=False)
    assert s.info.n_samples == 200
    assert s.info.preprocessing["categories"] == [["region", sorted(regions)]]


def test_a_parquet_index_column_is_refused(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame({"bytes": np.arange(40.0), "label": ["ok", "scan"] * 20}, index=np.arange(40) * 3)
    frame.to_parquet(tmp_path / "t.parquet")  # a non-range index is stored as __index_level_0__
    name = register_declared({"name": "indexed", "format": "table", "path": str(tmp_path / "t.parquet"),
                              "label_column": "label", "min_per_class": 1})
    with pytest.raises(DataError, match=r"column 3 has no name \('__index_level_0__'\): often a row index"):
        load_dataset(name, 0, verbose=False)


# ----- declarations -----
@pytest.mark.parametrize(
    ("decl", "message"),
    [
        ({"chanels": 1}, r"unknown key 'chanels' \(did you mean 'channels'\?\); the format 'image-folder' "
                         r"accepts: name, format, .*root, channels, image_size"),
        ({"channels": 2}, r"'channels' must be 1 \(grayscale\) or 3 \(RGB\), got 2"),
        ({"channels": None}, r"the key 'channels' is required for format 'image-folder'"),
        ({"format": "folder"}, r"'format' must be one of image-folder, normal-anomaly-folder, npz, table"),
        ({"name": "my data"}, r"'name' must be a name of letters"),
        ({"image_size": 0}, r"'image_size' must be an integer in 4..4096, got 0"),
        ({"test_fraction": 1.5}, r"'test_fraction' must be a number strictly between 0 and 1, got 1.5"),
        ({"protocol": "normal-vs-anomaly"},
         r"protocol 'normal-vs-anomaly' does not fit format 'image-folder'"),
        ({"labels": "class"}, r"unknown key 'labels'"),
    ],
)
def test_bad_declarations(decl: dict, message: str) -> None:
    base = {"name": "shapes", "format": "image-folder", "root": "/data/shapes", "channels": 1}
    with pytest.raises(ConfigError, match=message):
        register_declared({k: v for k, v in {**base, **decl}.items() if v is not None})
    assert "shapes" not in list_datasets()


def test_declaration_files_and_registration(tmp_path: Path) -> None:
    root = write_image_folders(tmp_path / "data" / "shapes", per_class=10)
    (tmp_path / "decl").mkdir()
    yml = tmp_path / "decl" / "shapes.yaml"
    yml.write_text("name: shapes\nformat: image-folder\nroot: ../data/shapes\nchannels: 1\n")
    decl = load_declaration_file(yml)
    assert decl["root"] == str(root.absolute()) and decl["min_per_class"] == 10
    js = tmp_path / "data" / "shapes.json"
    js.write_text(json.dumps({"name": "shapes", "format": "image-folder", "root": "shapes", "channels": 1}))
    assert load_declaration_file(js) == decl  # the same dataset, declared in two places
    assert register_declared(decl) == "shapes"
    assert register_declared(load_declaration_file(js)) == "shapes"  # idempotent
    assert resolve_declaration("shapes") == decl and resolve_declaration(str(yml)) == decl
    assert resolve_declaration("mnist") is None and resolve_declaration("no-such-thing") is None
    with pytest.raises(ConfigError, match=r"dataset 'shapes' is already registered from another declaration; "
                                          r"they differ in channels: 1 \(registered\) vs 3 \(new\)"):
        register_declared({**decl, "channels": 3})
    with pytest.raises(ConfigError, match=r"'mnist' is a built-in dataset"):
        register_declared({**decl, "name": "mnist"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nformat: table\npath: t.csv\nlabel_colum: y\n")
    with pytest.raises(ConfigError,
                       match=r"bad.yaml: unknown key 'label_colum' \(did you mean 'label_column'"):
        load_declaration_file(bad)
    bad.write_text("name: [x\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+, column \d+: not valid YAML"):
        load_declaration_file(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: expected a mapping of keys"):
        load_declaration_file(bad)
    # Relative paths of a dict resolve against base_dir (default: the current directory).
    assert normalize_declaration({**decl, "root": "x"}, base_dir="/base")["root"] == "/base/x"


@pytest.mark.parametrize("decl", [
    {"name": "a", "format": "image-folder", "root": "r", "channels": 3, "classes": ["x", "y"],
     "image_size": 32},
    {"name": "b", "format": "normal-anomaly-folder", "root": "/r", "channels": 1,
     "val_anomaly_fraction": 0.5},
    {"name": "c", "format": "npz", "path": "a.npz", "anomaly_values": [1, 2.0, "x"], "pixel_range": [0, 1]},
    {"name": "d", "format": "table", "path": "t.parquet", "label_column": "y", "categorical": ["p"],
     "drop_columns": ["id"], "classes": [0, 3], "min_per_class": 2, "description": "x"},
])
def test_normalised_declarations_are_fixed_points(decl: dict) -> None:
    norm = normalize_declaration(decl, base_dir="/base")
    assert normalize_declaration(norm) == norm and json.loads(json.dumps(norm)) == norm
    assert register_declared(norm) == decl["name"] == register_declared(norm)


def test_registers_and_loads_in_a_fresh_process(tmp_path: Path) -> None:
    """What a Ray worker does: register from the dict it received, then load."""
    write_table(tmp_path / "t.parquet")
    np.savez(tmp_path / "a.npz", x=np.concatenate([_synth(c, 15) for c in CLASSES]),
             y=np.repeat([0, 1, 2], 15))
    decls = [_table_decl(tmp_path / "t.parquet", labels="anomaly", anomaly_values=["scan"]),
             {"name": "arr", "format": "npz", "path": str(tmp_path / "a.npz")},
             {"name": "shapes", "format": "image-folder",
              "root": str(write_image_folders(tmp_path / "s", 12)), "channels": 1}]
    script = (
        "import hashlib, json, sys\n"
        "import numpy as np\n"
        "from adgan.data import load_dataset, register_declared\n"
        "out = {}\n"
        "for decl in json.loads(sys.argv[1]):\n"
        "    s = load_dataset(register_declared(decl), 0, seed=2, image_size=32, verbose=False)\n"
        "    h = hashlib.sha256()\n"
        "    for p in (s.train, s.val, s.test):\n"
        "        h.update(np.ascontiguousarray(p.x).tobytes()); h.update(p.y.tobytes())\n"
        "    out[decl['name']] = [h.hexdigest(), s.info.sha256]\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(decls)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    for decl in decls:
        s = load_dataset(register_declared(decl), 0, seed=2, image_size=32, verbose=False)
        assert theirs[decl["name"]] == [_digest(s), s.info.sha256]


# ----- the protocol arithmetic -----
def test_normal_anomaly_split_arithmetic() -> None:
    rng = np.random.default_rng(0)
    flags = rng.random(500) < 0.3
    # One anomaly type, no training-only part: exactly the pooled protocol on the flag.
    a, b = normal_anomaly_split(flags.astype(int), 7), image_split(flags, 7)
    for part in ("train", "val", "test"):
        assert np.array_equal(getattr(a, part), getattr(b, part))
    labels = np.where(flags, rng.integers(1, 4, 500), 0)
    train_part = (labels == 0) & (np.arange(500) < 200)
    fr = SplitFractions(val_anomaly_fraction=0.5)
    idx = normal_anomaly_split(labels, 1, train_part, fr)
    assert np.array_equal(np.sort(idx.train), np.flatnonzero(train_part))
    labelled_normals = int(((labels == 0) & ~train_part).sum())
    assert int((labels[idx.val] == 0).sum()) == labelled_normals // 2
    for k in (1, 2, 3):
        assert int((labels[idx.val] == k).sum()) == int((labels == k).sum()) // 2
    with pytest.raises(DataError, match="the training-only part holds 1 anomalies"):
        one_anomaly = np.arange(500) == np.argmax(labels == 1)
        normal_anomaly_split(labels, 1, train_part | one_anomaly)
    with pytest.raises(ConfigError, match="val_fraction must be a number strictly between 0 and 1"):
        SplitFractions(val_fraction=0.0)


def test_classes_named_with_numbers_are_read_by_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Folders 1..12 sort as text (1, 10, 11, 12, 2, ...): a number given for such a dataset is a class name,
    in the CLI and in a spec, never an index that would silently pick another folder."""
    from adgan.cli import main
    from adgan.sweep.spec import parse_spec

    rng = np.random.default_rng(0)
    names = [str(i) for i in range(1, 13)]
    root = tmp_path / "numbered"
    for c in names:
        (root / c).mkdir(parents=True)
        for j in range(12):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / c / f"{j}.png")
    name = register_declared({"name": "numbered", "format": "image-folder", "root": str(root), "channels": 1,
                              "min_per_class": 1})
    classes = dataset_classes(name)
    assert classes[:5] == ("1", "10", "11", "12", "2")
    from adgan.data import class_index

    assert class_index(classes, "2", name) == classes.index("2") == 4 and class_index(classes, 11, name) == 2
    with pytest.raises(ConfigError, match=r"no class named '0'; its class names are numbers themselves"):
        class_index(classes, "0", name)
    budget = {"trials_per_group": 1, "max_epochs": 1, "grace_period": 1, "reduction_factor": 2}
    spec = parse_spec({"name": "n", "dataset": {"name": name}, "classes": [2, "12"], "models": {"knn": {}},
                       "budget": budget}, "spec.yaml")
    assert [classes[c] for c in spec.classes] == ["2", "12"]
    out = tmp_path / "run"
    args = ["train", "--model", "knn", "--dataset", name, "--anomaly-class", "2", "--out", str(out)]
    assert main(args) == 0
    assert json.loads((out / "summary.json").read_text())["config"]["anomaly_class"] == 4
    assert "anomaly class '2' (index 4; classes 0=1, 1=10, 2=11, 3=12, 4=2," in capsys.readouterr().err
    # No --anomaly-class: the first class, said by name, never left to guess.
    assert main(["train", "--model", "knn", "--dataset", name, "--out", str(tmp_path / "first")]) == 0
    assert "anomaly class '1' (index 0; classes 0=1, 1=10, 2=11, 3=12, 4=2, 5=3, 6=4, 7=5, 8=6, 9=7, " \
           "10=8, 11=9): the first class, as no --anomaly-class was given" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"no class 'cat'; expected a class name \(index=name\): 0=1, "):
        class_index(classes, "cat", name)
    # Names that are their own indices ("0".."9", as MNIST's) leave numbers as indices.
    assert class_index(tuple(str(i) for i in range(10)), 3, "digits") == 3


def test_linked_folders_are_followed_once(tmp_path: Path) -> None:
    """A class folder assembled from links to folders is read whole (Path.rglob skipped them); a link back
    to a folder already read is not followed round."""
    from adgan.data.folders import image_files

    store = write_image_folders(tmp_path / "store")
    root = tmp_path / "linked"
    (root / "ring").mkdir(parents=True)
    (root / "ring" / "batch1").symlink_to(store / "ring", target_is_directory=True)
    (root / "ring" / "loop").symlink_to(root, target_is_directory=True)
    shutil.copytree(store / "disk", root / "disk")  # another class beside it: not read through the loop
    files = image_files(root / "ring")
    assert len(files) == len(image_files(store / "ring")) > 0
    assert all(f.relative_to(root / "ring").parts[0] == "batch1" for f in files)
    register_declared({"name": "linked", "format": "image-folder", "root": str(root), "channels": 1})
    raw = DATASETS.get("linked").load(None)
    assert len(raw.labels) == len(image_files(store / "ring")) + len(image_files(store / "disk"))
    # One file reached from two class folders would be a sample of both classes: refused, naming both.
    (root / "disk" / "more").symlink_to(store / "ring", target_is_directory=True)
    register_declared({"name": "linked2", "format": "image-folder", "root": str(root), "channels": 1})
    with pytest.raises(DataError, match=r"ring/batch1/000.png and .*disk/more/000.png are the same file .*: "
                                        r"one image would be in both .*linked/disk and .*linked/ring;"):
        DATASETS.get("linked2").load(None)
    mvtec = write_mvtec_folder(tmp_path / "mvtec")  # a test image linked into train/good: a leak
    test_good = image_files(mvtec / "test" / "good")[0]
    (mvtec / "train" / "good" / "copy.png").symlink_to(test_good)
    register_declared({"name": "nva-linked", "format": "normal-anomaly-folder", "root": str(mvtec),
                       "channels": 1})
    with pytest.raises(DataError, match=r"test/good/000.png and .*train/good/copy.png are the same file"):
        DATASETS.get("nva-linked").load(None)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """A photo stored as taken with an EXIF orientation is read as viewers show it."""
    from adgan.data.folders import read_image

    pixels = np.zeros((6, 10), np.uint8)
    pixels[:, :3] = 255  # a bright band on the left of the stored image
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "photo.jpg", exif=exif, quality=100)
    shown = read_image(tmp_path / "photo.jpg", 1)[0]
    assert shown.shape == (10, 6)  # turned: the band is now at the top
    assert shown[:3].mean() > 200 and shown[5:].mean() < 50


def test_a_column_with_a_large_offset_keeps_its_differences(tmp_path: Path) -> None:
    """A timestamp or counter column (1e9 + a small spread): scaled in float64 before the cast to the
    models' float32, it keeps the differences that tell anomalies apart (they used to round to one value);
    unscaled, a warning names it. Values float32 cannot hold are refused naming column and value."""
    from adgan.data import prepare_file
    from adgan.errors import InputWarning

    rng = np.random.default_rng(0)
    bad = np.arange(600) % 5 == 0
    meter = 1e9 + rng.normal(size=600) + 20.0 * bad
    rows = "".join(f"{m:.6f},{v:.4f},{'bad' if b else 'ok'}\n" for m, v, b in
                   zip(meter, rng.normal(size=600), bad, strict=True))
    (tmp_path / "m.csv").write_text("meter,other,label\n" + rows)
    decl = {"name": "meters", "format": "table", "path": str(tmp_path / "m.csv"), "label_column": "label",
            "labels": "anomaly", "anomaly_values": ["bad"]}
    s = load_dataset(register_declared(decl), 0, verbose=False)
    col = s.info.preprocessing["columns"].index("meter")
    assert s.train.x.dtype == np.float32 and len(np.unique(s.train.x[:, col])) > 100
    test = s.test.x[:, col]
    assert test[s.test.y == 1].min() > test[s.test.y == 0].max()  # 20 standard deviations apart
    # Scoring the raw file takes the same route: float64 until scaled.
    info = s.info.to_dict()
    scored = prepare_file(tmp_path / "m.csv", info)
    assert len(np.unique(scored[:, col])) > 500
    with pytest.warns(InputWarning, match=r"column 'meter': the values differ by little beside their size"):
        unscaled = load_dataset("meters", 0, verbose=False, scale=False)
    assert unscaled.train.x.dtype == np.float32
    # A value float32 cannot hold, after scaling, names the column and the value.
    (tmp_path / "far.csv").write_text("meter,other,label\n1e45,0.0,ok\n")
    with pytest.raises(DataError, match=r"far.csv: row 1, column 'meter': 1e\+45 is beyond the range of the "
                                        r"models' float32 numbers .*training range 1e\+09"):
        prepare_file(tmp_path / "far.csv", info)
    (tmp_path / "wide.csv").write_text("meter,other,label\n" + "".join(
        f"{v},{i}.0,{'bad' if i % 5 == 0 else 'ok'}\n" for i, v in enumerate([-1e308, 1e308] * 100)))
    with pytest.raises(DataError, match=r"column 'meter' spans -1e\+308 to 1e\+308 in the training split, "
                                        r"too wide to scale"):
        load_dataset(register_declared({**decl, "name": "wide", "path": str(tmp_path / "wide.csv")}), 0,
                     verbose=False)


def test_an_identifier_declared_categorical_is_warned_about(tmp_path: Path) -> None:
    """A column of (nearly) unique values declared categorical would become one feature per row."""
    from adgan.errors import InputWarning

    rows = "".join(f"id{i},{i % 7}.5,{'bad' if i % 5 == 0 else 'ok'}\n" for i in range(300))
    (tmp_path / "ids.csv").write_text("txn,amount,label\n" + rows)
    decl = {"name": "ids", "format": "table", "path": str(tmp_path / "ids.csv"), "label_column": "label",
            "categorical": ["txn"], "labels": "anomaly", "anomaly_values": ["bad"]}
    with pytest.warns(InputWarning, match=r"categorical column 'txn' holds 300 different values in 300 rows, "
                                          r"each becoming a feature of its own: an identifier rather than a "
                                          r"category\? list it in 'drop_columns'"):
        load_dataset(register_declared(decl), 0, verbose=False)



def test_a_link_named_as_an_image_that_points_at_nothing_is_refused_not_skipped(tmp_path: Path) -> None:
    """docs/protocol.md: nothing is skipped silently; a broken link left one sample out unsaid."""
    from adgan.data.folders import image_files

    root = write_image_folders(tmp_path / "imgs")
    (root / "ring" / "ghost.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(DataError, match=r"ghost.png: a link to .*nowhere.png, which does not exist; restore"):
        image_files(root / "ring")


def test_npz_messages_and_warnings_for_a_mistaken_declaration(tmp_path: Path) -> None:
    """Scaled [0, 1] pixels declared as 0..255 (every image nearly black) and 0/1 flags read as two classes
    are warned about; a channels mismatch shows the array as the file holds it."""
    x = np.concatenate([_synth(c, 20) for c in CLASSES])
    y = np.repeat(np.arange(len(CLASSES)), 20)
    np.savez(tmp_path / "scaled.npz", x=x.astype(np.float32) / 255, y=y)
    register_declared({"name": "scaled", "format": "npz", "path": str(tmp_path / "scaled.npz"),
                       "pixel_range": [0, 255]})
    with pytest.warns(InputWarning, match=r"the pixels lie in 0..1, a sliver of the declared pixel_range "
                                          r"\[0, 255\]: if they are scaled to \[0, 1\]"):
        load_dataset("scaled", 0, verbose=False)
    np.savez(tmp_path / "flags.npz", x=x, y=(y == 1).astype(int))
    register_declared({"name": "flags", "format": "npz", "path": str(tmp_path / "flags.npz")})
    said = (r"the labels in 'y' are only 0 and 1, read as two classes \(labels: class\), each in turn the "
            r"anomaly; if they flag anomalies, declare labels: anomaly")
    with pytest.warns(InputWarning, match=said):
        assert dataset_classes("flags") == ("0", "1")
    np.savez(tmp_path / "rgb.npz", x=np.repeat(x[..., None], 3, axis=3), y=y)
    register_declared({"name": "rgb1", "format": "npz", "path": str(tmp_path / "rgb.npz"), "channels": 1})
    with pytest.raises(DataError, match=r"declared channels 1, the images have 3 \(x of shape "
                                        rf"\({len(x)}, 28, 28, 3\)\)"):
        load_dataset("rgb1", 0, verbose=False)


def test_image_keys_on_rows_of_features_are_said_to_be_ignored(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "flat.npz", x=rng.integers(0, 255, size=(60, 784)).astype(np.uint8),
             y=np.repeat([0, 1, 2], 20))
    register_declared({"name": "flat", "format": "npz", "path": str(tmp_path / "flat.npz"), "channels": 1,
                       "image_size": 28})
    said = r"'x' is 2-D \(60, 784\), rows of features, so channels, image_size \(for images\) are ignored"
    with pytest.warns(InputWarning, match=said):
        s = load_dataset("flat", 0, verbose=False)
    assert s.train.x.shape[1:] == (784,)
