"""Where files are found (order, layouts), the printed source line, downloads (local server) and errors."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from adgan.data import dataset_available, load_dataset, sources
from adgan.data.fakes import fake_kdd_rows, make_fake_data_dir, write_idx, write_kdd_csv
from adgan.data.formats import read_idx
from adgan.errors import ConfigError, DataError

SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")


def _kdd_root(root: Path, seed: int) -> Path:
    write_kdd_csv(root / "kdd99" / "kddcup.data_10_percent.gz", fake_kdd_rows(200, seed=seed))
    return root


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = _kdd_root(tmp_path / "explicit", 1)
    env = _kdd_root(tmp_path / "env", 2)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sources.cache_root() == tmp_path / "xdg" / "adgan"
    _kdd_root(sources.cache_root(), 3)
    monkeypatch.setenv("ADGAN_DATA_DIR", str(env))

    def origin(data_dir: Path | None) -> str:
        return sources.resolve(sources.SPECS["kdd99"], data_dir).origin

    assert origin(explicit) == "data_dir"
    assert origin(None) == "ADGAN_DATA_DIR"
    info = load_dataset("kdd99", 0, data_dir=explicit, verbose=False).info
    assert info.source == str(explicit / "kdd99" / "kddcup.data_10_percent.gz")
    monkeypatch.delenv("ADGAN_DATA_DIR")
    res = sources.resolve(sources.SPECS["kdd99"], None)
    assert res.origin == "cache" and res.files[0].is_relative_to(sources.cache_root())
    # A data root in the environment without the files falls through to the next place; a folder named
    # explicitly is used or refused, never passed over for another copy (here the cache's).
    monkeypatch.setenv("ADGAN_DATA_DIR", str(tmp_path / "nothing-here"))
    assert origin(None) == "cache"
    with pytest.raises(DataError, match=r"data_dir \(--data-dir\) .*nothing-here: no complete copy of "
                                        r"dataset 'kdd99'.*\n  .*nothing-here is not a folder"):
        origin(tmp_path / "nothing-here")


def test_system_copy_of_fashion_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (SYSTEM_FASHION / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    res = sources.resolve(sources.SPECS["fashion-mnist"])
    assert res.origin == "system" and res.directory == SYSTEM_FASHION
    fake = make_fake_data_dir(tmp_path / "fake", per_class=3)
    assert sources.resolve(sources.SPECS["fashion-mnist"], fake).origin == "data_dir"


def test_layouts_flat_and_ungzipped(tmp_path: Path) -> None:
    kdd_dir = _kdd_root(tmp_path, 0) / "kdd99"
    # KDD99's file name is unambiguous: it is also found directly in the data folder, gzipped or not.
    plain = tmp_path / "flat" / "kddcup.data_10_percent"
    plain.parent.mkdir()
    plain.write_bytes(gzip.decompress((kdd_dir / "kddcup.data_10_percent.gz").read_bytes()))
    res = sources.resolve(sources.SPECS["kdd99"], tmp_path / "flat")
    assert res.files == (plain,)
    # IDX files: un-gzipped copies work; a flat folder is not searched (MNIST and Fashion share names).
    fake = make_fake_data_dir(tmp_path / "fake", per_class=10)
    for f in (fake / "mnist").iterdir():
        (f.with_suffix("")).write_bytes(gzip.decompress(f.read_bytes()))
        f.unlink()
    s = load_dataset("mnist", 0, data_dir=fake, verbose=False)
    assert s.info.sha256.count(";") == 3 and len(s.train) > 0
    # ... unless the folder given says by its name which dataset it holds.
    assert sources.resolve(sources.SPECS["mnist"], fake / "mnist").directory == fake / "mnist"
    other = fake / "digits"
    (fake / "mnist").rename(other)
    with pytest.raises(DataError, match=f"the files are directly in {other}, whose name does not say that it "
                                        f"holds mnist \\(MNIST and Fashion-MNIST share file names\\): name "
                                        f"that folder mnist, or move the files into {other / 'mnist'}/"):
        sources.resolve(sources.SPECS["mnist"], other)
    with pytest.raises(DataError, match=f"{fake / 'MNIST'} is a folder of dataset 'mnist' by its name, not "
                                        "of 'fashion-mnist': --dataset mnist, or give the folder holding "
                                        "fashion-mnist's files"):
        sources.resolve(sources.SPECS["fashion-mnist"], other.rename(fake / "MNIST"))  # named for the other


def test_torchvision_layout(tmp_path: Path) -> None:
    """A root torchvision downloaded into (``MNIST/raw/``, ``FashionMNIST/raw/``, un-gzipped files beside
    the .gz ones) is a data root as it is, and its ``raw`` folder is a dataset folder by its path."""
    fake = make_fake_data_dir(tmp_path / "fake", per_class=10)
    for name, folder in (("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")):
        raw = tmp_path / "tv" / folder / "raw"
        raw.mkdir(parents=True)
        for f in (fake / name).iterdir():
            (raw / f.name).write_bytes(f.read_bytes())
            (raw / f.stem).write_bytes(gzip.decompress(f.read_bytes()))
        for data_dir in (tmp_path / "tv", raw, raw.parent):  # the root, raw/, and torchvision's MNIST/
            res = sources.resolve(sources.SPECS[name], data_dir)
            assert res.origin == "data_dir" and res.directory == raw, (name, data_dir)
        same = load_dataset(name, 1, data_dir=tmp_path / "tv", verbose=False)
        ref = load_dataset(name, 1, data_dir=fake, verbose=False)
        assert np.array_equal(same.train.x, ref.train.x) and same.info.sha256 == ref.info.sha256
    with pytest.raises(DataError) as err:  # torchvision's MNIST folder named for Fashion-MNIST: refused
        sources.resolve(sources.SPECS["fashion-mnist"], tmp_path / "tv" / "MNIST" / "raw")
    assert "expected {train-images-idx3-ubyte.gz" in str(err.value)
    assert f"in {tmp_path / 'tv/MNIST/raw/fashion-mnist'}/ or {tmp_path / 'tv/MNIST/raw/FashionMNIST/raw'}/" \
        in str(err.value)


def test_dataset_available(fake_data_dir: Path) -> None:
    assert not dataset_available("mnist") and dataset_available("mnist", fake_data_dir)
    assert dataset_available("synthetic-images") and dataset_available("mnist-5k")
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        dataset_available("nope")


def test_missing_files_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    partial = tmp_path / "d" / "mnist"
    write_idx(partial / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError) as err:  # named explicitly: refused at once, with what it lacks
        load_dataset("mnist", 0, data_dir=tmp_path / "d", verbose=False)
    assert str(err.value) == (
        f"data_dir (--data-dir) {tmp_path / 'd'}: no complete copy of dataset 'mnist': expected "
        "{train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz} "
        f"(gzipped or not) in {partial}/ or {tmp_path / 'd' / 'MNIST' / 'raw'}/\n"
        f"  Incomplete: {partial} lacks train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz")
    monkeypatch.setenv("ADGAN_DATA_DIR", str(tmp_path / "d"))  # a data root: every place searched, then this
    with pytest.raises(DataError) as err:
        load_dataset("mnist", 0, verbose=False)
    msg = str(err.value)
    assert "dataset 'mnist': data files not found" in msg
    assert "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz" in msg
    assert f"{sources.cache_root() / 'mnist'}/" in msg and "ADGAN_DATA_DIR" in msg and "--data-dir" in msg
    assert f"{partial} lacks train-labels-idx1-ubyte.gz" in msg
    assert "download skipped (ADGAN_OFFLINE is set)" in msg


def test_missing_single_file_sets_are_named_without_braces(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "cache_root", lambda: tmp_path / "cache")
    monkeypatch.setattr(sources, "SYSTEM_ROOTS", ())
    with pytest.raises(DataError) as err:
        sources.resolve(sources.SPECS["kdd99"], None)
    line = str(err.value).splitlines()[1]  # "Place A or B (gzipped or not) in ..."
    want = "  Place kddcup.data_10_percent.gz or kddcup.data_10_percent_corrected (gzipped or not) in "
    assert line.startswith(want), line
    assert "{" not in line


def test_one_source_line_printed(fake_data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = load_dataset("mnist", 1, data_dir=fake_data_dir)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    files = [fake_data_dir / "mnist" / f for f in sources.MNIST_FILES]
    shas = ";".join(hashlib.sha256(f.read_bytes()).hexdigest() for f in files)
    assert err[0] == f"[adgan.data] mnist: 400 samples from {fake_data_dir / 'mnist'} sha256 {shas}"
    assert s.info.sha256 == shas
    load_dataset("mnist", 1, data_dir=fake_data_dir, verbose=False)
    assert capsys.readouterr().err == ""


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A local HTTP server over a temporary folder: real downloads without a network."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_download_verified_and_atomic(http_root: tuple[Path, str], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    served, url = http_root
    payload = write_idx(served / "labels-idx1-ubyte.gz", np.arange(10, dtype=np.uint8))
    sha = hashlib.sha256(payload.read_bytes()).hexdigest()
    dest = tmp_path / "cache" / "labels-idx1-ubyte.gz"
    sources.download_file(url + "labels-idx1-ubyte.gz", dest, sha)
    assert read_idx(dest).tolist() == list(range(10))

    bad = tmp_path / "cache2" / "x.gz"
    with pytest.raises(DataError, match="does not match the published"):
        sources.download_file(url + "labels-idx1-ubyte.gz", bad, "0" * 64)
    assert not bad.exists() and list(bad.parent.iterdir()) == []  # no partial or temporary file left
    with pytest.raises(DataError, match="absent.gz: HTTP 404"):
        sources.download_file(url + "absent.gz", bad, None)
    assert list(bad.parent.iterdir()) == []

    # resolve() falls back to a download into the user cache when nothing is found locally.
    monkeypatch.delenv("ADGAN_OFFLINE")
    kdd_file = write_kdd_csv(served / "kddcup.data_10_percent.gz", fake_kdd_rows(50, seed=9))
    spec = sources.SourceSpec(
        "kdd99-test", (("kddcup.data_10_percent.gz",),), urls=(url + "missing/", url),
        sha256={"kddcup.data_10_percent.gz": hashlib.sha256(kdd_file.read_bytes()).hexdigest()})
    res = sources.resolve(spec)
    assert res.origin == "download" and res.files[0] == sources.cache_root() / "kdd99-test" / kdd_file.name
    assert res.files[0].read_bytes() == kdd_file.read_bytes()
    assert sources.resolve(spec).origin == "cache"  # the next run finds the cached copy
