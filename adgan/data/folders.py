"""Folders of image files: listing, reading with Pillow, one common size, and a digest of the contents.

Used by the declared ``image-folder`` / ``normal-anomaly-folder`` datasets (``adgan.data.declared``) and by
``prepare_file`` on a folder, so training data and new input are read by the same code.

- Listing (``image_files``): every file below the folder whose extension is one of ``IMAGE_EXTENSIONS``
  (case-insensitive), hidden files and folders (``.name``) skipped, sorted by the relative path (``/``
  separated, compared as text): the row order of everything read from a folder.
- Reading (``read_images``): Pillow opens each file and converts it to ``"L"`` (1 channel) or ``"RGB"``
  (3 channels); pixels stay uint8 (16-bit greyscale is mapped 0..65535 -> 0..255; 32-bit integer or float
  images are refused, their range being unknown). An image whose size differs from the target size is
  resized with the project's resize (``images.to_model_space``: bilinear, antialiased,
  ``align_corners=False``) and rounded back to uint8, so a folder yields uint8 (N, C, S, S) like the
  built-in loaders. Without a target size every file must have the size of the first, and be square.
- Digest (``folder_digest``): sha256 over the sorted relative paths and each file's sha256 (of its
  contents, not of sizes or times).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from adgan.data.formats import sha256_file
from adgan.data.images import to_model_space
from adgan.errors import DataError, InputWarning

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MODES = {1: "L", 3: "RGB"}
_RESIZE_ELEMENTS = 1 << 24  # floats per resize call (64 MiB): bounds memory for large photographs


def is_image_file(path: Path) -> bool:
    """Whether ``path``'s extension is one of ``IMAGE_EXTENSIONS`` (case-insensitive)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _visible(rel: Path) -> bool:
    return not any(part.startswith(".") for part in rel.parts)


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """All image files below ``folder`` (any depth), hidden entries skipped, sorted by relative path.

    Raises:
        DataError: ``folder`` is not a directory, or a link named as an image points at nothing.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    found = []
    real_root = os.path.realpath(root)
    seen = {real_root}
    # os.walk follows links to folders (a class folder assembled from links is common; Path.rglob of
    # Python 3.11 skips them silently); a link back to a folder already walked is not entered twice, nor
    # one to a folder above ``folder`` (it holds ``folder``: a class folder's link to the dataset's root
    # would add every other class's images to this class).
    for here, dirs, files in os.walk(root, followlinks=True):
        keep = []
        for d in sorted(dirs):
            real = os.path.realpath(os.path.join(here, d))
            above = os.path.commonpath([real, real_root]) == real
            if not d.startswith(".") and real not in seen and not above:
                seen.add(real)
                keep.append(d)
        dirs[:] = keep
        for name in files:
            path = Path(here) / name
            if not (is_image_file(path) and _visible(path.relative_to(root))):
                continue
            if path.is_symlink() and not path.exists():  # (skipped, it would leave a sample out unsaid)
                raise DataError(f"{path}: a link to {os.readlink(path)}, which does not exist; restore its "
                                "target or remove the link")
            if path.is_file():
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def refuse_shared_files(groups: Sequence[tuple[Path, Sequence[Path]]]) -> None:
    """Refuse one file (the same file through links) found in two of ``groups`` (``(folder, its image
    files)``: class folders, or train/ and test/): it would be a sample of two classes, or of training and
    test. Links are followed within a folder (``image_files``); across folders they would mislabel.

    Raises:
        DataError: Naming both paths and their folders.
    """
    first: dict[str, tuple[Path, Path]] = {}
    for folder, files in groups:
        for path in files:
            real = os.path.realpath(path)
            seen = first.setdefault(real, (folder, path))
            if seen[0] != folder:
                raise DataError(f"{path} and {seen[1]} are the same file ({real}, through a link): one image "
                                f"would be in both {seen[0]} and {folder}; remove the link or copy the file "
                                "where it belongs")


def subfolders(folder: Path) -> list[Path]:
    """The visible subfolders of ``folder``, sorted by name."""
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def folder_digest(root: Path, files: Sequence[Path]) -> str:
    """sha256 over ``files``' paths relative to ``root`` and their contents' sha256, in the given order."""
    h = hashlib.sha256()
    for path in files:
        h.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
        h.update(sha256_file(path).encode("ascii") + b"\n")
    return h.hexdigest()


def _stat(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def stat_key(files: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    """(path, size, mtime) of each file: the key of per-process caches of parsed folders."""
    return tuple((str(p), *_stat(p)) for p in files)


def resize_pixels(images: np.ndarray, size: int) -> np.ndarray:
    """Resize pixel-valued images (N, C, H, W) to (N, C, size, size) with the project's resize.

    uint8 input is resized in model space and rounded back to uint8; float input (pixel units 0..255) stays
    float32 without rounding. Done in chunks of about 64 MiB of floats.
    """
    n, c, h, w = images.shape
    if (h, w) == (size, size):
        return images
    out = np.empty((n, c, size, size), dtype=np.uint8 if images.dtype == np.uint8 else np.float32)
    step = max(1, _RESIZE_ELEMENTS // max(1, c * max(h * w, size * size)))
    for start in range(0, n, step):
        x = to_model_space(images[start:start + step], size)
        pixels = (x + np.float32(1.0)) * np.float32(127.5)
        if out.dtype == np.uint8:
            out[start:start + step] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        else:
            out[start:start + step] = pixels
    return out


# A 16-bit image whose values all stay below this (1/16 of the range: 12-bit data) keeps at most 16 grey
# levels once mapped to 8 bits.
NARROW_16BIT = 4096


def read_image(path: Path, channels: int, narrow: list[tuple[Path, int]] | None = None) -> np.ndarray:
    """One image file as uint8 (C, H, W) with ``channels`` channels (Pillow ``"L"`` or ``"RGB"``).

    ``narrow``: where given, a 16-bit file whose values stay below ``NARROW_16BIT`` is appended to it as
    ``(path, its largest value)`` (``read_images`` warns about them).

    Raises:
        DataError: Pillow cannot read the file.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            # Cameras store a photo as taken and its orientation in EXIF: viewers (and users) see it turned.
            im = ImageOps.exif_transpose(opened) or opened
            if im.mode.startswith("I;16"):
                # Pillow's convert("L") clips 16-bit values at 255; map 0..65535 to 0..255 instead.
                values = np.asarray(im, dtype=np.float64)
                if narrow is not None and values.max() < NARROW_16BIT:
                    narrow.append((path, int(values.max())))
                grey = np.rint(values / 257.0).astype(np.uint8)
                arr = grey if channels == 1 else np.repeat(grey[:, :, None], 3, axis=2)
            elif im.mode in ("I", "F"):
                raise DataError(f"{path}: 32-bit {'integer' if im.mode == 'I' else 'float'} image (mode "
                                f"{im.mode}); its value range is unknown: store it as 8- or 16-bit")
            else:
                arr = np.asarray(im.convert(MODES[channels]), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot read as an image ({exc})") from None
    return arr[None] if arr.ndim == 2 else np.moveaxis(arr, 2, 0)


def read_images(files: Sequence[Path], channels: int, size: int | None,
                where: str) -> tuple[np.ndarray, list[list[int]]]:
    """Read ``files`` into one uint8 array.

    Args:
        files: Image files, in row order.
        channels: 1 (``"L"``) or 3 (``"RGB"``).
        size: Target side S; None: every file must be square and of the first file's size.
        where: The dataset or input named in errors.

    Returns:
        ``(images, sizes)``: uint8 (N, C, S, S), and the files' sizes as ``[height, width, count]``
        (most frequent first) for provenance.

    Raises:
        DataError: No files, an unreadable file, or (``size`` None) mixed or non-square sizes, naming the
            files and their sizes.
    """
    if not files:
        raise DataError(f"{where}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    out: np.ndarray | None = None
    counts: dict[tuple[int, int], int] = {}
    first: tuple[Path, tuple[int, int]] | None = None
    narrow: list[tuple[Path, int]] = []
    for i, path in enumerate(files):
        img = read_image(path, channels, narrow)
        hw = (int(img.shape[1]), int(img.shape[2]))
        counts[hw] = counts.get(hw, 0) + 1
        if first is None:
            first = (path, hw)
        if size is None:
            if hw != first[1]:
                raise DataError(
                    f"{where}: images of different sizes: {first[0]} is {first[1][0]}x{first[1][1]}, {path} "
                    f"is {hw[0]}x{hw[1]} (height x width); declare image_size to resize all of them to one "
                    "size"
                )
            if hw[0] != hw[1]:
                raise DataError(f"{where}: {path} is {hw[0]}x{hw[1]} (height x width), not square; declare "
                                "image_size to resize the images to a square size")
        side = size if size is not None else hw[0]
        if out is None:
            out = np.empty((len(files), channels, side, side), dtype=np.uint8)
        out[i] = resize_pixels(img[None], side)[0]
    assert out is not None  # files is not empty
    if narrow:
        top = max(v for _, v in narrow)
        warnings.warn(
            f"{where}: {len(narrow)} of {len(files)} images are 16-bit with values only up to {top} of "
            f"65535 (e.g. {narrow[0][0]}; a 12-bit or 10-bit camera's): 16-bit pixels are mapped "
            f"0..65535 -> 0..255, which leaves them about {top // 257 + 1} grey levels; stretch them to the "
            "full 16-bit range (or convert them to 8-bit with their own range) first", InputWarning,
            stacklevel=2)
    sizes = [[h, w, n] for (h, w), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return out, sizes
