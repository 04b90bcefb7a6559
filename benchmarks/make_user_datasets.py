"""Write example user datasets in every declarable format, from real data at hand, with their declarations.

From Fashion-MNIST (Debian's ``dataset-fashion-mnist`` or any copy ``adgan.data`` finds) and the KDD Cup 99
10% file, into ``OUT``:

- ``fashion-png/<class>/<index>.png`` + ``fashion-png.yaml``: ``image-folder``, each class in turn anomalous;
- ``fashion-mvtec/{train/good,test/good,test/<defect>}/`` + ``fashion-mvtec.yaml``: ``normal-anomaly-folder``
  (MVTec AD layout), sneakers normal, sandals, ankle boots and bags as three defect types;
- ``fashion.npz`` (``x`` uint8 (N, 28, 28), ``y`` class index) + ``fashion-npz.yaml``: ``npz``;
- ``kdd.csv`` (header row) and ``kdd.parquet``, a seeded subsample of the KDD file, + ``kdd-csv.yaml`` and
  ``kdd-parquet.yaml``: ``table``, ``normal.`` traffic anomalous as in the KDD99 protocol.

Declarations use paths relative to ``OUT``, so the folder can be moved. Each dataset is then registered
and loaded once as a check (``--no-check`` skips it). About 15 s on the 2-core development machine.

Usage::

    .venv/bin/python benchmarks/make_user_datasets.py OUT [--per-class 200] [--kdd-rows 20000] [--seed 0]
        [--data-dir DIR] [--kdd-dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from adgan.data import load_dataset, load_declaration_file, register_declared, sources
from adgan.data.datasets import FASHION
from adgan.data.images import load_idx_dataset
from adgan.data.kdd import FEATURES, LABEL
from adgan.errors import DataError

MVTEC_NORMAL = "Sneaker"
MVTEC_DEFECTS = ("Sandal", "Ankle boot", "Bag")


def folder_name(cls: str) -> str:
    """A class name as a folder name: ``T-shirt/top`` -> ``T-shirt-top``, ``Ankle boot`` -> ``Ankle-boot``."""
    return cls.replace("/", "-").replace(" ", "-")


def save_pngs(images: np.ndarray, folder: Path, ids: np.ndarray) -> None:
    """uint8 (n, 28, 28) ``images`` as ``folder/<id>.png`` (the id is the image's index in Fashion-MNIST)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for img, i in zip(images, ids, strict=True):
        Image.fromarray(img).save(folder / f"{int(i):05d}.png")


def pick(labels: np.ndarray, cls: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices of class ``cls``, drawn without replacement, sorted."""
    return np.sort(rng.choice(np.flatnonzero(labels == cls), size=n, replace=False))


def write_yaml(path: Path, decl: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(decl, sort_keys=False))


def fashion(out: Path, per_class: int, seed: int, data_dir: str | None) -> list[Path]:
    res = sources.resolve(sources.SPECS["fashion-mnist"], data_dir)  # found as adgan finds it
    raw = load_idx_dataset(res)
    return write_fashion(out, raw.images[:, 0], raw.labels, per_class, seed,
                         f"Fashion-MNIST from {res.directory}, seed {seed}")


def write_fashion(
    out: Path, images: np.ndarray, labels: np.ndarray, per_class: int, seed: int, source: str
) -> list[Path]:
    """The three image datasets and their declarations from ``images`` (N, 28, 28) uint8 and ``labels``
    (N,) Fashion-MNIST class indices; returns the declarations' paths."""
    rng = np.random.default_rng(seed)
    chosen = {k: pick(labels, k, per_class, rng) for k in range(len(FASHION))}
    for k, cls in enumerate(FASHION):
        save_pngs(images[chosen[k]], out / "fashion-png" / folder_name(cls), chosen[k])
    ids = np.concatenate(list(chosen.values()))
    np.savez_compressed(out / "fashion.npz", x=images[ids], y=labels[ids])
    # MVTec layout: normals not used above, so the two image datasets hold different samples of Sneaker.
    normal = FASHION.index(MVTEC_NORMAL)
    unused = np.setdiff1d(np.flatnonzero(labels == normal), chosen[normal])
    good = np.sort(rng.choice(unused, size=2 * per_class + per_class // 2, replace=False))
    save_pngs(images[good[: 2 * per_class]], out / "fashion-mvtec" / "train" / "good", good[: 2 * per_class])
    save_pngs(images[good[2 * per_class:]], out / "fashion-mvtec" / "test" / "good", good[2 * per_class:])
    for cls in MVTEC_DEFECTS:
        ids_d = pick(labels, FASHION.index(cls), per_class // 5, rng)
        save_pngs(images[ids_d], out / "fashion-mvtec" / "test" / folder_name(cls).lower(), ids_d)
    decls = {
        "fashion-png": {"name": "fashion-png", "format": "image-folder", "root": "fashion-png", "channels": 1,
                        "description": f"{per_class} images per class as PNG class folders ({source})"},
        "fashion-mvtec": {"name": "fashion-mvtec", "format": "normal-anomaly-folder", "root": "fashion-mvtec",
                          "channels": 1, "description": f"MVTec AD layout: {MVTEC_NORMAL} normal, "
                          f"{', '.join(MVTEC_DEFECTS)} as defect types ({source})"},
        "fashion-npz": {"name": "fashion-npz", "format": "npz", "path": "fashion.npz", "labels": "class",
                        "description": f"the PNG folders' images as one array, y = class index ({source})"},
    }
    paths = []
    for stem, decl in decls.items():
        write_yaml(out / f"{stem}.yaml", decl)
        paths.append(out / f"{stem}.yaml")
    return paths


def kdd_table(out: Path, n_rows: int, seed: int, data_dir: str | None) -> list[Path]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    res = sources.resolve(sources.SPECS["kdd99"], data_dir)
    path = res.files[0]
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    with pa.input_stream(str(path), compression="gzip" if gz else None) as stream:
        table = pcsv.read_csv(stream, read_options=pcsv.ReadOptions(column_names=[*FEATURES, LABEL]))
    return write_kdd(out, table, n_rows, seed, path.name)


def write_kdd(out: Path, table: Any, n_rows: int, seed: int, source: str) -> list[Path]:
    """The two table datasets and their declarations from a seeded sample of ``n_rows`` rows of ``table``
    (a ``pyarrow.Table`` with the KDD columns ``FEATURES`` and ``LABEL``); returns the declarations' paths."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    rows = np.sort(np.random.default_rng(seed).choice(table.num_rows, size=n_rows, replace=False))
    sample = table.take(pa.array(rows))
    pcsv.write_csv(sample, out / "kdd.csv")
    pq.write_table(sample, out / "kdd.parquet")
    decl = {"format": "table", "label_column": LABEL, "categorical": ["protocol_type", "service", "flag"],
            "labels": "anomaly", "anomaly_values": ["normal."],
            "description": f"{n_rows} rows of {source} (seed {seed}); normal traffic is the anomaly"}
    write_yaml(out / "kdd-csv.yaml", {"name": "kdd-csv", "path": "kdd.csv", **decl})
    write_yaml(out / "kdd-parquet.yaml", {"name": "kdd-parquet", "path": "kdd.parquet", **decl})
    return [out / "kdd-csv.yaml", out / "kdd-parquet.yaml"]


def check(declarations: list[Path]) -> None:
    """Register and load each declared dataset once (class 0, seed 0) and print its splits."""
    for path in declarations:
        t0 = time.perf_counter()
        name = register_declared(load_declaration_file(path))
        s = load_dataset(name, 0, seed=0, verbose=False)
        print(f"  {path.name}: {s.info.kind} {s.info.input_shape}, classes {len(s.info.classes)}, protocol "
              f"{s.info.protocol}; train {len(s.train)}, val {len(s.val)} ({int(s.val.y.sum())} anomalies), "
              f"test {len(s.test)} ({int(s.test.y.sum())}); {time.perf_counter() - t0:.1f}s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="target folder (replaced parts: fashion-png/, fashion-mvtec/ and the files)")
    p.add_argument("--per-class", type=int, default=200, help="Fashion-MNIST images per class")
    p.add_argument("--kdd-rows", type=int, default=20_000, help="rows of the KDD table")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsamples")
    p.add_argument("--data-dir", default=None, help="folder searched first for Fashion-MNIST (otherwise "
                   "where adgan looks: ADGAN_DATA_DIR, its cache, Debian's dataset-fashion-mnist; else "
                   "downloaded)")
    p.add_argument("--kdd-dir", default=None, help="folder searched first for kddcup.data_10_percent[.gz] "
                   "(otherwise where adgan looks for KDD99; else downloaded)")
    p.add_argument("--no-check", action="store_true", help="do not load the written datasets")
    args = p.parse_args(argv)
    if args.per_class < 25:
        # Each MVTec defect type gets per_class // 5 images, a fifth of which (at least one) go to validation.
        p.error("--per-class must be at least 25 (each defect type of the MVTec-style folder needs 5 images)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for folder in ("fashion-png", "fashion-mvtec"):
        shutil.rmtree(out / folder, ignore_errors=True)
    t0 = time.perf_counter()
    try:
        declarations = fashion(out, args.per_class, args.seed, args.data_dir)
    except DataError as exc:  # a source file not found: the message names where it was looked for
        print(f"make_user_datasets: error: {exc}", file=sys.stderr)
        return 2
    try:
        declarations += kdd_table(out, args.kdd_rows, args.seed, args.kdd_dir)
    except DataError as exc:
        print(f"make_user_datasets: error: {str(exc).replace('(--data-dir)', '(--kdd-dir, KDD_DIR=)')}",
              file=sys.stderr)
        return 2
    print(f"wrote {len(declarations)} datasets to {out} in {time.perf_counter() - t0:.1f}s: "
          + ", ".join(d.name for d in declarations))
    if not args.no_check:
        check(declarations)
    return 0


if __name__ == "__main__":
    sys.exit(main())
