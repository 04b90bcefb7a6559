"""Plugins as users write them: a module in the working directory, errors that say where they came from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from adgan import plugins
from adgan.errors import ConfigError


def test_a_module_plugin_in_the_working_directory_is_found_by_the_console_script(tmp_path: Path) -> None:
    """The ``adgan`` console script does not put the working directory on the path (``python -m`` does):
    a plugin named as a module there, as docs/sweeps.md says, is still found."""
    (tmp_path / "cwdplug.py").write_text(
        "from adgan.models import register_detector\nfrom adgan.models.baselines import KNN\n\n\n"
        "@register_detector\nclass CwdKNN(KNN):\n    name = 'cwdknn'\n")
    adgan = Path(sys.executable).parent / "adgan"
    run = subprocess.run([str(adgan), "train", "--model", "cwdknn", "--dataset", "synthetic-tabular",
                          "--set", "max_train=64", "--out", str(tmp_path / "run")], cwd=tmp_path,
                         env={**_env(), "ADGAN_PLUGINS": "cwdplug"}, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "run" / "summary.json").is_file()


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "ADGAN_PLUGINS"}


def test_import_errors_name_the_line_and_where_the_plugin_came_from(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "deeperr.py"
    bad.write_text("x = {}\n\n\ny = x['missing_key']\n")
    with pytest.raises(ConfigError, match=rf"plugin {bad}: importing it failed \(KeyError: 'missing_key'; at "
                                          rf"{bad}, line 4\)$"):
        plugins.load([str(bad)])
    monkeypatch.setenv(plugins.ENV, str(bad))
    with pytest.raises(ConfigError, match=rf"^ADGAN_PLUGINS='{bad}': plugin {bad}: importing it failed"):
        plugins.load_env()
    (tmp_path / "deepmod.py").write_text("import json\n\njson.loads('{')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"plugin 'deepmod': cannot import it \(JSONDecodeError: .*; at "
                                          rf"{tmp_path / 'deepmod.py'}, line 3\)$"):
        plugins.load(["deepmod"])
