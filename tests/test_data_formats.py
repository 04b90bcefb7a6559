"""Parsers of the raw formats on small files written here: IDX and the CIFAR-10 python batches."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from adgan.data.fakes import idx_bytes, write_cifar_batch, write_idx
from adgan.data.formats import (
    CIFAR_BATCHES,
    parse_cifar_batch,
    read_bytes,
    read_cifar_dir,
    read_cifar_tar,
    read_idx,
    restricted_loads,
)
from adgan.errors import DataError


# ----- IDX -----
def test_idx_hand_built_bytes(tmp_path: Path) -> None:
    # Built from the format description, not by our writer: magic 0x00000803, dims 2x2x3, then pixels.
    pixels = bytes(range(12))
    raw = b"\x00\x00\x08\x03" + struct.pack(">III", 2, 2, 3) + pixels
    (tmp_path / "a-idx3-ubyte").write_bytes(raw)
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        arr = read_idx(tmp_path / name)
        assert arr.dtype == np.uint8 and arr.shape == (2, 2, 3)
        assert arr[1, 1, 2] == 11 and arr[0, 1, 0] == 3


def test_idx_big_endian_types(tmp_path: Path) -> None:
    raw = b"\x00\x00\x0c\x01" + struct.pack(">I", 3) + struct.pack(">iii", 1, -2, 70000)
    (tmp_path / "i.idx").write_bytes(raw)
    assert read_idx(tmp_path / "i.idx").tolist() == [1, -2, 70000]
    f = np.array([[1.5, -2.25]], dtype=np.float32)
    assert np.array_equal(read_idx(write_idx(tmp_path / "f.idx.gz", f)), f)


def test_idx_writer_matches_hand_layout() -> None:
    labels = np.array([7, 2, 1], dtype=np.uint8)
    assert idx_bytes(labels) == b"\x00\x00\x08\x01\x00\x00\x00\x03\x07\x02\x01"


def test_idx_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(b"\x12\x34\x08\x03" + struct.pack(">III", 1, 1, 1) + b"\x00")
    with pytest.raises(DataError, match=r"bad-idx3-ubyte: not an IDX file \(magic number 12340803"):
        read_idx(path)


def test_idx_unknown_type_and_size_mismatch(tmp_path: Path) -> None:
    (tmp_path / "t.idx").write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DataError, match="t.idx: unknown IDX type code 0x07"):
        read_idx(tmp_path / "t.idx")
    (tmp_path / "s.idx").write_bytes(b"\x00\x00\x08\x02" + struct.pack(">II", 3, 4) + bytes(10))
    with pytest.raises(DataError, match=r"s.idx: IDX dims \(3, 4\) need 12 data bytes, file has 10$"):
        read_idx(tmp_path / "s.idx")
    # uint8 pixels under a float32 type byte: the size fits another type, and the message says so.
    (tmp_path / "f.idx").write_bytes(b"\x00\x00\x0d\x02" + struct.pack(">II", 3, 4) + bytes(12))
    with pytest.raises(DataError, match=r"f.idx: IDX dims \(3, 4\) need 48 data bytes, file has 12; the "
                                        r"data fits 1-byte values \(type 0x08, uint8\) but the header's type "
                                        r"0x0d is float32: is the type byte wrong\?"):
        read_idx(tmp_path / "f.idx")


def test_truncated_gzip(tmp_path: Path) -> None:
    good = write_idx(tmp_path / "x-idx3-ubyte.gz", np.zeros((50, 28, 28), np.uint8) + 3)
    cut = tmp_path / "cut-idx3-ubyte.gz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cut-idx3-ubyte.gz: damaged or truncated gzip"):
        read_idx(cut)
    with pytest.raises(DataError, match="missing.gz: cannot read"):
        read_bytes(tmp_path / "missing.gz")


# ----- CIFAR-10 batches -----
def _batch(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n)


def test_cifar_batch_round_trip(tmp_path: Path) -> None:
    images, labels = _batch(7)
    x, y = parse_cifar_batch(write_cifar_batch(tmp_path / "b", images, labels).read_bytes())
    assert x.dtype == np.uint8 and x.shape == (7, 3, 32, 32) and y.dtype == np.int64
    assert np.array_equal(x, images) and np.array_equal(y, labels)
    # Row layout of the real files: 1024 red, then 1024 green, then 1024 blue values, row-major.
    flat = np.ascontiguousarray(images).reshape(7, 3072)
    assert x[3, 1, 2, 5] == flat[3, 1024 + 2 * 32 + 5]


def test_cifar_numpy1_module_name_accepted() -> None:
    # Real CIFAR files (numpy 1 era) reference numpy.core.multiarray._reconstruct; numpy 2 writes numpy._core.
    images, labels = _batch(2)
    data = pickle.dumps({b"data": images.reshape(2, 3072), b"labels": labels.tolist()}, protocol=2)
    assert b"numpy._core.multiarray\n_reconstruct" in data
    old = data.replace(b"numpy._core.multiarray\n_reconstruct", b"numpy.core.multiarray\n_reconstruct")
    x, y = parse_cifar_batch(old)
    assert np.array_equal(x, images) and np.array_equal(y, labels)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


class _EvalEvil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (eval, ("__import__('os').getpid()",))


def test_malicious_pickle_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Evil(marker), b"labels": [0]}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_1: refused or damaged pickle .*(posix|os)\.system"):
        parse_cifar_batch(path.read_bytes(), str(path))
    assert not marker.exists()
    with pytest.raises(DataError, match=r"(__builtin__|builtins)\.eval is not allowed"):
        restricted_loads(pickle.dumps(_EvalEvil(), protocol=2))
    # _codecs.encode is allowed only as the latin-1 bytes helper of protocol-2 pickles.
    crafted = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x06\x00\x00\x00base64\x86R."
    with pytest.raises(DataError, match="refused _codecs.encode"):
        restricted_loads(crafted)


def test_cifar_bad_contents() -> None:
    with pytest.raises(DataError, match="missing key 'data' or 'labels'"):
        parse_cifar_batch(pickle.dumps({b"labels": [1]}, protocol=2), "x")
    bad = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    with pytest.raises(DataError, match=r"'data' must be a uint8 array \(N, 3072\)"):
        parse_cifar_batch(pickle.dumps(bad, protocol=2), "x")
    bad = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}
    with pytest.raises(DataError, match=r"x: 'labels' must be integers in 0..9; labels\[1\] is 12 "
                                        r"\(1 out of range\)"):
        parse_cifar_batch(pickle.dumps(bad, protocol=2), "x")
    bad = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1, 2]}
    with pytest.raises(DataError, match=r"'labels' must be 2 integers \(one per image\), got shape \(3,\)"):
        parse_cifar_batch(pickle.dumps(bad, protocol=2), "x")
    with pytest.raises(DataError, match="damaged pickle"):
        parse_cifar_batch(b"\x80\x02}q\x00(", "x")


def test_cifar_dir_and_tar_agree(tmp_path: Path) -> None:
    directory = tmp_path / "cifar-10-batches-py"
    for i, name in enumerate(CIFAR_BATCHES):
        write_cifar_batch(directory / name, *_batch(3, seed=i))
    x_dir, y_dir = read_cifar_dir(directory)
    assert x_dir.shape == (18, 3, 32, 32) and np.array_equal(x_dir[:3], _batch(3, 0)[0])
    tar_path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(directory, arcname="cifar-10-batches-py")
    x_tar, y_tar = read_cifar_tar(tar_path)
    assert np.array_equal(x_tar, x_dir) and np.array_equal(y_tar, y_dir)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(tar_path.read_bytes()[:2000])
    with pytest.raises(DataError, match="cut.tar.gz: damaged or truncated tar archive"):
        read_cifar_tar(cut)
    partial = tmp_path / "partial.tar.gz"
    with tarfile.open(partial, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        payload = (directory / "data_batch_1").read_bytes()
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(DataError, match="archive lacks cifar-10-batches-py/data_batch_2"):
        read_cifar_tar(partial)
