"""Plugins: a user's own detectors (and datasets) registered by importing their module, in every process.

A plugin is a Python module whose import registers something, e.g. a file ``my_gan.py`` holding a
``@register_detector`` class. It is named by its module name (``mypkg.detectors``, importable where it
runs) or by the path of its ``.py`` file. Where plugins come from:

- ``ADGAN_PLUGINS``: names or paths separated by ``os.pathsep``, loaded by every ``adgan`` command;
- a sweep spec's ``plugins:`` list (paths relative to the spec file), loaded by the driver before the spec is
  checked and by every trial before it trains (a Ray worker is another process: it registers nothing by
  itself), so a detector of one's own is swept, reported and exported like the built-in ones.

A path must exist at the same place on every node of a cluster (as the data does).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from adgan.errors import ConfigError

ENV = "ADGAN_PLUGINS"
MODULE_PREFIX = "adgan_plugin_"  # module name of a plugin loaded from a file


def resolve(items: Iterable[str], base: str | os.PathLike[str] | None = None) -> list[str]:
    """Plugin names as given, with ``.py`` paths made absolute (relative ones against ``base``)."""
    out = []
    for item in items:
        if item.endswith(".py") or os.sep in item or "/" in item:
            path = Path(item).expanduser()
            if not path.is_absolute() and base is not None:
                path = Path(base) / path
            out.append(str(path.resolve()))
        else:
            out.append(item)
    return out


def load(items: Iterable[str]) -> None:
    """Import every plugin once per process (``resolve``d names or paths).

    Raises:
        ConfigError: A plugin that cannot be found or fails to import, naming it and the error.
    """
    for item in items:
        if item.endswith(".py"):
            _load_file(Path(item))
            continue
        if os.sep in item or "/" in item:  # a path (resolve made it absolute) that is not a .py file
            hint = f" ({item}.py exists: name it so)" if Path(item + ".py").is_file() else ""
            raise ConfigError(f"plugin {item}: a plugin is a module name or the path of a .py file{hint}")
        _importable_from_cwd()
        try:
            importlib.import_module(item)
        except Exception as exc:  # noqa: BLE001 (any error of the user's module, reported by name)
            _forget(item)
            raise ConfigError(f"plugin {item!r}: cannot import it ({type(exc).__name__}: {exc}"
                              f"{_where(exc, _origin(item))})") from None


def _forget(module: str) -> None:
    """Unregister the detectors a plugin that failed part-way registered: fixed and loaded again (in a
    notebook), it would otherwise be refused as registering names already taken, by its own stale classes."""
    from adgan.models import DETECTORS

    for name in DETECTORS.names():
        owner = DETECTORS.get(name).__module__
        if owner == module or owner.startswith(module + "."):
            DETECTORS.unregister(name)


def _importable_from_cwd() -> None:
    """A module plugin in the working directory is found whatever started this process: ``python -m``
    puts that directory on the path, the ``adgan`` console script does not. Appended, so that an installed
    module of the same name still wins (as in a sweep's trials, ``adgan.sweep.trial``)."""
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.append(cwd)


def _origin(module: str) -> Path | None:
    """The file of a module plugin, when it can be found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except Exception:  # noqa: BLE001 (a parent package that fails to import: no file to name)
        return None
    return Path(spec.origin) if spec is not None and spec.origin else None


def _where(exc: BaseException, path: Path | None) -> str:
    """``; at <file>, line N``: the deepest line of the plugin's file ``path`` in the traceback of a failed
    import (where the user's code raised, or called what raised), or ``""``."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if path is not None and Path(f.filename) == path]
    return f"; at {frames[-1].filename}, line {frames[-1].lineno}" if frames else ""


def _load_file(path: Path) -> None:
    # One module per file, named after its path, so that importing it twice (driver and a worker reusing
    # the process, or two specs naming it) registers its classes once.
    name = MODULE_PREFIX + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        return
    if not path.is_file():
        raise ConfigError(f"plugin {path}: no such file (a plugin is a module name or a .py file)")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001
        del sys.modules[name]
        _forget(name)
        where = "" if isinstance(exc, SyntaxError) else _where(exc, path)  # (a SyntaxError names its line)
        raise ConfigError(f"plugin {path}: importing it failed ({type(exc).__name__}: {exc}{where})") \
            from None


def fingerprints(items: Iterable[str]) -> dict[str, str]:
    """sha256 of each plugin's source file (a ``.py`` path, or the file of a module plugin where it is
    found), by the plugin's name as given; plugins without a file are left out."""
    out = {}
    for item in items:
        path = Path(item) if item.endswith(".py") else _origin(item)
        if path is not None and path.is_file():
            out[item] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def from_env() -> list[str]:
    """The plugins of ``ADGAN_PLUGINS`` (resolved against the working directory)."""
    raw = os.environ.get(ENV, "")
    return resolve([p for p in raw.split(os.pathsep) if p.strip()], Path.cwd())


def load_env() -> None:
    """Load the plugins of ``ADGAN_PLUGINS``.

    Raises:
        ConfigError: As ``load``, its message saying the plugin came from the variable.
    """
    try:
        load(from_env())
    except ConfigError as exc:
        raise ConfigError(f"{ENV}={os.environ.get(ENV, '')!r}: {exc}") from None
