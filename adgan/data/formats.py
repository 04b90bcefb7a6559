"""Parsers for the raw file formats: IDX (MNIST, Fashion-MNIST) and the CIFAR-10 python batches.

Both read gzip'd or plain files (told apart by the gzip magic bytes, not the name). Every failure is a
``DataError`` naming the file. The CIFAR batches are pickles; they are read with ``RestrictedUnpickler``,
which resolves only the few globals those files reference (numpy's array reconstruction helpers), so a
crafted pickle cannot run code: any other global is refused before anything is called.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from adgan.errors import DataError

# IDX type codes (third magic byte) -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
CIFAR_BATCHES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CIFAR_DIR = "cifar-10-batches-py"


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The content of ``path``, gunzipped when it starts with the gzip magic bytes.

    Raises:
        DataError: The file is missing, unreadable, or a damaged/truncated gzip stream.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path}: damaged or truncated gzip file ({exc})") from None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, cached per process by (path, size, mtime)."""
    st = os.stat(path)
    return _sha256_cached(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=1 << 16)  # image folders hash every file; sweeps load them again and again
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse an IDX buffer: magic ``00 00 <type> <ndim>``, ``ndim`` big-endian uint32 sizes, then data.

    Args:
        data: The (already gunzipped) file content.
        name: File name used in error messages.

    Returns:
        Array of the stored shape, native byte order (uint8 for MNIST images and labels).

    Raises:
        DataError: Wrong magic number, unknown type code, or a size that does not match the header.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{name}: not an IDX file (magic number {data[:4].hex() or 'missing'}, "
                        f"expected 0000<type><ndim>)")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise DataError(f"{name}: unknown IDX type code 0x{code:02x}; expected one of "
                        f"{', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)}")
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DataError(f"{name}: IDX header truncated or without dimensions (ndim={ndim})")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        n_values, n_bytes = int(np.prod(dims, dtype=np.int64)), len(data) - header
        fits = [c for c, t in _IDX_DTYPES.items() if n_values and np.dtype(t).itemsize * n_values == n_bytes]
        # A wrong type byte (a writer's bug) reads as a size mismatch: say which types the size fits.
        hint = (f"; the data fits {n_bytes // n_values}-byte values (type 0x{fits[0]:02x}, "
                f"{np.dtype(_IDX_DTYPES[fits[0]]).name}) but the header's type 0x{code:02x} is {dtype.name}: "
                "is the type byte wrong? (MNIST files are 0x08, uint8)") if fits else ""
        raise DataError(f"{name}: IDX dims {dims} need {expected} data bytes, file has {n_bytes}{hint}")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, gzip'd or plain (see ``parse_idx``)."""
    return parse_idx(read_bytes(path), str(path))


# ----- CIFAR-10 python batches -----
def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode`` (Python 3 protocol-2 pickles store bytes this way)."""
    if not isinstance(obj, str) or encoding.lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refused _codecs.encode({type(obj).__name__}, {encoding!r})")
    return obj.encode("latin-1", errors)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy's array reconstruction globals.

    The CIFAR-10 batches (protocol-2 pickles of dicts) reference exactly
    ``numpy.core.multiarray._reconstruct`` (``numpy._core`` when written by numpy 2), ``numpy.ndarray`` and
    ``numpy.dtype``; Python 3 writers add
    ``_codecs.encode`` for bytes, allowed here for latin-1 only. Anything else (``os.system``,
    ``builtins.eval``...) raises ``pickle.UnpicklingError`` before it is called.
    """

    _allowed: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        allowed = RestrictedUnpickler._allowed
        if allowed is None:
            allowed = RestrictedUnpickler._allowed = _allowed_globals()
        try:
            return allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None


def restricted_loads(data: bytes, name: str = "<bytes>") -> Any:
    """Unpickle ``data`` with ``RestrictedUnpickler`` (bytes keys kept as bytes).

    Raises:
        DataError: The pickle is damaged or references a global outside the allowed set.
    """
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{name}: refused or damaged pickle ({exc})") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as exc:
        raise DataError(f"{name}: damaged pickle ({type(exc).__name__}: {exc})") from None


def parse_cifar_batch(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """Parse one CIFAR-10 python batch.

    Returns:
        ``(images, labels)``: uint8 (N, 3, 32, 32) and int64 (N,).

    Raises:
        DataError: Not a dict with ``data`` uint8 (N, 3072) and ``labels`` (N,) ints in 0..9.
    """
    obj = restricted_loads(data, name)
    if not isinstance(obj, dict):
        raise DataError(f"{name}: expected a dict with 'data' and 'labels', got {type(obj).__name__}")
    d = {(k.decode("latin-1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    if "data" not in d or "labels" not in d:
        raise DataError(f"{name}: missing key 'data' or 'labels' (keys: {sorted(map(str, d))})")
    x = d["data"]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataError(f"{name}: 'data' must be a uint8 array (N, 3072), got {got}")
    try:
        y = np.asarray(d["labels"], dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{name}: 'labels' must be a list of integers") from None
    if y.shape != (x.shape[0],):
        raise DataError(f"{name}: 'labels' must be {x.shape[0]} integers (one per image), "
                        f"got shape {y.shape}")
    bad = np.flatnonzero((y < 0) | (y > 9))
    if bad.size:
        raise DataError(f"{name}: 'labels' must be integers in 0..9; labels[{bad[0]}] is {y[bad[0]]} "
                        f"({bad.size} out of range)")
    return x.reshape(-1, 3, 32, 32), y


def read_cifar_dir(directory: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read the six batches of a ``cifar-10-batches-py`` directory, train batches first."""
    paths = [Path(directory) / b for b in CIFAR_BATCHES]
    parts = [parse_cifar_batch(read_bytes(p), str(p)) for p in paths]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def read_cifar_tar(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read the six batches straight from ``cifar-10-python.tar.gz`` (nothing is extracted to disk)."""
    found: dict[str, bytes] = {}
    wanted = {f"{CIFAR_DIR}/{b}" for b in CIFAR_BATCHES}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    fh = tar.extractfile(member)
                    if fh is not None:
                        found[member.name] = fh.read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path}: damaged or truncated tar archive ({exc})") from None
    missing = sorted(wanted - set(found))
    if missing:
        raise DataError(f"{path}: archive lacks {', '.join(missing)}")
    parts = [parse_cifar_batch(found[f"{CIFAR_DIR}/{b}"], f"{path}:{CIFAR_DIR}/{b}") for b in CIFAR_BATCHES]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def open_text(path: Path) -> io.TextIOBase:
    """A text file for reading, gzip'd (by its magic bytes) or not; UTF-8, undecodable bytes replaced."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    if gz:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")  # noqa: SIM115


def blank_lines_within(path: Path) -> tuple[int, int]:
    """(how many empty lines lie between data lines of text file ``path``, the first one's line number):
    CSV readers skip them, so rows no longer match the file's lines. Trailing empty lines do not count."""
    count, first, pending = 0, 0, []
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                count += len(pending)
                first = first or (pending[0] if pending else 0)
                pending = []
            else:
                pending.append(lineno)
    return count, first
