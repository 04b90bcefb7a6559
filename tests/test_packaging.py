"""``pip install .`` gives a working ``adgan`` with the example specs: the wheel is built and installed into
a fresh virtual environment, then used from a directory outside the repository.

The fresh environment sees this environment's dependencies (torch, Ray, ...) through a ``.pth`` file
that lists this environment's site-packages directory. Python adds such a path to ``sys.path`` without
processing the ``.pth`` files inside it, so an editable install of adgan there (whose finder is
activated by a ``.pth`` file) stays invisible: ``import adgan`` can only find the installed wheel.
Nothing is downloaded (``--no-index``, ``--no-build-isolation``).
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def test_the_wheel_installs_a_working_adgan_with_its_specs(tmp_path: Path) -> None:
    # Build from a copy of the sources, so that the build leaves nothing (build/, *.egg-info) in the tree.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("adgan", "sweeps"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(dist), str(src)], tmp_path, env)
    (wheel,) = dist.glob("adgan-*.whl")
    with zipfile.ZipFile(wheel) as z:
        shipped = {Path(n).name: z.read(n) for n in z.namelist() if n.startswith("adgan/specs/")}
    assert shipped == {p.name: p.read_bytes() for p in (ROOT / "sweeps").glob("*.yaml")}

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                        tmp_path, env).strip())
    (purelib / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # --ignore-installed: never touch an adgan this environment may hold (the .pth makes it visible to pip).
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q",
          str(wheel)], tmp_path, env)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([str(python), "-c", "import adgan; print(adgan.__file__)"], elsewhere, env)
    assert Path(where.strip()).is_relative_to(venv), where
    listed = _run([str(venv / "bin" / "adgan"), "specs"], elsewhere, env)
    assert all(name in listed for name in ("mnist", "fashion_mnist", "kdd99", "cifar10", "smoke")), listed
    plan = _run([str(venv / "bin" / "adgan"), "sweep", "smoke", "--dry-run", "--results", "r"], elsewhere,
                env)
    assert "plan of sweep 'smoke'" in plan and str(purelib / "adgan" / "specs" / "smoke.yaml") in plan, plan
    assert "estimate     wall" in plan and not (elsewhere / "r").exists()
    # The own-data examples read a checkout's data/user/: from a wheel they say so instead of a bare path.
    r = subprocess.run([str(venv / "bin" / "adgan"), "sweep", "own_images", "--dry-run", "--results", "r"],
                       cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "reads the data/user/ folder of a source checkout (written there by `make " \
        "user-data`)" in r.stderr, r.stderr[-2000:]
