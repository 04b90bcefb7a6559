"""Sweeps: YAML specs, a Ray Tune runner with one Optuna search and one ASHA per group, Parquet results.

Ray reads ``RAY_AUTH_MODE`` when it is first imported, so token authentication is switched on here,
before any sweep module imports Ray (``adgan.sweep.runner.init_ray`` re-checks it).
"""

import os as _os

_os.environ.setdefault("RAY_AUTH_MODE", "token")
