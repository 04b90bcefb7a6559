"""Small files in the real formats (IDX, CIFAR-10 batches, KDD99 CSV), for tests and offline trials.

The writers build the bytes from the format specifications (``struct`` headers, protocol-2 pickles of
dicts), independently of the parsers in ``formats``/``kdd``, so a round trip checks both sides.
``make_fake_data_dir(root)`` lays out ``root/mnist``, ``root/fashion-mnist``, ``root/cifar10`` and
``root/kdd99`` as ``load_dataset(..., data_dir=root)`` expects them. Images are random noise, so no two
samples are equal (tests check disjointness of splits by hashing rows).
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np

from adgan.data.formats import CIFAR_BATCHES
from adgan.data.kdd import ANOMALY_LABEL, CATEGORIES, FEATURES

_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B,
              np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX encoding of ``arr``: ``00 00 <type> <ndim>``, big-endian uint32 dims, big-endian data."""
    a = np.asarray(arr)
    if a.dtype.kind in "iuf" and a.dtype.itemsize > 1:
        a = a.astype(a.dtype.newbyteorder(">"))
    code = _IDX_CODES[a.dtype]
    return struct.pack(">BBBB", 0, 0, code, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def write_idx(path: str | os.PathLike[str], arr: np.ndarray, compress: bool = True) -> Path:
    """Write ``arr`` as an IDX file, gzip'd when ``compress``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = idx_bytes(arr)
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def write_cifar_batch(path: str | os.PathLike[str], images: np.ndarray, labels: np.ndarray) -> Path:
    """Write a CIFAR-10 python batch: a protocol-2 pickle of ``{b'data': uint8 (N, 3072), b'labels': [...]}``.

    Args:
        images: uint8 (N, 3, 32, 32).
        labels: (N,) integers in 0..9.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = {b"batch_label": b"fake batch", b"labels": [int(v) for v in labels],
             b"data": np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), 3072),
             b"filenames": [f"img_{i}.png".encode() for i in range(len(images))]}
    path.write_bytes(pickle.dumps(batch, protocol=2))
    return path


def fake_kdd_rows(n: int, seed: int = 0, anomaly_share: float = 0.25) -> list[list[str]]:
    """``n`` KDD99 rows (41 features + label, as strings) with valid categories and random numbers.

    About ``anomaly_share`` of the rows are ``normal.``; the others carry attack labels, including one the
    10% file lacks (``apache2.``), which is still normal traffic for the protocol.
    """
    rng = np.random.default_rng(seed)
    attacks = ("smurf.", "neptune.", "back.", "apache2.")
    rows = []
    for i in range(n):
        row = []
        for name in FEATURES:
            if name in CATEGORIES:
                values = CATEGORIES[name]
                row.append(str(values[int(rng.integers(len(values)))]))
            elif name.endswith("rate"):
                row.append(f"{rng.random():.2f}")
            else:
                row.append(str(int(rng.integers(0, 1000))))
        label = ANOMALY_LABEL if rng.random() < anomaly_share else attacks[i % len(attacks)]
        rows.append(row + [label])
    return rows


def write_kdd_csv(path: str | os.PathLike[str], rows: list[list[str]], compress: bool = True) -> Path:
    """Write rows as a header-less CSV, gzip'd when ``compress``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(",".join(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(text, mtime=0) if compress else text)
    return path


def make_fake_data_dir(root: str | os.PathLike[str], per_class: int = 30, seed: int = 0) -> Path:
    """Write fake MNIST, Fashion-MNIST, CIFAR-10 and KDD99 files under ``root``.

    MNIST-like sets get ``per_class`` train and ``per_class // 3`` test images per class; CIFAR-10 gets
    ``per_class // 5`` images per class in each of its six batches; KDD99 gets ``40 * per_class`` rows.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for name in ("mnist", "fashion-mnist"):
        for part, n in (("train", per_class), ("t10k", max(per_class // 3, 1))):
            labels = np.repeat(np.arange(10, dtype=np.uint8), n)
            images = rng.integers(0, 256, size=(labels.size, 28, 28), dtype=np.uint8)
            write_idx(root / name / f"{part}-images-idx3-ubyte.gz", images)
            write_idx(root / name / f"{part}-labels-idx1-ubyte.gz", labels)
    per_batch = max(per_class // 5, 1)
    for batch in CIFAR_BATCHES:
        labels = np.tile(np.arange(10), per_batch)
        images = rng.integers(0, 256, size=(labels.size, 3, 32, 32), dtype=np.uint8)
        write_cifar_batch(root / "cifar10" / "cifar-10-batches-py" / batch, images, labels)
    write_kdd_csv(root / "kdd99" / "kddcup.data_10_percent.gz", fake_kdd_rows(40 * per_class, seed))
    return root


# ----- user datasets (adgan.data.declared): small files in each declared format -----
def synthetic_class_images(cls: str, n: int, start: int = 0) -> np.ndarray:
    """``n`` uint8 (n, 28, 28) images of one class of ``synthetic-images`` (300 per class), from ``start``."""
    from adgan.data.synthetic import IMAGE_CLASSES, PER_CLASS, synthetic_images

    images, _, _ = synthetic_images()
    first = IMAGE_CLASSES.index(cls) * PER_CLASS + start
    return np.asarray(images[first:first + n, 0])


def write_image_folders(root: str | os.PathLike[str], per_class: int = 20, ext: str = ".png",
                        classes: tuple[str, ...] = ("disk", "hstripes", "ring")) -> Path:
    """``root/<class>/<NNN><ext>``: ``per_class`` grayscale synthetic images of each class."""
    from PIL import Image

    root = Path(root)
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(synthetic_class_images(cls, per_class)):
            Image.fromarray(img).save(root / cls / f"{i:03d}{ext}")
    return root


def write_mvtec_folder(root: str | os.PathLike[str], size: int = 28) -> Path:
    """An MVTec AD layout of RGB synthetic images, ``size`` x ``size``: ``train/good`` (30 disks),
    ``test/good`` (10 other disks), ``test/ring`` (10) and ``test/vstripes`` (5)."""
    from PIL import Image

    root = Path(root)
    parts = (("train/good", "disk", 30, 0), ("test/good", "disk", 10, 30), ("test/ring", "ring", 10, 0),
             ("test/vstripes", "vstripes", 5, 0))
    for part, cls, n, start in parts:
        (root / part).mkdir(parents=True)
        for i, img in enumerate(synthetic_class_images(cls, n, start)):
            rgb = Image.fromarray(np.repeat(img[:, :, None], 3, axis=2))
            (rgb if size == 28 else rgb.resize((size, size))).save(root / part / f"{i:03d}.png")
    return root


def write_table(path: str | os.PathLike[str], n: int = 240, seed: int = 0) -> object:
    """A small traffic-like table (CSV with header, or Parquet by suffix) and return it (``pyarrow.Table``).

    Columns: ``bytes`` (int), ``proto`` (tcp/udp/icmp), ``rate`` (float), ``service`` (http/ftp/smtp),
    ``label`` (ok 60%, scan, flood), ``land`` (0/1).
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    table = pa.table({
        "bytes": rng.integers(0, 1000, n), "proto": rng.choice(["tcp", "udp", "icmp"], n),
        "rate": rng.random(n), "service": rng.choice(["http", "ftp", "smtp"], n),
        "label": rng.choice(["ok", "ok", "ok", "scan", "flood"], n), "land": rng.integers(0, 2, n),
    })
    if Path(path).suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pcsv.write_csv(table, path)
    return table
