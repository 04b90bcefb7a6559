"""The scoring path equals the data layer: checkpoint facts survive JSON with sorted keys, raw files (KDD
CSV, user tables, uint8 .npy, image folders) encode exactly like ``load_dataset``, and category values unseen
in training are counted and warned about, or refused with ``strict``."""

from __future__ import annotations

import csv
import gzip
import json
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from PIL import Image

from adgan.data import (
    DATASETS,
    UnseenCategoryWarning,
    kdd,
    load_dataset,
    prepare_file,
    prepare_image_folder,
    prepare_input,
    read_kdd_csv_rows,
    register_declared,
    split_indices,
)
from adgan.data.fakes import fake_kdd_rows, write_image_folders, write_kdd_csv, write_table
from adgan.data.images import resize, to_model_space
from adgan.errors import DataError, InputWarning


@pytest.fixture(autouse=True)
def _own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DATASETS, "_items", dict(DATASETS._items))


def _checkpoint_info(info: object) -> dict:
    """``DatasetInfo`` as ``Detector.save`` writes it: ``json.dumps(..., sort_keys=True)`` and back."""
    return json.loads(json.dumps(info.to_dict(), sort_keys=True))  # type: ignore[attr-defined]


# ----- KDD99 schema order -----
def test_kdd_schema_survives_sorted_json() -> None:
    stored = json.loads(json.dumps(kdd.SCHEMA.to_dict(), sort_keys=True))
    assert kdd.KddSchema.from_dict(stored) == kdd.SCHEMA
    assert list(kdd.KddSchema.from_dict(stored).categories) == list(kdd.CATEGORIES)  # block order kept
    # Checkpoints written before the fix: a dict of categories, alphabetised by sort_keys, plus "columns".
    old = {**stored, "categories": {c: list(v) for c, v in sorted(kdd.CATEGORIES.items())}}
    assert list(json.loads(json.dumps(old, sort_keys=True))["categories"])[0] == "flag"
    assert kdd.KddSchema.from_dict(json.loads(json.dumps(old, sort_keys=True))) == kdd.SCHEMA
    with pytest.raises(DataError, match=r"stores its categories without their order \(no 'columns' list\)"):
        kdd.KddSchema.from_dict({k: v for k, v in old.items() if k != "columns"})
    with pytest.raises(DataError, match=r"do not rebuild its stored 'columns'"):
        kdd.KddSchema.from_dict({**stored, "columns": stored["columns"][::-1]})


def test_kdd_raw_rows_after_sorted_json(fake_data_dir: Path, tmp_path: Path) -> None:
    s = load_dataset("kdd99", 0, seed=1, data_dir=fake_data_dir, verbose=False)
    info = _checkpoint_info(s.info)
    rows = read_kdd_csv_rows(fake_data_dir / "kdd99" / "kddcup.data_10_percent.gz")
    idx = split_indices("kdd99", 0, 1, data_dir=fake_data_dir).test
    assert np.array_equal(prepare_input(rows[idx], info), s.test.x)
    path = write_kdd_csv(tmp_path / "test.csv", [list(r) for r in rows[idx]], compress=False)
    assert np.array_equal(prepare_file(path, info), s.test.x)


# ----- unseen categories -----
def test_kdd_unseen_categories_counted_or_refused(tmp_path: Path, fake_data_dir: Path) -> None:
    info = _checkpoint_info(load_dataset("kdd99", 0, data_dir=fake_data_dir, verbose=False).info)
    rows = fake_kdd_rows(10, seed=4)
    for i in (2, 5, 7):
        rows[i][2] = "quic"  # service
    rows[5][20] = "1"  # is_host_login: the 10% file has only 0
    path = write_kdd_csv(tmp_path / "new.csv.gz", rows)
    with pytest.warns(UnseenCategoryWarning) as record:
        x = prepare_file(path, info)
    messages = [str(w.message) for w in record]
    assert len(messages) == 2
    assert "new.csv.gz: column 'service': 3 rows hold values outside the KDD99 schema" in messages[0]
    assert "'quic' (3 rows)" in messages[0] and "strict=True (adgan score --strict)" in messages[0]
    assert "column 'is_host_login': 1 row holds" in messages[1] and "1 (1 row)" in messages[1]
    service = [j for j, c in enumerate(info["preprocessing"]["columns"]) if c.startswith("service-")]
    assert x[[2, 5, 7]][:, service].sum() == 0 and x[0, service].sum() == 1  # none of the known services
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean = prepare_file(write_kdd_csv(tmp_path / "clean.csv", fake_kdd_rows(10, seed=4)), info)
    assert np.array_equal(np.delete(x, [2, 5, 7], 0), np.delete(clean, [2, 5, 7], 0))
    with pytest.raises(DataError, match=r"new.csv.gz: row 3: column 'service' has value 'quic', outside "
                                        r"the KDD99 schema \(known: IRC, X11"):
        prepare_file(path, info, strict=True)
    raw = np.array(rows, dtype=object)
    with pytest.warns(UnseenCategoryWarning) as record:
        assert np.array_equal(prepare_input(raw, info), x)
    assert [str(w.message)[:40] for w in record] == ["input: column 'service': 3 rows hold val",
                                                     "input: column 'is_host_login': 1 row hol"]
    with pytest.raises(DataError, match=r"input: row 3: column 'service' has value 'quic'"):
        prepare_input(raw, info, strict=True)
    with pytest.raises(DataError, match=r"row 3: column 'service' has value 'quic', outside"):
        kdd.read_kdd_file(path, require_label=False)  # training-time reading stays strict


def test_flags_and_near_misses_of_categories(tmp_path: Path) -> None:
    """A true/false column fed as 1/0 (and a 0/1 one fed as True/False) is the same flag; a category
    upper-cased or padded is warned about as that category written otherwise; a column none of whose rows
    holds a known value is said to be one."""
    n = 60
    pcsv.write_csv(pa.table({"x": np.linspace(0, 1, n), "active": [True, False] * (n // 2),
                             "bit": [0, 1] * (n // 2), "site": ["north", "south", "east"] * (n // 3),
                             "label": ["a", "a", "a", "b"] * (n // 4)}), tmp_path / "t.csv")
    register_declared({"name": "t", "format": "table", "path": str(tmp_path / "t.csv"),
                       "label_column": "label", "categorical": ["active", "bit", "site"]})
    info = _checkpoint_info(load_dataset("t", 1, scale=False, verbose=False).info)
    site = ["east", "north"]
    same = pa.table({"x": [0.5, 0.5], "active": ["true", "False"], "bit": ["1", "0"], "site": site})
    flipped = pa.table({"x": [0.5, 0.5], "active": [1, 0], "bit": [True, False], "site": site})
    for name, table in (("same.csv", same), ("flipped.csv", flipped)):
        pcsv.write_csv(table, tmp_path / name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flags = prepare_file(tmp_path / "flipped.csv", info)
        assert np.array_equal(flags, prepare_file(tmp_path / "same.csv", info)) and flags[:, 1:].sum() == 6
    pcsv.write_csv(same.set_column(3, "site", pa.array(["EAST", " north"])), tmp_path / "case.csv")
    with pytest.warns(UnseenCategoryWarning) as record:
        prepare_file(tmp_path / "case.csv", info)
    (message,) = [str(w.message) for w in record]
    assert "column 'site': every row (2) holds values outside" in message
    assert "'EAST' (1 row; the known 'east' but for letter case or spaces)" in message
    assert "' north' (1 row; the known 'north' but for letter case or spaces)" in message
    assert "is it the column the model was trained on?" in message
    pcsv.write_csv(same.set_column(3, "site", pa.array(["west", "north"])), tmp_path / "one.csv")
    with pytest.warns(UnseenCategoryWarning) as record:
        prepare_file(tmp_path / "one.csv", info)
    assert "1 row holds values outside" in str(record[0].message) and "but for" not in str(record[0].message)
    assert "trained on?" not in str(record[0].message)


def test_table_unseen_and_columns(tmp_path: Path) -> None:
    write_table(tmp_path / "t.csv")
    register_declared({"name": "t", "format": "table", "path": str(tmp_path / "t.csv"),
                       "label_column": "label", "categorical": ["service", "proto"],
                       "drop_columns": ["land"]})
    info = _checkpoint_info(load_dataset("t", 0, scale=False, verbose=False).info)  # raw: values checkable
    new = pa.table({"proto": ["tcp", "sctp", "udp", "sctp"], "rate": [0.5, 0.1, 0.2, 0.3],
                    "bytes": [1, 2, 3, 4], "service": ["http", "http", "gopher", "ftp"]})  # any order
    pcsv.write_csv(new, tmp_path / "new.csv")
    with pytest.warns(UnseenCategoryWarning) as record:
        x = prepare_file(tmp_path / "new.csv", info)
    assert [str(w.message).split(": ", 1)[1][:40] for w in record] == [
        "column 'service': 1 row holds values out", "column 'proto': 2 rows hold values outsi"]
    assert "'sctp' (2 rows)" in str(record[1].message)
    assert info["preprocessing"]["columns"] == ["bytes", "rate", "service=ftp", "service=http",
                                                "service=smtp", "proto=icmp", "proto=tcp", "proto=udp"]
    assert x.tolist()[1] == [2.0, pytest.approx(0.1), 0, 1, 0, 0, 0, 0]
    assert x.tolist()[2] == [3.0, pytest.approx(0.2), 0, 0, 0, 0, 0, 1]
    # By default a declared table is min-max scaled with the training range, and so is what is scored.
    scaled = _checkpoint_info(load_dataset("t", 0, verbose=False).info)
    lo, hi = (np.asarray(scaled["preprocessing"][k]) for k in ("scale_min", "scale_max"))
    with pytest.warns(UnseenCategoryWarning):
        prepared = prepare_file(tmp_path / "new.csv", scaled)
    assert np.allclose(prepared, (x - lo) / np.where(hi > lo, hi - lo, 1))
    # Strict: the first row holding an unseen value is named (row 2's proto, before row 3's service).
    with pytest.raises(DataError, match=r"new.csv: row 2: column 'proto' has value 'sctp', outside the "
                                        r"categories of the training rows \(known: icmp, tcp, udp\)"):
        prepare_file(tmp_path / "new.csv", info, strict=True)
    pcsv.write_csv(new.set_column(0, "proto", pa.array(["tcp", "UDP", "udp", "tcp"])), tmp_path / "up.csv")
    with pytest.raises(DataError, match=r"up.csv: row 2: column 'proto' has value 'UDP', outside the "
                                        r"categories of the training rows \(known: icmp, tcp, udp; the known "
                                        r"'udp' but for letter case or spaces\)"):
        prepare_file(tmp_path / "up.csv", info, strict=True)
    pcsv.write_csv(new.drop_columns(["rate"]), tmp_path / "short.csv")
    with pytest.raises(DataError, match=r"short.csv: missing column 'rate' of the training table"):
        prepare_file(tmp_path / "short.csv", info, strict=True)
    pcsv.write_csv(new.append_column("id", pa.array([1, 2, 3, 4])), tmp_path / "extra.csv")
    with pytest.raises(DataError, match=r"extra.csv: column 'id' was not in the training table"):
        prepare_file(tmp_path / "extra.csv", info)
    with pytest.warns(UnseenCategoryWarning):
        assert np.array_equal(prepare_input(new.to_pandas(), info), x)  # a DataFrame of raw rows

    def refused(name: str, content: str | bytes, pattern: str) -> None:
        """``content`` as the file ``name`` to score: refused with a DataError matching ``pattern``."""
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        with pytest.raises(DataError, match=pattern):
            prepare_file(path, info)

    # A spreadsheet's semicolon export, and a Latin-1 file: said as such, as when training.
    refused("semi.csv", "proto;rate;bytes;service\ntcp;0.5;1;http\n",
            r"semi.csv: missing columns .*\(one column named with ';': only "
            r"comma-separated files are read\)")
    refused("latin1.csv", "proto,rate,bytes,service\ntcp,0.5,1,caf\u00e9\n".encode("latin-1"),
            r"latin1.csv: not UTF-8 text .*expected a UTF-8 CSV file")
    refused("utf16.csv", "proto,rate,bytes,service\ntcp,0.5,1,http\n".encode("utf-16"),
            r"utf16.csv: UTF-16 text \(a spreadsheet's 'Unicode text' export\); expected a UTF-8 CSV file")
    # A file without its header row, a header with stray spaces, pandas' index column: each said as such.
    refused("bare.csv", "tcp,0.5,1,http\nudp,0.2,3,ftp\n",
            r"bare.csv: missing columns .*\(the first line reads like data, not "
            r"column names: a table needs its header row")
    refused("spaced.csv", "proto, rate,bytes,service\ntcp,0.5,1,http\n",
            r"spaced.csv: missing column 'rate' .*\('rate' is there as ' rate', "
            r"with spaces: rename it\)")
    refused("empty.csv", "", r"empty.csv: an empty file; expected a header row and data rows$")
    refused("blank.csv", "\n\n", r"blank.csv: an empty file; expected a header row and data rows$")
    refused("upper.csv", "PROTO,RATE,BYTES, Service\ntcp,0.5,1,http\n",
            r"upper.csv: missing columns .*\('bytes' is there as 'BYTES', in other letter case; 'rate' is "
            r"there as 'RATE', in other letter case; 'service' is there as ' Service', in other letter case "
            r"and with spaces; and 1 more: rename them\)")
    refused("indexed.csv", ",proto,rate,bytes,service\n0,tcp,0.5,1,http\n",
            r"indexed.csv: column '' was not in the training table; .*\('' is "
            r"often a row index that pandas wrote: to_csv / to_parquet with "
            r"index=False leaves it out\)")
    refused("dup.csv", "0,0.5,1,0\ntcp,0.5,1,http\n",
            r"dup.csv: column name\(s\) '0' appear more than once; expected one "
            r"column per name \(the first line reads like data")
    # Empty lines between rows are skipped, and said to be: the scores no longer match the file's lines.
    (tmp_path / "gaps.csv").write_text("proto,rate,bytes,service\ntcp,0.5,1,http\n\n\nudp,0.2,3,ftp\n\n")
    with pytest.warns(InputWarning, match=r"gaps.csv: 2 empty lines between the rows \(the first at line 3\) "
                                          r"were skipped: the scores are one per data row"):
        assert len(prepare_file(tmp_path / "gaps.csv", info)) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)  # trailing empty lines: nothing to say
        (tmp_path / "tail.csv").write_text("proto,rate,bytes,service\ntcp,0.5,1,http\n\n\n")
        assert len(prepare_file(tmp_path / "tail.csv", info)) == 1
    # A damaged gzip file: the reader's error, naming the file (the empty-line scan says nothing first).
    whole = gzip.compress(b"proto,rate,bytes,service\n" + b"tcp,0.5,1,http\n" * 2000)
    refused("cut.csv.gz", whole[:len(whole) // 2], "cut.csv.gz")
    refused("bad.csv.gz", whole[:20] + bytes(64) + whole[84:], "bad.csv.gz")
    # Text in a numeric column of rows to score: the model's layout is fixed (no declaration to change).
    refused("text.csv", "proto,rate,bytes,service\ntcp,fast,1,http\n",
            r"text.csv: column 'rate' is not numeric \(row 1: 'fast'\); the "
            r"model was trained on it as a numeric column: give it numbers")


def test_integer_categories_written_as_floats(tmp_path: Path) -> None:
    """An integer category column that pandas wrote as floats ("75001.0", as it does for a column with a
    missing cell) encodes as the integers of the training file; other values stay unseen."""
    import pyarrow.parquet as pq

    n = 60
    pq.write_table(pa.table({"zip": pa.array([75001 + i % 3 for i in range(n)], pa.int64()),
                             "rate": [float(i % 7) for i in range(n)],
                             "label": ["ok"] * (n - 12) + ["bad"] * 12}), tmp_path / "t.parquet")
    register_declared({"name": "zips", "format": "table", "path": str(tmp_path / "t.parquet"),
                       "label_column": "label", "categorical": ["zip"], "min_per_class": 5})
    info = _checkpoint_info(load_dataset("zips", 0, scale=False, verbose=False).info)
    (tmp_path / "ints.csv").write_text("zip,rate\n75002,1\n75003,2\n")
    (tmp_path / "floats.csv").write_text("zip,rate\n75002.0,1\n75003.0,2\n")
    ints = prepare_file(tmp_path / "ints.csv", info)
    assert np.array_equal(prepare_file(tmp_path / "floats.csv", info), ints)
    (tmp_path / "other.csv").write_text("zip,rate\n75002.5,1\n75009.0,2\n")
    with pytest.warns(UnseenCategoryWarning, match=r"'75002.5' \(1 row\).*'75009' \(1 row\)"):
        prepare_file(tmp_path / "other.csv", info)
    # Trained on the floats' spelling (a CSV pandas wrote): the categories are the integers, and both
    # spellings of new rows encode as them, as for the Parquet file of the same table.
    (tmp_path / "t.csv").write_text("zip,rate,label\n" + "".join(
        f"{75001 + i % 3}.0,{float(i % 7)},{'ok' if i < n - 12 else 'bad'}\n" for i in range(n)))
    register_declared({"name": "zips-csv", "format": "table", "path": str(tmp_path / "t.csv"),
                       "label_column": "label", "categorical": ["zip"], "min_per_class": 5})
    from_csv = _checkpoint_info(load_dataset("zips-csv", 0, scale=False, verbose=False).info)
    assert from_csv["preprocessing"]["categories"] == info["preprocessing"]["categories"]
    assert np.array_equal(prepare_file(tmp_path / "ints.csv", from_csv), ints)
    assert np.array_equal(prepare_file(tmp_path / "floats.csv", from_csv), ints)


# ----- raw files equal the data layer -----
def test_table_file_equals_data_layer(tmp_path: Path) -> None:
    table = write_table(tmp_path / "t.parquet")
    register_declared({"name": "t", "format": "table", "path": str(tmp_path / "t.parquet"),
                       "label_column": "label", "categorical": ["proto", "service"], "labels": "anomaly",
                       "anomaly_values": ["scan", "flood"]})
    for scale in (False, True):
        s = load_dataset("t", 0, seed=5, scale=scale, verbose=False)
        info = _checkpoint_info(s.info)
        idx = split_indices("t", 0, 5).test
        pcsv.write_csv(table.take(pa.array(idx)), tmp_path / "test.csv")
        np.testing.assert_allclose(prepare_file(tmp_path / "test.csv", info), s.test.x, rtol=1e-6, atol=1e-6)
        assert np.array_equal(prepare_input(s.test.x, info), s.test.x)  # encoded rows pass through


def test_image_npy_and_folder_equal_data_layer(tmp_path: Path) -> None:
    root = write_image_folders(tmp_path / "shapes", per_class=12)
    Image.fromarray(np.full((40, 40), 200, np.uint8)).save(root / "disk" / "100.png")  # resized on reading
    register_declared({"name": "shapes", "format": "image-folder", "root": str(root), "channels": 1,
                       "image_size": 28})
    s = load_dataset("shapes", 2, seed=0, image_size=32, verbose=False)
    info = _checkpoint_info(s.info)
    raw = DATASETS.get("shapes").load(None).images
    idx = split_indices("shapes", 2, 0)
    np.save(tmp_path / "test.npy", raw[idx.test])  # raw uint8 (N, 1, 28, 28)
    assert np.array_equal(prepare_file(tmp_path / "test.npy", info), s.test.x)
    np.save(tmp_path / "test_hw.npy", raw[idx.test, 0])  # (N, H, W)
    assert np.array_equal(prepare_file(tmp_path / "test_hw.npy", info), s.test.x)
    x, paths = prepare_image_folder(root, info)  # the whole folder: rows in sorted relative-path order
    assert paths[:2] == ["disk/000.png", "disk/001.png"] and paths[12] == "disk/100.png" and len(paths) == 37
    assert np.array_equal(x[idx.test], s.test.x) and np.array_equal(x[idx.val], s.val.x)
    assert np.array_equal(prepare_file(root, info), x)
    assert np.array_equal(prepare_file(root / "ring" / "003.png", info), x[[paths.index("ring/003.png")]])
    with pytest.raises(DataError, match=r"image input must be a .npy array, an image file or a folder"):
        prepare_file(tmp_path / "test.csv", info)


@pytest.mark.parametrize("pixel_range", [(0, 1), (0, 255)])
def test_float_npz_images_score_in_their_declared_range(tmp_path: Path, pixel_range: tuple[int, int]) -> None:
    """New data in the training .npz's own form (floats in its declared pixel_range) gives the training input;
    before, [0, 1] floats were silently taken as model space and [0, 255] ones refused."""
    raw = DATASETS.get("synthetic-images").load(None)
    lo, hi = pixel_range
    x = (raw.images[:, 0].astype(np.float64) * ((hi - lo) / 255.0) + lo).astype(np.float32)  # (N, H, W)
    np.savez(tmp_path / "f.npz", x=x, y=raw.labels)
    register_declared({"name": "f", "format": "npz", "path": str(tmp_path / "f.npz"),
                       "pixel_range": [lo, hi]})
    s = load_dataset("f", 3, seed=0, image_size=32, verbose=False)
    info = _checkpoint_info(s.info)
    test = split_indices("f", 3, 0).test
    np.save(tmp_path / "new.npy", x[test])
    np.testing.assert_allclose(prepare_file(tmp_path / "new.npy", info), s.test.x, atol=2e-6)
    np.savez(tmp_path / "new.npz", x=x[test])
    np.testing.assert_allclose(prepare_file(tmp_path / "new.npz", info), s.test.x, atol=2e-6)
    if hi == 1:  # told the floats are model space, it takes them as such (resized only)
        got = prepare_file(tmp_path / "new.npy", info, pixel_range=(-1, 1))
        assert np.array_equal(got, resize(x[test][:, None], 32))
    else:
        with pytest.raises(DataError, match=r"new.npy: float pixels must lie in \[-1, 1\] \(model space\)"):
            prepare_file(tmp_path / "new.npy", info, pixel_range=(-1, 1))
    np.save(tmp_path / "u8.npy", raw.images[test])  # integer pixels are 0..255 whatever the declaration
    np.testing.assert_allclose(prepare_file(tmp_path / "u8.npy", info), s.test.x, atol=2e-6)


def test_plain_rows_score_from_a_headerless_csv(tmp_path: Path) -> None:
    """A model trained on plain rows (an .npz of (N, D)) scores a numeric CSV without header as those rows;
    a header row, or text in a cell, is named by its line and column as the file numbers them."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 3)), (np.arange(200) % 10 == 0).astype(int)
    np.savez(tmp_path / "rows.npz", x=x, y=y)
    register_declared({"name": "rows", "format": "npz", "path": str(tmp_path / "rows.npz"),
                       "labels": "anomaly"})
    s = load_dataset("rows", 0, seed=0, verbose=False)
    info = _checkpoint_info(s.info)
    test = split_indices("rows", 0, 0).test
    np.savetxt(tmp_path / "new.csv", x[test], delimiter=",", fmt="%.17g")
    np.testing.assert_allclose(prepare_file(tmp_path / "new.csv", info), s.test.x, rtol=1e-6)
    (tmp_path / "header.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match=r"header.csv: expected a numeric CSV without header .*'a' to float64 "
                                        r"on line 1, column 1; the first line looks like a header row"):
        prepare_file(tmp_path / "header.csv", info)
    # pandas' header of a frame made from an array is numbers: refused, not scored as a row (a score too many)
    pd.DataFrame(x[test]).to_csv(tmp_path / "pandas.csv", index=False)
    pd.DataFrame(x[test]).to_csv(tmp_path / "pandas.csv.gz", index=False)
    for name in ("pandas.csv", "pandas.csv.gz"):
        with pytest.raises(DataError, match=r"the first line is 0,1,...,2, the header pandas writes"):
            prepare_file(tmp_path / name, info)
    np.savetxt(tmp_path / "count.csv", [[0, 1, 2], [3, 4, 5]], delimiter=",", fmt="%.1f")  # data: 0.0,1.0,2.0
    assert prepare_file(tmp_path / "count.csv", info).shape == (2, 3)
    # One or two features: "0" and "0,1" are as likely data as a header, and read as data.
    np.savez(tmp_path / "pair.npz", x=x[:, :2], y=y)
    register_declared({"name": "pair", "format": "npz", "path": str(tmp_path / "pair.npz"),
                       "labels": "anomaly"})
    pair = _checkpoint_info(load_dataset("pair", 0, seed=0, verbose=False).info)
    (tmp_path / "bits.csv").write_text("0,1\n1,1\n0,0\n")
    assert prepare_file(tmp_path / "bits.csv", pair).shape == (3, 2)
    (tmp_path / "text.csv").write_text("# made by hand\n1,2,3\n\n4,x,6\n")  # (numpy skips # and blank lines)
    with pytest.raises(DataError, match=r"'x' to float64 on line 4, column 2\)$"):
        prepare_file(tmp_path / "text.csv", info)


def test_folder_for_builtin_dataset(tmp_path: Path) -> None:
    s = load_dataset("synthetic-images", 1, seed=0, image_size=32, verbose=False)
    info = _checkpoint_info(s.info)
    raw = DATASETS.get("synthetic-images").load(None).images
    test = split_indices("synthetic-images", 1, 0).test[:25]
    for k, i in enumerate(test):
        Image.fromarray(raw[i, 0]).save(tmp_path / f"{k:02d}.png")
    (tmp_path / "readme.txt").write_text("ignored")
    x, paths = prepare_image_folder(tmp_path, info)
    assert paths == [f"{k:02d}.png" for k in range(25)]
    assert np.array_equal(x, s.test.x[:25]) and np.array_equal(x, to_model_space(raw[test], 32))
    with pytest.raises(DataError, match=r"empty: no image files"):
        (tmp_path / "empty").mkdir()
        prepare_image_folder(tmp_path / "empty", info)


# ----- adgan score -----
def _knn_checkpoint(splits: object, out: Path) -> object:
    from adgan.models import create_detector

    det = create_detector("knn").fit(splits.train.x)  # type: ignore[attr-defined]
    det.meta = {"data": splits.info.to_dict()}  # type: ignore[attr-defined]
    det.save(out)
    return det


def test_cli_score_folder_and_strict(tmp_path: Path, fake_data_dir: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from adgan.cli import main

    root = write_image_folders(tmp_path / "shapes", per_class=12)
    register_declared({"name": "shapes", "format": "image-folder", "root": str(root), "channels": 1})
    s = load_dataset("shapes", 0, seed=0, image_size=32, verbose=False)
    det = _knn_checkpoint(s, tmp_path / "ckpt")
    assert main(["score", "--checkpoint", str(tmp_path / "ckpt"), "--input", str(root)]) == 0
    with open(str(root) + ".scores.csv", newline="") as fh:
        got = list(csv.DictReader(fh))
    x, paths = prepare_image_folder(root, _checkpoint_info(s.info))
    assert [r["path"] for r in got] == paths
    np.testing.assert_allclose([float(r["score"]) for r in got], det.score(x), rtol=1e-8)  # type: ignore

    k = load_dataset("kdd99", 0, data_dir=fake_data_dir, max_train=200, verbose=False)
    _knn_checkpoint(k, tmp_path / "kdd")
    rows = fake_kdd_rows(6, seed=9)
    rows[4][2] = "quic"
    path = write_kdd_csv(tmp_path / "rows.csv.gz", rows)
    capsys.readouterr()
    assert main(["score", "--checkpoint", str(tmp_path / "kdd"), "--input", str(path), "--output", "-"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "score" and len(out.splitlines()) == 7
    assert "adgan: warning: " in err and "column 'service': 1 row holds" in err
    code = main(["score", "--checkpoint", str(tmp_path / "kdd"), "--input", str(path), "--strict"])
    assert code == 2 and "row 5: column 'service' has value 'quic'" in capsys.readouterr().err
    before = path.read_bytes()
    code = main(["score", "--checkpoint", str(tmp_path / "kdd"), "--input", str(path), "--output", str(path)])
    assert code == 2 and "that is the input file" in capsys.readouterr().err and path.read_bytes() == before
    # A link is written through (its target gets the scores, the link stays), a named pipe too.
    (tmp_path / "target.csv").write_text("old")
    (tmp_path / "link.csv").symlink_to(tmp_path / "target.csv")
    kdd_args = ["score", "--checkpoint", str(tmp_path / "kdd"), "--input", str(path), "--output"]
    assert main([*kdd_args, str(tmp_path / "link.csv")]) == 0
    assert (tmp_path / "link.csv").is_symlink()
    assert (tmp_path / "target.csv").read_text().startswith("score\n")
    os.mkfifo(tmp_path / "pipe")
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append((tmp_path / "pipe").read_text()))
    reader.start()
    assert main([*kdd_args, str(tmp_path / "pipe")]) == 0
    reader.join(timeout=600)
    assert got and got[0].splitlines()[0] == "score" and len(got[0].splitlines()) == 7
    # The output is CSV: a name saying otherwise, or a folder, is refused before any scoring.
    for bad, said in ((tmp_path / "s.npy", "adgan score writes CSV"), (tmp_path / "s.parquet", "writes CSV"),
                      (tmp_path, "that is a folder")):
        assert main([*kdd_args, str(bad)]) == 2 and said in capsys.readouterr().err
    assert not (tmp_path / "s.npy").exists()
    # Raw KDD rows come as CSV: a Parquet file is named as such (was parsed as CSV text).
    pq.write_table(pa.table({"a": [1.0]}), tmp_path / "rows.parquet")
    assert main([*kdd_args[:4], str(tmp_path / "rows.parquet"), "--output", "-"]) == 2
    assert "a KDD99 model reads raw rows from a CSV file" in capsys.readouterr().err


def test_cli_score_pixel_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from adgan.cli import main

    s = load_dataset("synthetic-images", 0, seed=0, image_size=32, verbose=False)
    det = _knn_checkpoint(s, tmp_path / "ckpt")
    raw = DATASETS.get("synthetic-images").load(None).images[split_indices("synthetic-images", 0, 0).test]
    np.save(tmp_path / "f.npy", raw.astype(np.float32) / 255.0)
    with open(tmp_path / "UPPER.NPY", "wb") as f:  # a suffix in capitals is the same suffix
        np.save(f, raw[:3])
    assert main(["score", "--checkpoint", str(tmp_path / "ckpt"), "--input", str(tmp_path / "UPPER.NPY"),
                 "--output", "-"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    ckpt, npy = str(tmp_path / "ckpt"), str(tmp_path / "f.npy")
    args = ["score", "--checkpoint", ckpt, "--input", npy, "--output", "-"]
    assert main([*args, "--pixel-range", "0", "1"]) == 0
    got = np.array([float(v) for v in capsys.readouterr().out.splitlines()[1:]])
    np.testing.assert_allclose(got, det.score(s.test.x), rtol=1e-5, atol=1e-6)  # type: ignore[attr-defined]
    # Without it, floats of a model trained on integer pixels are model space: [0, 1] lies inside [-1, 1]
    # and is taken as such, with a warning naming the flag (model-space images reach below 0).
    assert main(args) == 0
    assert "float pixels all in [0, " in capsys.readouterr().err
    with pytest.warns(UserWarning, match=r"--pixel-range 0 1"):
        prepare_input(raw.astype(np.float32) / 255.0, _checkpoint_info(s.info))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # model-space floats: no warning
        prepare_input(raw.astype(np.float32) / np.float32(127.5) - 1, _checkpoint_info(s.info))
    np.save(tmp_path / "g.npy", raw.astype(np.float32))
    assert main(["score", "--checkpoint", ckpt, "--input", str(tmp_path / "g.npy")]) == 2
    assert "--pixel-range BLACK WHITE" in capsys.readouterr().err


# ----- the real KDD file -----
def test_real_kdd_raw_rows_equal_data_layer(kdd_real_path: Path, tmp_path: Path) -> None:
    s = load_dataset("kdd99", 0, seed=0, data_dir=kdd_real_path.parent, verbose=False)
    info = _checkpoint_info(s.info)
    idx = split_indices("kdd99", 0, 0, data_dir=kdd_real_path.parent).test[:3000]
    wanted = {int(i): k for k, i in enumerate(idx)}
    lines: list[bytes] = [b""] * len(idx)
    with gzip.open(kdd_real_path, "rb") as fh:
        for n, line in enumerate(fh):
            k = wanted.get(n)
            if k is not None:
                lines[k] = line
    (tmp_path / "rows.csv").write_bytes(b"".join(lines))
    (tmp_path / "rows.csv.gz").write_bytes(gzip.compress(b"".join(lines)))
    for name in ("rows.csv", "rows.csv.gz"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # every category of the file is known
            assert np.array_equal(prepare_file(tmp_path / name, info), s.test.x[:3000])


def test_boolean_categories_match_across_file_types(tmp_path: Path) -> None:
    """A boolean column declared categorical: Parquet's true/false and the True/False pandas writes to CSV
    (or R's TRUE/FALSE) are the same two categories, in training and when scoring."""
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    n = 200
    table = pa.table({"x": rng.random(n), "ok": rng.random(n) > 0.5,
                      "label": np.where(np.arange(n) % 5 == 0, "bad", "good")})
    pq.write_table(table, tmp_path / "t.parquet")
    register_declared({"name": "bools", "format": "table", "path": str(tmp_path / "t.parquet"),
                       "label_column": "label", "categorical": ["ok"], "labels": "anomaly",
                       "anomaly_values": ["bad"]})
    info = _checkpoint_info(load_dataset("bools", 0, scale=False, verbose=False).info)
    assert info["preprocessing"]["categories"] == [["ok", ["false", "true"]]]
    spelled = ["True" if v else "FALSE" for v in table.column("ok").to_pylist()]
    pcsv.write_csv(table.set_column(1, "ok", pa.array(spelled)), tmp_path / "t.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no value is unseen
        x = prepare_file(tmp_path / "t.csv", info)
    assert np.array_equal(x[:, 1:], np.stack([~table.column("ok").to_numpy(zero_copy_only=False),
                                              table.column("ok").to_numpy(zero_copy_only=False)], 1))
