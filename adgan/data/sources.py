"""Where dataset files come from, in a fixed order, and the one line printed for each source used.

Search order for a dataset's files (the first place holding all of them wins):

1. ``data_dir`` passed explicitly (``--data-dir``): used, or refused when it lacks the files (never
   passed over for another copy); then the ``ADGAN_DATA_DIR`` environment variable (a data root that may
   hold only some datasets: skipped when it lacks this one);
2. the user cache, ``$XDG_CACHE_HOME/adgan`` (default ``~/.cache/adgan``);
3. system copies: ``/usr/share/datasets`` (Debian's ``dataset-fashion-mnist`` puts its files in
   ``/usr/share/datasets/fashion-mnist``);
4. a download from the dataset's canonical address into the user cache, verified against the published
   sha256 (skipped when ``ADGAN_OFFLINE=1``);
5. otherwise a ``DataError`` listing the files to place and where.

Inside each root the files live in a folder named after the dataset (``<root>/mnist/``,
``<root>/fashion-mnist/``, ``<root>/cifar10/``, ``<root>/kdd99/``) or where torchvision keeps them
(``<root>/MNIST/raw/``, ``<root>/FashionMNIST/raw/``: a root torchvision downloaded into works as it is).
KDD99 and CIFAR-10, whose file names are unambiguous, are also found directly in ``<root>/``; so are the
files of any dataset in a ``data_dir`` that is itself one of its folders (``--data-dir ~/data/MNIST/raw``
for ``mnist``: the folder's name says which dataset it holds). A file ``name.gz`` may also be stored
un-gzipped as ``name`` (and the reverse).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from adgan.atomic import replacing
from adgan.errors import DataError

SYSTEM_ROOTS: tuple[Path, ...] = (Path("/usr/share/datasets"),)
DOWNLOAD_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class SourceSpec:
    """Which files make up a dataset and where they can be downloaded.

    Attributes:
        dataset: Dataset name, also the folder name inside a data root.
        layouts: Alternative sets of relative paths; any one complete set is enough.
        flat_ok: Whether the files may also sit directly in a root (names that cannot be confused).
        folders: Other folders inside a root that hold the files, besides ``dataset`` (torchvision's).
        urls: Base URLs to download ``download`` from, tried in order.
        download: The files to download (default: ``layouts[0]``).
        sha256: Published sha256 of each downloaded file, checked before the file is kept.
    """

    dataset: str
    layouts: tuple[tuple[str, ...], ...]
    flat_ok: bool = False
    folders: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    download: tuple[str, ...] = ()
    sha256: dict[str, str] = field(default_factory=dict)

    @property
    def download_files(self) -> tuple[str, ...]:
        return self.download or self.layouts[0]

    def names_its_folder(self, directory: Path) -> bool:
        """Whether ``directory`` is one of this dataset's folders by its own name (``.../mnist``,
        ``.../MNIST/raw``; letter case aside): its files are then taken from it directly."""
        return any(_ends_with(directory, Path(folder).parts) for folder in (self.dataset, *self.folders))


@dataclass(frozen=True)
class Resolved:
    """The files found for a dataset: ``files[i]`` is the local path of ``layout[i]``."""

    dataset: str
    directory: Path
    layout: tuple[str, ...]
    files: tuple[Path, ...]
    origin: str  # "data_dir", "ADGAN_DATA_DIR", "cache", "system" or "download"


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/adgan``, or ``~/.cache/adgan``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "adgan"


def offline() -> bool:
    """True when ``ADGAN_OFFLINE`` is set to a true value: never try a download."""
    return os.environ.get("ADGAN_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _variants(path: Path) -> tuple[Path, ...]:
    """``x.gz`` and ``x``: both spellings of a file, the given one first."""
    if path.name.endswith(".tar.gz"):
        return (path,)
    if path.suffix == ".gz":
        return (path, path.with_suffix(""))
    return (path, path.with_name(path.name + ".gz"))


def _find_file(directory: Path, rel: str) -> Path | None:
    for candidate in _variants(directory / rel):
        if candidate.is_file():
            return candidate
    return None


def candidate_dirs(spec: SourceSpec, data_dir: str | os.PathLike[str] | None) -> list[tuple[Path, str]]:
    """The directories searched for ``spec``, in order, each with the name of its origin."""
    roots: list[tuple[Path, str]] = []
    if data_dir is not None:
        roots.append((Path(data_dir).expanduser(), "data_dir"))
    env = os.environ.get("ADGAN_DATA_DIR")
    if env:
        roots.append((Path(env).expanduser(), "ADGAN_DATA_DIR"))
    roots.append((cache_root(), "cache"))
    roots.extend((r, "system") for r in SYSTEM_ROOTS)
    dirs: list[tuple[Path, str]] = []
    for root, origin in roots:
        dirs.extend((root / folder, origin) for folder in (spec.dataset, *spec.folders))
        if spec.flat_ok or (origin == "data_dir" and spec.names_its_folder(root)):
            dirs.append((root, origin))
        if origin == "data_dir":  # the head of a folder of several parts (torchvision's MNIST/ of MNIST/raw)
            for parts in (Path(folder).parts for folder in spec.folders):
                dirs.extend((root.joinpath(*parts[k:]), origin) for k in range(1, len(parts))
                            if _ends_with(root, parts[:k]))
    return dirs


def _ends_with(directory: Path, parts: Sequence[str]) -> bool:
    """Whether the path of ``directory`` ends with the folders ``parts`` (letter case aside)."""
    have = [p.casefold() for p in directory.expanduser().absolute().parts]
    return bool(parts) and have[-len(parts):] == [p.casefold() for p in parts]


def resolve(spec: SourceSpec, data_dir: str | os.PathLike[str] | None = None,
            download: bool = True) -> Resolved:
    """Find the files of ``spec`` (see the module docstring for the order).

    Args:
        spec: The dataset's files.
        data_dir: Searched first.
        download: Whether to try a download when no local copy exists (also off with ``ADGAN_OFFLINE=1``).

    Raises:
        DataError: No complete set of files anywhere and no download possible; the message lists the
            files, the folders searched, partial finds and the download failure.
    """
    partial: list[str] = []
    for origin, dirs in itertools.groupby(candidate_dirs(spec, data_dir), key=lambda d: d[1]):
        for directory, _ in dirs:
            for layout in spec.layouts:
                found = [_find_file(directory, rel) for rel in layout]
                if all(found):
                    return Resolved(spec.dataset, directory, layout, tuple(p for p in found if p), origin)
                if any(found):
                    missing = [rel for rel, f in zip(layout, found, strict=True) if f is None]
                    partial.append(f"{directory} lacks {', '.join(missing)}")
        if origin == "data_dir" and data_dir is not None:
            # A folder the caller named is used or refused: falling through to another copy (the cache's,
            # say) would train on other data than the one asked for, under the name of the one asked for.
            raise DataError(_explicit_missing_message(spec, Path(data_dir).expanduser(), partial))
    download_note = ""
    if spec.urls:
        if not download:
            download_note = "download not attempted"
        elif offline():
            download_note = "download skipped (ADGAN_OFFLINE is set)"
        else:
            target = cache_root() / spec.dataset
            try:
                files = tuple(download_spec(spec, target))
                return Resolved(spec.dataset, target, spec.download_files, files, "download")
            except DataError as exc:
                download_note = f"download failed: {exc}"
    raise DataError(_missing_message(spec, data_dir, partial, download_note))


def _wanted(spec: SourceSpec) -> str:
    """The file sets of ``spec`` as a message names them: ``{a, b} or c`` (a set of one file: its name)."""
    return " or ".join(layout[0] if len(layout) == 1 else "{" + ", ".join(layout) + "}"
                       for layout in spec.layouts)


def _explicit_missing_message(spec: SourceSpec, root: Path, partial: list[str]) -> str:
    wanted = _wanted(spec)
    where = " or ".join(f"{root / folder}/" for folder in (spec.dataset, *spec.folders)) + (
        f" or {root}/" if spec.flat_ok else "")
    lines = [f"data_dir (--data-dir) {root}: no complete copy of dataset {spec.dataset!r}: expected {wanted} "
             f"(gzipped or not) in {where}"]
    if not root.is_dir():
        lines.append(f"  {root} is not a folder")
    elif not spec.flat_ok and not spec.names_its_folder(root) and any(
            _find_file(root, rel) for layout in spec.layouts for rel in layout):
        # The files lie flat in a folder whose name does not say which dataset it holds: refused rather
        # than taken, since MNIST and Fashion-MNIST share their file names.
        other = next((o.dataset for o in SPECS.values() if o is not spec and o.names_its_folder(root)), None)
        if other is not None:  # (named for the other one: renaming it would train that as this)
            lines.append(f"  {root} is a folder of dataset {other!r} by its name, not of {spec.dataset!r}: "
                         f"--dataset {other}, or give the folder holding {spec.dataset}'s files")
        else:
            lines.append(f"  the files are directly in {root}, whose name does not say that it holds "
                         f"{spec.dataset} (MNIST and Fashion-MNIST share file names): name that folder "
                         f"{spec.dataset}, or move the files into {root / spec.dataset}/")
    if partial:
        lines.append(f"  Incomplete: {'; '.join(partial)}")
    return "\n".join(lines)


def _missing_message(spec: SourceSpec, data_dir: str | os.PathLike[str] | None, partial: list[str],
                     download_note: str) -> str:
    wanted = _wanted(spec)
    places = [f"{d}/" for d, _ in candidate_dirs(spec, data_dir)]
    lines = [
        f"dataset {spec.dataset!r}: data files not found.",
        f"  Place {wanted} (gzipped or not) in {cache_root() / spec.dataset}/, or in <dir>/{spec.dataset}/ "
        f"and pass data_dir=<dir> (adgan train --data-dir; a sweep spec's dataset.options.data_dir) or set "
        "ADGAN_DATA_DIR=<dir>.",
        f"  Searched: {', '.join(places)}",
    ]
    if partial:
        lines.append(f"  Incomplete: {'; '.join(partial)}")
    if spec.urls:
        lines.append(f"  Canonical source: {spec.urls[0]} ({download_note or 'no download attempted'})")
    return "\n".join(lines)


def download_file(url: str, dest: Path, sha256: str | None, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download ``url`` to ``dest`` atomically (a temporary sibling, verified, then renamed).

    Raises:
        DataError: Network failure or a sha256 mismatch; no partial file is left behind.
    """
    digest = hashlib.sha256()
    try:
        with replacing(dest) as tmp:  # no partial file is ever left at dest
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310
                for block in iter(lambda: resp.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
            if sha256 is not None and digest.hexdigest() != sha256:
                raise DataError(f"{url}: sha256 {digest.hexdigest()} does not match the published {sha256}")
    except urllib.error.HTTPError as exc:
        raise DataError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DataError(f"{url}: {getattr(exc, 'reason', None) or exc}") from None
    return dest


def download_spec(spec: SourceSpec, target: Path) -> list[Path]:
    """Download every file of ``spec.download_files`` into ``target``, trying each base URL in turn."""
    errors: list[str] = []
    for base in spec.urls:
        try:
            return [_fetch_one(base.rstrip("/") + "/" + rel, target / rel, spec.sha256.get(rel))
                    for rel in spec.download_files]
        except DataError as exc:
            errors.append(str(exc))
    raise DataError("; ".join(errors) or "no download address")


def _fetch_one(url: str, dest: Path, sha256: str | None) -> Path:
    """Reuse ``dest`` when an earlier, interrupted run already stored a verified copy; else download."""
    if sha256 is not None and dest.is_file():
        digest = hashlib.sha256(dest.read_bytes()).hexdigest()
        if digest == sha256:
            return dest
    print(f"[adgan.data] downloading {url} -> {dest}", file=sys.stderr)
    return download_file(url, dest, sha256)


def report_source(dataset: str, where: str, n_samples: int, sha256: str, verbose: bool) -> None:
    """Print the one line that says which source a dataset came from (to stderr, when ``verbose``)."""
    if verbose:
        print(f"[adgan.data] {dataset}: {n_samples} samples from {where} sha256 {sha256}", file=sys.stderr)


MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

SPECS: dict[str, SourceSpec] = {
    "mnist": SourceSpec(
        "mnist", (MNIST_FILES,), folders=("MNIST/raw",),
        urls=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/"),
        sha256={
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    ),
    "fashion-mnist": SourceSpec(
        "fashion-mnist", (MNIST_FILES,), folders=("FashionMNIST/raw",),
        urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        sha256={
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
    ),
    "cifar10": SourceSpec(
        "cifar10",
        (tuple(f"cifar-10-batches-py/{b}" for b in
               ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                "test_batch")),
         ("cifar-10-python.tar.gz",)),
        flat_ok=True,
        urls=("https://www.cs.toronto.edu/~kriz/",),
        download=("cifar-10-python.tar.gz",),
        sha256={"cifar-10-python.tar.gz": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"},
    ),
    "kdd99": SourceSpec(
        "kdd99",
        (("kddcup.data_10_percent.gz",), ("kddcup.data_10_percent_corrected",)),
        flat_ok=True,
        urls=("http://kdd.ics.uci.edu/databases/kddcup99/",),
        sha256={
            "kddcup.data_10_percent.gz": "7bfaa8cef1350f72842018c32893e2fa4539d57efbb22f998eb74ecefc3da3b4",
        },
    ),
}
