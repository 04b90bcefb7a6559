"""Where a sweep's results live: a local directory or any URI that ``pyarrow.fs`` resolves (``s3://``,
``gs://``, ``file://``, ...), behind one small interface.

Credentials never pass through adgan: ``pyarrow.fs`` takes them from the environment or the cloud's identity
mechanism (``AWS_*`` variables, an IAM role for service accounts, GCP workload identity). An S3-compatible
endpoint is given by the standard ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) variable; a GCS
emulator by Google's standard ``STORAGE_EMULATOR_HOST`` (``http://host:port``; no credentials are used
then, as Google's own clients do), which pyarrow does not read itself.

Every write of a whole file is atomic for readers: locally a temporary sibling renamed into place; on an
object store a single PUT, which readers see whole or not at all.

What cannot live on an object store stays on the machine that needs it, under :func:`local_state_dir`
(``$ADGAN_HOME/sweeps/<name>-<hash of the URI>/``, ``ADGAN_HOME`` defaulting to ``~/.adgan``): the driver's
Optuna journal (appended to under a file lock) and each node's offline W&B runs.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from adgan.errors import DataError

# What pyarrow's filesystems raise when a store cannot be reached or read (S3/GCS errors are OSErrors or
# ArrowExceptions).
IO_ERRORS: tuple[type[BaseException], ...] = (OSError, pa.ArrowException)


def is_uri(value: str | os.PathLike[str]) -> bool:
    return "://" in str(value)


def adgan_home() -> Path:
    """adgan's own directory on this machine: ``$ADGAN_HOME``, default ``~/.adgan``."""
    return Path(os.environ.get("ADGAN_HOME") or Path.home() / ".adgan")


def local_state_dir(uri: str) -> Path:
    """This machine's directory for what a sweep whose results are at ``uri`` keeps off the object store
    (the Optuna journal on the driver, offline W&B runs on every node): ``$ADGAN_HOME/sweeps/<last part of
    the URI>-<hash of the URI>/``, the same for the same URI on every machine with the same home."""
    digest = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in uri.rstrip("/").rsplit("/", 1)[-1])
    return adgan_home() / "sweeps" / f"{name[:60]}-{digest}"


@dataclass(frozen=True)
class Location:
    """A directory on some filesystem: ``fs`` and the path inside it (no trailing slash)."""

    fs: pafs.FileSystem
    path: str
    uri: str  # as the user gave it (for messages and for Ray Tune's storage_path)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def scheme(self) -> str:
        """The URI scheme (``s3``, ``gs``, ...); empty for a local directory."""
        return "" if self.is_local else self.uri.split("://", 1)[0]

    def uri_of(self, fs_path: str) -> str:
        """The address of ``fs_path`` (a path on this location's filesystem, e.g. a Tune checkpoint's
        ``path``, which has no scheme) that :func:`location` and the readers open again: the path itself
        locally, ``<scheme>://<path>`` on an object store."""
        return fs_path if self.is_local else f"{self.scheme}://{fs_path.lstrip('/')}"

    @property
    def tune_storage(self) -> tuple[str, pafs.FileSystem | None]:
        """``(storage_path, storage_filesystem)`` for Ray Tune's ``RunConfig`` and ``Tuner.restore``: a local
        path alone, or the path without its scheme and this filesystem (which carries the endpoint, e.g.
        from ``AWS_ENDPOINT_URL``, to every node; credentials stay with each node's environment)."""
        return (self.path, None) if self.is_local else (self.path, self.fs)

    def child(self, *parts: str) -> Location:
        path = "/".join([self.path.rstrip("/"), *parts])
        uri = "/".join([self.uri.rstrip("/"), *parts])
        return Location(self.fs, path, uri)

    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.File

    def read_bytes(self) -> bytes:
        """The whole file, read in one go (one version of it, whatever a writer does meanwhile)."""
        try:
            with self.fs.open_input_stream(self.path) as f:
                return f.read()
        except FileNotFoundError:
            raise
        except IO_ERRORS as exc:
            if "not found" in str(exc).lower() or "no such file" in str(exc).lower():
                raise FileNotFoundError(self.uri) from None
            raise DataError(f"{self.uri}: cannot read ({exc})") from None

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def write_bytes(self, data: bytes) -> None:
        """Write the whole file atomically (see the module docstring)."""
        parent = self.path.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        if self.is_local:
            tmp = f"{parent}/.{self.name()}.{uuid.uuid4().hex[:8]}.tmp"
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            os.replace(tmp, self.path)
        else:
            with self.fs.open_output_stream(self.path) as f:
                f.write(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.path)

    def delete_dir(self) -> None:
        """Delete this directory and everything in it (nothing when it does not exist)."""
        if self.exists():
            with contextlib.suppress(FileNotFoundError):
                self.fs.delete_dir(self.path)

    def mtime(self) -> float | None:
        """The file's modification time (Unix seconds; on an object store the server's time of the last
        write), None when it does not exist."""
        info = self.fs.get_file_info(self.path)
        return None if info.type == pafs.FileType.NotFound or info.mtime is None else info.mtime.timestamp()

    def files(self) -> list[tuple[str, int]]:
        """``(path relative to this directory, size)`` of every file below it, recursively."""
        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=True)
        root = self.path.rstrip("/") + "/"
        return sorted((i.path.removeprefix(root), i.size or 0) for i in self.fs.get_file_info(selector)
                      if i.type == pafs.FileType.File)

    def download(self, dest: str | os.PathLike[str], skip: Iterable[str] = ()) -> Path:
        """Copy this directory (recursively) to the local directory ``dest``, except the entries named in
        ``skip`` at its top (e.g. a checkpoint's training state, which a reader of the detector does not
        need and which may be deleted meanwhile); returns ``dest``."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        if not self.exists():
            raise FileNotFoundError(errno.ENOENT, "not found on the store", self.uri)
        skipped = set(skip)
        local = pafs.LocalFileSystem()
        for name, _ in self.files():
            if name.split("/", 1)[0] in skipped:
                continue
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            pafs.copy_files(self.child(name).path, str(dest / name), source_filesystem=self.fs,
                            destination_filesystem=local)
        return dest

    def copy_to(self, dest: Location) -> None:
        """Copy this directory (recursively) to ``dest``, a directory on the same filesystem."""
        for name, _ in self.files():
            target = dest.child(name).path
            self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
            self.fs.copy_file(self.child(name).path, target)

    def upload_file(self, src: str | os.PathLike[str]) -> None:
        """Write the local file ``src`` here, whole (see :meth:`write_bytes`)."""
        self.write_bytes(Path(src).read_bytes())

    def list_files(self) -> list[str]:
        """Names of the files directly in this directory (none when it does not exist)."""
        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=False)
        return sorted(i.base_name for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File)

    def local_path(self) -> Path:
        """The local path (only for a local location)."""
        if not self.is_local:
            raise DataError(f"{self.uri}: expected a local directory")
        return Path(self.path)


def location(value: str | os.PathLike[str]) -> Location:
    """A ``Location`` from a local path or a URI.

    Raises:
        DataError: A URI that ``pyarrow.fs`` cannot resolve (unknown scheme, missing credentials setup), or
            one with options after ``?``: every file of a sweep is addressed as ``<URI>/<path>`` (also in the
            tables, for the checkpoints), so options must come from the environment instead.
    """
    text = str(value)
    if not is_uri(text):
        path = str(Path(text).expanduser().resolve())
        return Location(pafs.LocalFileSystem(), path, path)
    if "?" in text:
        raise DataError(
            f"{text}: options in a results URI (after '?') are not supported, because the sweep's files are "
            "addressed as <URI>/<path>; give them through the environment instead (an S3-compatible "
            "endpoint: AWS_ENDPOINT_URL; credentials: the cloud's usual variables or identity)"
        )
    try:
        fs, path = _gcs_emulator(text) or pafs.FileSystem.from_uri(text)
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise DataError(f"{text}: not a location pyarrow.fs can open ({exc})") from None
    if isinstance(fs, pafs.LocalFileSystem):
        return Location(fs, path, path)
    return Location(fs, path.rstrip("/"), text.rstrip("/"))


def _gcs_emulator(uri: str) -> tuple[pafs.FileSystem, str] | None:
    """``(filesystem, path)`` of a ``gs://`` URI on the GCS emulator named by ``STORAGE_EMULATOR_HOST``
    (anonymous, as Google's clients treat an emulator); None for anything else."""
    host = os.environ.get("STORAGE_EMULATOR_HOST")
    if not host or not uri.startswith("gs://"):
        return None
    scheme, _, address = host.rpartition("://")
    fs = pafs.GcsFileSystem(anonymous=True, scheme=scheme or "http", endpoint_override=address.rstrip("/"))
    return fs, uri.removeprefix("gs://")


@contextlib.contextmanager
def local_copy(value: str | os.PathLike[str], skip: Iterable[str] = ()) -> Iterator[Path]:
    """A local directory holding the directory ``value`` (a path or a URI): a local path as it is; a
    directory on an object store downloaded (without the top-level entries named in ``skip``) into a
    temporary directory, removed afterwards.

    Raises:
        FileNotFoundError: ``value`` does not exist.
    """
    loc = location(value)
    if loc.is_local:
        yield Path(loc.path)
        return
    tmp = Path(tempfile.mkdtemp(prefix="adgan-download-"))
    try:
        yield loc.download(tmp / loc.name(), skip)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
