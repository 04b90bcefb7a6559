"""Training continued from a saved ``training_state`` gives exactly what an uninterrupted run gives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from easy_data import images
from test_detector_contract import tiny as tiny_config

from adgan.errors import ConfigError, DataError
from adgan.models import DETECTORS, create_detector
from adgan.train import train

ITERATIVE = [n for n in DETECTORS.names() if DETECTORS.get(n).is_iterative]


def _tiny(name: str) -> dict:
    return {**tiny_config(name), "epochs": 4}


@pytest.mark.parametrize("name", ITERATIVE)
def test_resumed_fit_equals_uninterrupted(name: str, tmp_path: Path, one_torch_thread: None) -> None:
    x, _ = images(96, 0, seed=1)
    straight = create_detector(name, **_tiny(name)).fit(x, seed=3)

    first = create_detector(name, **_tiny(name))
    epochs = first.fit_epochs(x, seed=3)
    losses_first = [next(epochs), next(epochs)]
    torch.save(first.training_state(), tmp_path / "state.pt")
    del first, epochs
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["epoch"] == 2
    second = create_detector(name, **_tiny(name))
    losses_rest = list(second.fit_epochs(x, seed=3, resume=state))
    assert len(losses_first) + len(losses_rest) == 4
    probe = x[:16]
    np.testing.assert_array_equal(second.score(probe), straight.score(probe))


def test_train_resumes_a_run_and_ends_as_the_uninterrupted_one(
    tmp_path: Path, one_torch_thread: None
) -> None:
    """``train(save_state=True)`` stopped after two epochs, then ``train(resume=True)``: the same records."""
    config = {"model": "ganomaly", "dataset": "synthetic-images", "max_train": 128, "threads": 1,
              **_tiny("ganomaly")}
    full = list(train(config, out=tmp_path / "full"))
    part = tmp_path / "part"
    records = train(config, out=part, save_state=True)
    first = [next(records), next(records)]
    records.close()  # interrupted after epoch 2 (the state of epoch 2 is on disk)
    rest = list(train(config, out=part, resume=True))
    assert [r["epoch"] for r in first + rest[:-1]] == [1, 2, 3, 4]
    for a, b in zip(full[:-1], first + rest[:-1], strict=True):
        assert a["val_auprc"] == b["val_auprc"] and a["best_epoch"] == b["best_epoch"]
    assert rest[-1]["test_auprc"] == full[-1]["test_auprc"] and rest[-1]["status"] == "completed"
    logged = [json.loads(line) for line in (part / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in logged if r["kind"] == "epoch"] == [1, 2, 3, 4]
    # Another config is refused.
    with pytest.raises(ConfigError, match=r"another config \(lr .* -> 0\.01\); resume needs the same config"):
        next(train({**config, "lr": 0.01}, out=part, resume=True))
    # A damaged state file is named, not a traceback from torch's unpickler.
    (part / "train_state.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match=r"train_state.pt: not a readable training state \(UnpicklingError"):
        next(train(config, out=part, resume=True))
