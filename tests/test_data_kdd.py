"""KDD99: CSV parsing, the fixed 121-column schema, bad rows, and the real 10% file when present."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest

from adgan.data import kdd, load_dataset, split_indices
from adgan.data.fakes import fake_kdd_rows, write_kdd_csv
from adgan.errors import DataError


def _encode_by_hand(row: list[str]) -> list[float]:
    """Independent reference encoding of one raw row: numerics in file order, then the one-hot blocks."""
    values = dict(zip(kdd.FEATURES, row, strict=False))
    out = [float(values[f]) for f in kdd.FEATURES if f not in kdd.CATEGORIES]
    for col, cats in kdd.CATEGORIES.items():
        raw = int(float(values[col])) if isinstance(cats[0], int) else values[col]
        out.extend(1.0 if raw == c else 0.0 for c in cats)
    return out


def test_schema_has_the_published_121_columns() -> None:
    cols = kdd.SCHEMA.columns
    assert len(cols) == kdd.N_COLUMNS == 121 and len(set(cols)) == 121
    assert len(kdd.SCHEMA.numeric) == 34
    assert cols[:2] == ("duration", "src_bytes") and cols[33] == "dst_host_srv_rerror_rate"
    assert cols[34:37] == ("protocol_type-icmp", "protocol_type-tcp", "protocol_type-udp")
    assert cols[37] == "service-IRC" and cols[102] == "service-whois" and cols[103] == "flag-OTH"
    assert cols[-7:] == ("land-0", "land-1", "logged_in-0", "logged_in-1", "is_host_login-0",
                         "is_guest_login-0", "is_guest_login-1")
    assert kdd.KddSchema.from_dict(kdd.SCHEMA.to_dict()) == kdd.SCHEMA


def test_fake_file_parses_and_encodes_like_reference(tmp_path: Path) -> None:
    rows = fake_kdd_rows(300, seed=3)
    for compress in (True, False):
        path = write_kdd_csv(tmp_path / f"k{int(compress)}.csv", rows, compress=compress)
        parsed = kdd.read_kdd_file(path)
        x = kdd.encode(parsed)
        assert x.shape == (300, 121) and x.dtype == np.float32
        assert np.array_equal(x, np.array([_encode_by_hand(r) for r in rows], dtype=np.float32))
        assert parsed.is_anomaly is not None
        assert np.array_equal(parsed.is_anomaly, [r[-1] == "normal." for r in rows])


def test_missing_categories_still_align(tmp_path: Path) -> None:
    rows = [r for r in fake_kdd_rows(400, seed=1) if r[1] == "tcp"]
    x = kdd.encode(kdd.read_kdd_file(write_kdd_csv(tmp_path / "tcp.csv", rows)))
    assert x.shape[1] == 121
    assert np.all(x[:, 35] == 1.0) and np.all(x[:, [34, 36]] == 0.0)


def test_unlisted_attack_labels_are_normal_traffic(tmp_path: Path) -> None:
    rows = fake_kdd_rows(4, seed=0)
    for row, label in zip(rows, ("apache2.", "mailbomb.", "normal.", "snmpguess."), strict=True):
        row[-1] = label
    parsed = kdd.read_kdd_file(write_kdd_csv(tmp_path / "corrected.gz", rows))
    assert parsed.is_anomaly is not None and parsed.is_anomaly.tolist() == [False, False, True, False]


def test_labels_without_the_trailing_dot(tmp_path: Path) -> None:
    """Copies of the file that spell the labels without the original's dot ("normal", "smurf"): the same
    classes; a training file without any normal row says what its labels are instead of "0 anomalies"."""
    rows = fake_kdd_rows(300, seed=4)
    for row in rows:
        row[-1] = row[-1].rstrip(".")
    parsed = kdd.read_kdd_file(write_kdd_csv(tmp_path / "nodot.gz", rows))
    assert parsed.is_anomaly is not None
    assert np.array_equal(parsed.is_anomaly, [r[-1] == "normal" for r in rows])
    assert 0 < parsed.is_anomaly.sum() < 300
    for row in rows:
        row[-1] = "smurf." if row[-1] == "normal" else "neptune."
    path = write_kdd_csv(tmp_path / "kdd99" / "kddcup.data_10_percent.gz", rows)
    with pytest.raises(DataError, match=r"nodot2?.*no row labelled 'normal\.' .*most common labels: "
                                        r"'(smurf|neptune)\.' \(\d+\), '(smurf|neptune)\.' \(\d+\)$"):
        kdd.read_kdd_file(write_kdd_csv(tmp_path / "nodot2.gz", rows))
    with pytest.raises(DataError, match=f"{path}: no row labelled 'normal.'"):
        load_dataset("kdd99", 0, data_dir=tmp_path, verbose=False)
    assert kdd.read_kdd_file(path, require_label=False).is_anomaly is not None  # rows to score: any labels


@pytest.mark.parametrize(
    ("row", "col", "value", "message"),
    [
        (4, 7, None, r"bad.gz, line 5: expected 42 comma-separated values .* got 41"),
        (0, 41, None, r"bad.gz, line 1: expected 42 comma-separated values .* got 41"),
        (6, 4, "12x", r"bad.gz, line 7: column 'src_bytes' must be a number, got '12x'"),
        (2, 24, "", r"bad.gz, line 3: column 'serror_rate' must be a number, got ''"),
        (3, 2, "gopherx", r"bad.gz: row 4: column 'service' has value 'gopherx'"),
        (1, 20, "1", r"bad.gz: row 2: column 'is_host_login' has value 1, outside"),
        (5, 0, "nan", r"bad.gz: row 6: column 'duration' is not finite"),
    ],
)
def test_bad_rows_name_file_line_and_value(tmp_path: Path, row: int, col: int, value: str | None,
                                           message: str) -> None:
    rows = fake_kdd_rows(10, seed=2)
    if value is None:
        rows[row].pop(col)  # one value too few
    else:
        rows[row][col] = value
    with pytest.raises(DataError, match=message):
        kdd.read_kdd_file(write_kdd_csv(tmp_path / "bad.gz", rows))


def test_a_header_row_is_said_to_be_one(tmp_path: Path) -> None:
    """Raw KDD99 rows have no header; a CSV exported with one is told so, not only "must be a number"."""
    rows = fake_kdd_rows(10, seed=2)
    header = [*kdd.FEATURES, "label"]
    with pytest.raises(DataError, match=r"headed.gz, line 1: column 'duration' must be a number, got "
                                        r"'duration': it reads like a header row, and raw KDD99 rows have "
                                        r"none \(remove it\)"):
        kdd.read_kdd_file(write_kdd_csv(tmp_path / "headed.gz", [header, *rows]))


def test_truncated_and_empty_files(tmp_path: Path) -> None:
    good = write_kdd_csv(tmp_path / "good.gz", fake_kdd_rows(2000, seed=0))
    cut = tmp_path / "cut.gz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match="cut.gz: damaged or truncated gzip"):
        kdd.read_kdd_file(cut)
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(DataError, match="empty.csv: empty file"):
        kdd.read_kdd_file(tmp_path / "empty.csv")


def test_fake_kdd_protocol(fake_data_dir: Path) -> None:
    s = load_dataset("kdd99", 0, seed=0, data_dir=fake_data_dir, verbose=False)
    assert s.train.x.shape[1] == 121 and s.info.input_shape == (121,)
    assert s.info.preprocessing["columns"] == list(kdd.SCHEMA.columns)
    assert not s.train.y.any() and s.test.anomaly_share == pytest.approx(0.2, abs=0.01)


# ----- the real 10% file -----
@pytest.fixture(scope="module")
def real_rows(kdd_real_path: Path) -> kdd.KddRows:
    return kdd.load_kdd_file(kdd_real_path)


def test_real_file_counts_and_encoding(real_rows: kdd.KddRows, kdd_real_path: Path) -> None:
    assert len(real_rows) == 494_021
    assert real_rows.is_anomaly is not None and int(real_rows.is_anomaly.sum()) == 97_278
    # Every category of the file is in the schema and every schema category occurs: derived from this file.
    for j, cats in enumerate(kdd.CATEGORIES.values()):
        assert np.array_equal(np.unique(real_rows.codes[:, j]), np.arange(len(cats)))
    with gzip.open(kdd_real_path, "rt", newline="") as fh:
        head = [row for _, row in zip(range(500), csv.reader(fh), strict=False)]
    first = kdd.encode(real_rows, idx=np.arange(500))
    assert first.shape == (500, 121)
    assert np.array_equal(first, np.array([_encode_by_hand(r) for r in head], dtype=np.float32))


def test_real_file_protocol(real_rows: kdd.KddRows, kdd_real_path: Path) -> None:
    data_dir = kdd_real_path.parent
    idx = split_indices("kdd99", 0, seed=0, data_dir=data_dir)
    a = real_rows.is_anomaly
    assert a is not None
    parts = np.concatenate([idx.train, idx.val, idx.test])
    assert np.unique(parts).size == parts.size  # disjoint (by row index: the file has duplicate rows)
    # docs/protocol.md: the first half of default_rng(seed).permutation(N) gives train + validation.
    perm = np.random.default_rng(0).permutation(a.size)
    first = perm[: a.size // 2]
    assert np.array_equal(np.sort(np.r_[idx.train, idx.val]), np.sort(first))
    n_norm_first = int((~a[first]).sum())
    assert not a[idx.train].any() and idx.train.size == n_norm_first - n_norm_first // 10
    assert int(a[idx.val].sum()) == int(a[first].sum())  # all first-half normal. rows validate
    assert int(a[idx.test].sum()) * 4 == int((~a[idx.test]).sum())  # exactly 20% anomalies
    s = load_dataset("kdd99", 0, seed=0, data_dir=data_dir, verbose=False)
    assert (len(s.train), len(s.val), len(s.test)) == (idx.train.size, idx.val.size, idx.test.size)
    assert np.array_equal(s.test.x[:50], kdd.encode(real_rows, idx=idx.test[:50]))
    assert s.test.anomaly_share == pytest.approx(0.2) and s.info.n_samples == 494_021
