"""Plugins as users write them: a module in the working directory, errors that say where they came from."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
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


def _train_plugin_knn(plug: Path, name: str, out: Path) -> Path:
    """Write plugin file ``plug`` registering a kNN named ``name``, train it with ``adgan train`` into
    ``out`` (loaded through ADGAN_PLUGINS); returns the ``adgan`` command used."""
    plug.write_text("from adgan.models import register_detector\nfrom adgan.models.baselines import KNN\n\n\n"
                    f"@register_detector\nclass PluginKNN(KNN):\n    name = {name!r}\n")
    adgan = Path(sys.executable).parent / "adgan"
    train = subprocess.run([str(adgan), "train", "--model", name, "--dataset", "synthetic-tabular",
                            "--set", "max_train=64", "--out", str(out)],
                           env={**_env(), "ADGAN_PLUGINS": str(plug)}, capture_output=True, text=True,
                           timeout=300)
    assert train.returncode == 0, train.stderr[-2000:]
    return adgan


def test_a_saved_detector_of_a_plugin_says_which_plugin_loads_it(tmp_path: Path) -> None:
    """The checkpoint records the plugin its detector came from; a process without it is told to load
    that plugin, and with it (ADGAN_PLUGINS) scores."""
    import json

    import numpy as np

    plug = tmp_path / "savedplug.py"
    adgan = _train_plugin_knn(plug, "savedknn", tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt" / "checkpoint" / "detector.json").read_text())["plugin"] == str(plug)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32))
    cmd = [str(adgan), "score", "--checkpoint", str(tmp_path / "ckpt"), "--input", str(tmp_path / "x.npy")]
    run = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert (f"model 'savedknn' is not registered in this adgan (expected one of: anogan, egbad, ganomaly, "
            f"iforest, knn, ocsvm, pca); it was saved from the plugin {plug}: load that first "
            f"(ADGAN_PLUGINS={plug} for the adgan command)") in run.stderr
    run = subprocess.run(cmd, env={**_env(), "ADGAN_PLUGINS": str(plug)}, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and "wrote 5 scores" in run.stderr, run.stderr[-2000:]


def test_a_plugin_path_without_py_says_what_a_plugin_is(tmp_path: Path) -> None:
    (tmp_path / "mydets.py").write_text("")
    stem = tmp_path / "mydets"
    with pytest.raises(ConfigError, match=rf"plugin {stem}: a plugin is a module name or the path of a .py "
                                          rf"file \({stem}.py exists: name it so\)"):
        plugins.load(plugins.resolve([str(tmp_path / "mydets")]))


def test_a_plugin_failing_part_way_leaves_nothing_registered(tmp_path: Path) -> None:
    """Fixed and loaded again in the same process (a notebook), it registers its detector (was refused as
    "already registered" by the class its failed import left behind)."""
    from adgan.models import list_detectors

    plug = tmp_path / "partial.py"
    body = ("from adgan.models import register_detector\nfrom adgan.models.baselines import KNN\n\n\n"
            "@register_detector\nclass PartialKNN(KNN):\n    name = 'partialknn'\n\n\n")
    plug.write_text(body + "raise RuntimeError('half done')\n")
    with pytest.raises(ConfigError, match=r"RuntimeError: half done; at .*partial.py, line 10"):
        plugins.load([str(plug)])
    assert "partialknn" not in list_detectors()
    plug.write_text(body)
    plugins.load([str(plug)])
    assert "partialknn" in list_detectors()
    from adgan.models import DETECTORS

    DETECTORS.unregister("partialknn")


def test_one_plugin_reached_two_ways_registers_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """By its path in ADGAN_PLUGINS and by its module name in a spec: one detector, not a name clash."""
    from adgan.models import DETECTORS, list_detectors

    (tmp_path / "twoways.py").write_text(
        "from adgan.models import register_detector\nfrom adgan.models.baselines import KNN\n\n\n"
        "@register_detector\nclass TwoWaysKNN(KNN):\n    name = 'twowaysknn'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.load([str(tmp_path / "twoways.py")])
    plugins.load(["twoways"])
    assert list_detectors().count("twowaysknn") == 1
    (tmp_path / "other.py").write_text(  # another class under that name: still a clash
        "from adgan.models import register_detector\nfrom adgan.models.baselines import KNN\n\n\n"
        "@register_detector\nclass TwoWaysKNN(KNN):\n    name = 'twowaysknn'\n")
    with pytest.raises(ConfigError, match="already registered"):
        plugins.load([str(tmp_path / "other.py")])
    DETECTORS.unregister("twowaysknn")


def test_a_broken_plugin_stops_only_the_commands_that_need_plugins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from adgan.cli import main

    bad = tmp_path / "broken.py"
    bad.write_text("def f(:\n")
    monkeypatch.setenv(plugins.ENV, str(bad))
    assert main(["specs"]) == 0  # reading, listing: a warning, and on
    assert "adgan: warning: ADGAN_PLUGINS=" in capsys.readouterr().err
    train = ["train", "--model", "knn", "--dataset", "synthetic-tabular", "--out", str(tmp_path / "r")]
    assert main(train) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"adgan: error: ADGAN_PLUGINS='{bad}': plugin {bad}: importing it failed")


def test_an_exported_plugin_detector_carries_its_plugin_file(tmp_path: Path) -> None:
    """``adgan export`` of a sweep whose chosen detector comes from a plugin file copies that file into the
    export; where the original is gone (another machine), loading names the copy, and the copy scores."""
    import shutil

    import numpy as np
    from test_recommend import planted_sweep
    from test_report import write_tables

    from adgan.sweep.best import export

    plug = tmp_path / "src" / "shipplug.py"
    plug.parent.mkdir()
    adgan = _train_plugin_knn(plug, "shipknn", tmp_path / "run")
    root = tmp_path / "sweep"
    rows = planted_sweep(root)
    for r in rows["best"]:  # every group chose that plugin detector's checkpoint
        r["checkpoint"] = str(tmp_path / "run" / "checkpoint")
    write_tables(root, rows, ("best",))
    header = json.loads((tmp_path / "run" / "checkpoint" / "detector.json").read_text())
    assert header["plugin_sha256"] == hashlib.sha256(plug.read_bytes()).hexdigest()  # the code it ran
    (dest,) = export(root, tmp_path / "exported")
    bundled = dest / "plugin" / "shipplug.py"
    assert bundled.read_text() == plug.read_text()
    # The plugin edited since training: exported all the same (the user's call), and said.
    source = plug.read_text()
    plug.write_text(source + "\n# edited\n")
    with contextlib.redirect_stderr(io.StringIO()) as err:
        export(root, tmp_path / "exported")
    said = f"adgan: warning: {plug} changed since the detector exported to {dest} was trained"
    assert said in err.getvalue()
    edited_card = (dest / "MODEL_CARD.md").read_text()
    assert "**The copy is not the file the detector was trained with**" in edited_card
    plug.write_text(source)
    with contextlib.redirect_stderr(io.StringIO()) as err:
        export(root, tmp_path / "exported")
    assert "changed since" not in err.getvalue()
    card = (dest / "MODEL_CARD.md").read_text()
    assert f"a copy of the file is in `{bundled}`" in card and f"ADGAN_PLUGINS={bundled} adgan score" in card
    assert "not the file the detector was trained with" not in card

    shutil.rmtree(plug.parent)  # the plugin's source is not where it was trained
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32))
    cmd = [str(adgan), "score", "--checkpoint", str(dest), "--input", str(tmp_path / "x.npy")]
    run = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and f"load that first (ADGAN_PLUGINS={bundled} for the adgan command)" in \
        run.stderr, run.stderr[-2000:]
    run = subprocess.run(cmd, env={**_env(), "ADGAN_PLUGINS": str(bundled)}, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and "wrote 5 scores" in run.stderr, run.stderr[-2000:]
    assert "other plugin code" not in run.stderr, run.stderr[-2000:]
    # The copy edited (here: its scores negated): it loads and scores without error, so it is said.
    bundled.write_text(bundled.read_text() + "\n    def score(self, x):\n        return -super().score(x)\n")
    run = subprocess.run(cmd, env={**_env(), "ADGAN_PLUGINS": str(bundled)}, capture_output=True, text=True,
                         timeout=300)
    said = (f"adgan: warning: {dest / 'detector.json'}: the 'shipknn' detector was saved with other plugin "
            f"code (sha256 {header['plugin_sha256'][:12]}) than {bundled} loaded now")
    assert run.returncode == 0 and said in run.stderr, run.stderr[-2000:]


def test_the_contract_tests_run_on_a_plugin_named_in_adgan_plugins(tmp_path: Path) -> None:
    """docs/architecture.md: `ADGAN_PLUGINS=my_detectors.py pytest tests/test_detector_contract.py` runs the
    registry-parametrised contract tests on the plugin's detector (tests/conftest.py registers it before
    collection)."""
    plug = tmp_path / "contractplug.py"
    plug.write_text("from adgan.models import register_detector\nfrom adgan.models.baselines import KNN\n\n\n"
                    "@register_detector\nclass ContractKNN(KNN):\n    name = 'contractknn'\n")
    tests = Path(__file__).resolve().parent
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
           str(tests / "test_detector_contract.py")]
    with_plugin = subprocess.run(cmd, env={**_env(), "ADGAN_PLUGINS": str(plug)}, cwd=tests.parent,
                                 capture_output=True, text=True, timeout=300)
    assert with_plugin.returncode == 0, with_plugin.stdout[-2000:] + with_plugin.stderr[-2000:]
    assert "contractknn" in with_plugin.stdout, with_plugin.stdout[-2000:]
    without = subprocess.run(cmd, env=_env(), cwd=tests.parent, capture_output=True, text=True, timeout=300)
    assert without.returncode == 0 and "contractknn" not in without.stdout
