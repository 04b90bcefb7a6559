"""The code version recorded with every result row and checkpoint."""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

__version__ = "0.1.0"


@functools.cache
def code_version() -> str:
    """``<package version>+g<git sha>[.dirty]`` when run from adgan's own git checkout, else the package
    version (an installed adgan whose site-packages lies inside some other repository, a project's
    ``.venv`` say, is not that repository's commit)."""
    root = Path(__file__).resolve().parent.parent
    # The folder holding the package as imported: adgan/ may be a link to the package elsewhere in the
    # checkout (repo/adgan -> repo/src/adgan), whose top is then above the link's target.
    linked = Path(os.path.abspath(__file__)).parent.parent.resolve()
    try:
        top, sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--show-toplevel", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.splitlines()  # (lines: the checkout's path may hold spaces)
        if Path(top).resolve() not in (root, linked):
            return __version__
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError, ValueError):
        return __version__
    return f"{__version__}+g{sha}" + (".dirty" if dirty else "")


def uncommitted_diff() -> bytes | None:
    """``git diff HEAD`` of adgan's own checkout, as git wrote it (a tracked file need not be UTF-8), when
    its tracked files have uncommitted changes (what a ``.dirty`` code version adds to its commit), else
    None."""
    if not code_version().endswith(".dirty"):
        return None
    root = Path(__file__).resolve().parent.parent
    try:
        return subprocess.run(["git", "-C", str(root), "diff", "HEAD", "--binary"], capture_output=True,
                              timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def save_uncommitted_diff(write: Callable[[str, bytes], None]) -> str | None:
    """Where a dirty checkout runs: ``write(name, data)`` the diff as ``code-<sha256[:12]>.diff`` and return
    that name (recorded beside the code version, so that the run's code can be rebuilt); else None."""
    try:
        diff = uncommitted_diff()
        if not diff:
            return None
        name = f"code-{hashlib.sha256(diff).hexdigest()[:12]}.diff"
        write(name, diff)
    except OSError as exc:  # provenance on the side: never the reason a run fails
        print(f"adgan: warning: the checkout's uncommitted changes were not saved: {exc}", file=sys.stderr)
        return None
    return name


def dist_version(dist: str) -> str | None:
    """The installed version of distribution ``dist`` (read from its metadata: nothing is imported), or
    None when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions() -> str:
    """What ``adgan --version`` prints: adgan's code version and the versions of the libraries whose
    behaviour results depend on."""
    libs = ", ".join(f"{d} {dist_version(d) or 'not installed'}"
                     for d in ("torch", "ray", "optuna", "wandb", "scikit-learn"))
    return f"adgan {code_version()} ({libs})"
