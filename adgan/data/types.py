"""Plain containers shared by the data layer, the detectors and the sweeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Split:
    """One part of a dataset.

    Attributes:
        x: float32 array, (N, C, H, W) for images scaled to [-1, 1], (N, D) for tabular data.
        y: int64 array (N,), 1 = anomaly, 0 = normal.
    """

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def anomaly_share(self) -> float:
        return float(self.y.mean()) if len(self) else 0.0


@dataclass(frozen=True)
class DatasetInfo:
    """What produced a set of splits, recorded with every result row and checkpoint.

    Attributes:
        name: Registry name, e.g. ``"mnist-5k"``.
        anomaly_class: Index of the anomalous class in ``classes``.
        classes: Class names of the dataset (KDD99 has one: ``"normal."``).
        seed: Seed of the split.
        protocol: Name of the split protocol.
        source: Where the data came from (paths or package), one line.
        sha256: sha256 of the source file(s), ``;``-joined.
        n_samples: Number of samples read from the source before splitting.
        kind: ``"image"`` or ``"tabular"``.
        input_shape: Shape of one sample, (C, H, W) or (D,).
        preprocessing: Facts needed to prepare new raw input the same way (JSON-serialisable).
    """

    name: str
    anomaly_class: int
    classes: tuple[str, ...]
    seed: int
    protocol: str
    source: str
    sha256: str
    n_samples: int
    kind: str
    input_shape: tuple[int, ...]
    preprocessing: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "anomaly_class": self.anomaly_class, "classes": list(self.classes),
            "seed": self.seed, "protocol": self.protocol, "source": self.source, "sha256": self.sha256,
            "n_samples": self.n_samples, "kind": self.kind, "input_shape": list(self.input_shape),
            "preprocessing": dict(self.preprocessing),
        }


@dataclass(frozen=True)
class Splits:
    """Train (normals only), validation and test splits with their provenance."""

    train: Split
    val: Split
    test: Split
    info: DatasetInfo
