"""``adgan score`` on damaged files: one line naming the file, exit status 2, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from adgan.cli import main
from adgan.train import train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("knn")
    for _ in train({"model": "knn", "dataset": "synthetic-images", "max_train": 64, "k": 3}, out=out):
        pass
    return out / "checkpoint"


def _one_line_error(capsys: pytest.CaptureFixture[str], args: list[str], names: Path) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("adgan: error: "), err
    assert str(names) in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("text", ["hello text\n", "t", "]"], ids=["KeyError", "IndexError", "EOFError"])
def test_a_text_file_as_state_pt(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    """torch's weights-only unpickler fails on a text file with whatever its bytes spell (KeyError for
    ``hello text``, IndexError, EOFError): each is a one-line error naming ``state.pt``."""
    damaged = tmp_path / "ckpt"
    shutil.copytree(checkpoint, damaged)
    (damaged / "state.pt").write_text(text)
    images = tmp_path / "x.npy"
    np.save(images, np.zeros((3, 28, 28), dtype=np.uint8))
    err = _one_line_error(capsys, ["score", "--checkpoint", str(damaged), "--input", str(images)],
                          damaged / "state.pt")
    assert "not a readable knn state" in err


def test_an_empty_npy(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    _one_line_error(capsys, ["score", "--checkpoint", str(checkpoint), "--input", str(empty)], empty)
