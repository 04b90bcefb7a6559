"""Shared fixtures: an isolated data environment, fake dataset files, and the real shared data folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from s3server import S3Server, aws_env

from adgan.data.fakes import make_fake_data_dir

# ../shared/data beside the repository root (holds the real KDD99 10% file where available).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
KDD_REAL = SHARED_DATA / "kddcup.data_10_percent.gz"

if os.environ.get("ADGAN_PLUGINS"):
    # `ADGAN_PLUGINS=my_detectors.py pytest tests/test_detector_contract.py`: a plugin's detectors are
    # registered before the tests are collected, so the registry-parametrised contract tests run on them.
    # (Set in a shell for the whole suite, every registry-parametrised test runs on them too; `make test`
    # runs as the shell has it, so unset it there for the suite as CI runs it.)
    from adgan import plugins

    plugins.load_env()

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several workers share the cores: each trains with one thread, since a multi-thread OpenMP team on a
    # shared core waits at every barrier for its descheduled half (see one_torch_thread).
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_data_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read the user's cache or ADGAN_DATA_DIR, and never download."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
    monkeypatch.delenv("ADGAN_DATA_DIR", raising=False)
    monkeypatch.setenv("ADGAN_OFFLINE", "1")


@pytest.fixture(scope="session")
def fake_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data_dir with small fake mnist/, fashion-mnist/, cifar10/ and kdd99/ files in the real formats."""
    return make_fake_data_dir(tmp_path_factory.mktemp("fake-data"))


@pytest.fixture(scope="session")
def kdd_real_path() -> Path:
    """The real KDD99 10% file, or skip."""
    if not KDD_REAL.is_file():
        pytest.skip(f"real KDD99 file not present at {KDD_REAL}")
    return KDD_REAL


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """An S3-compatible store on 127.0.0.1 (tests/s3server.py), one per test module; this process reads it."""
    with S3Server() as server, aws_env(server.env):
        yield server


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny networks gain nothing from two threads, and on a loaded machine a two-thread OpenMP team
    waits at every barrier for its descheduled half (measured: over 10x slower wall time)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files of slow tests first (each keeps its order): pytest-xdist hands out test files in this
    order, and a long file handed out last would run on alone while the other workers idle."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
