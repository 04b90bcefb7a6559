"""The keys of a run (``adgan.train.train``'s flat config) that are not a detector's hyperparameters,
with their defaults: their own module, so that the detector registry can keep hyperparameters off
these names without importing the training loop."""

from __future__ import annotations

import numbers
from typing import Any

# (a detector registered with a hyperparameter of one of these names is refused: adgan.models.base)
RUN_DEFAULTS: dict[str, Any] = {
    "model": None,  # registry name, required
    "dataset": None,  # registry name, required (a declared dataset's name: see dataset_decl)
    "dataset_decl": None,  # a user dataset's declaration (adgan.data.declared), registered in every process
    "anomaly_class": 0,  # index into the dataset's classes
    "seed": 0,  # seeds the split, the initialisation and the minibatch order
    "data_dir": None,  # explicit data directory (else ADGAN_DATA_DIR, cache, system copies)
    "image_size": None,  # 28 or 32; None = the model's preferred size
    "scale": None,  # tabular min-max scaling fitted on train; None = adgan.data.default_scale
    "max_train": None,  # seeded subsample of the training normals, for quick runs
    "device": "auto",  # "auto" = CUDA when present, else CPU
    "bf16": False,  # bfloat16 autocast on CPU or CUDA
    "threads": None,  # torch CPU threads; None = the CPUs this process may use
}


SEEDS = "a whole number in 0 .. 2**32 - 1"  # the seeds every detector's fit, the splits and a sweep take


def is_seed(value: Any) -> bool:
    """Whether ``value`` is a seed (``SEEDS``): numpy's generators and scikit-learn take no other."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= value < 2**32
