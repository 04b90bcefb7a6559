"""Where a sweep's results live: a local directory or any URI that ``pyarrow.fs`` resolves (``s3://``,
``gs://``, ``file://``, ...), behind one small interface.

Credentials never pass through adgan: ``pyarrow.fs`` takes them from the environment or the cloud's identity
mechanism (``AWS_*`` variables, an IAM role for service accounts, GCP workload identity). An S3-compatible
endpoint is given by the standard ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) variable.

Every write of a whole file is atomic for readers: locally a temporary sibling renamed into place; on an
object store a single PUT, which readers see whole or not at all.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from adgan.errors import DataError


def is_uri(value: str | os.PathLike[str]) -> bool:
    return "://" in str(value)


@dataclass(frozen=True)
class Location:
    """A directory on some filesystem: ``fs`` and the path inside it (no trailing slash)."""

    fs: pafs.FileSystem
    path: str
    uri: str  # as the user gave it (for messages and for Ray Tune's storage_path)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

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
        except (OSError, pa.ArrowException) as exc:
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
        DataError: A URI that ``pyarrow.fs`` cannot resolve (unknown scheme, missing credentials setup).
    """
    text = str(value)
    if not is_uri(text):
        path = str(Path(text).expanduser().resolve())
        return Location(pafs.LocalFileSystem(), path, path)
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise DataError(f"{text}: not a location pyarrow.fs can open ({exc})") from None
    if isinstance(fs, pafs.LocalFileSystem):
        return Location(fs, path, path)
    return Location(fs, path.rstrip("/"), text.rstrip("/"))
