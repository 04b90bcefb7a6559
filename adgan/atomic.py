"""Atomic file writes: a reader, or a run interrupted mid-write, sees the old file or the new one, never
half of one."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to a temporary sibling of ``path``, then rename it over ``path``
    (``os.replace``: atomic within one filesystem)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(tmp, path)
