"""``gs://`` results end to end, on a GCS emulator on 127.0.0.1 (``gcp-storage-emulator``, from PyPI).

pyarrow's ``GcsFileSystem`` does not read Google's ``STORAGE_EMULATOR_HOST``; adgan does
(``adgan.sweep.storage``), so the sweep, its Ray trials and the readers reach the emulator through the same
variable as Google's own clients, with no URI options. The S3 tests (tests/test_s3_*.py) cover resume,
outages and a lost node; here the smoke sweep writes every table to ``gs://`` and ``adgan best``,
``export`` and ``score`` read them back.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_sweep import ROOT, _env

from adgan.sweep.results import read_table
from adgan.sweep.storage import location

pytestmark = pytest.mark.slow
BUCKET = "adgan-results"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``STORAGE_EMULATOR_HOST`` of an in-memory emulator holding the bucket ``BUCKET``."""
    exe = shutil.which("gcp-storage-emulator", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("gcp-storage-emulator is not installed (the dev extra installs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("gcs") / "emulator.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([exe, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory",
                                 f"--default-bucket={BUCKET}"], stdout=out, stderr=subprocess.STDOUT)
    host = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # until it accepts connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        yield host
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_smoke_sweep_on_gcs_and_its_readers(
    emulator: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)  # this process reads the bucket too
    env = _env(tmp_path) | {"STORAGE_EMULATOR_HOST": emulator, "ADGAN_HOME": str(tmp_path / "home")}
    root = f"gs://{BUCKET}/sweeps"

    def cli(*args: str) -> subprocess.CompletedProcess:
        run = subprocess.run([sys.executable, "-m", "adgan.cli", *args], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
        return run

    cli("sweep", str(ROOT / "sweeps" / "smoke.yaml"), "--results", root, "--cpus", "2", "--no-wandb")
    uri = f"{root}/smoke"
    objects = dict(location(uri).files())
    for name in ("epochs.parquet", "trials.parquet", "best.parquet", "runs.json", "optuna.journal"):
        assert objects.get(name, 0) > 0, (name, sorted(objects))
    trials, best = read_table(uri, "trials"), read_table(uri, "best")
    assert len(trials) == 8 and len(best) == 2
    assert all(t["checkpoint"].startswith(f"{uri}/tune/") for t in trials)

    assert "recommended detector per class" in cli("best", uri).stdout
    cli("export", uri, "--out", str(tmp_path / "exported"))
    (exported,) = (tmp_path / "exported").iterdir()
    from adgan.data.synthetic import synthetic_images

    x, _, _ = synthetic_images()
    np.save(tmp_path / "raw.npy", x[:10, 0])
    # adgan score from the exported detector's checkpoint URI and from the export itself: the same scores.
    chosen = json.loads((exported / "sweep_result.json").read_text())["checkpoint"]
    assert chosen.startswith(f"{uri}/tune/")
    scores = []
    for ckpt in (chosen, str(exported)):
        out = cli("score", "--checkpoint", ckpt, "--input", str(tmp_path / "raw.npy"), "--output", "-").stdout
        scores.append(np.loadtxt(out.splitlines()[1:]))
    assert scores[0].shape == (10,) and np.array_equal(scores[0], scores[1])
