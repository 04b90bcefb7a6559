"""Weights & Biases logging: one run per trial, offline unless the user set up W&B online.

The mode is decided once in the driver (:func:`wandb_mode`) and handed to the trials, because on a
cluster the trials' environment is not the driver's: ``WANDB_MODE`` when set; ``online`` when the user is
logged in (``WANDB_API_KEY`` or an ``api.wandb.ai`` entry in ``~/.netrc``, what ``wandb login`` writes);
otherwise ``offline``, which needs neither a network nor an account. Offline runs are synced later with
``wandb sync <results>/<sweep>/wandb/offline-run-*`` (see docs/sweeps.md).
"""

from __future__ import annotations

import math
import netrc
import os
from collections.abc import Mapping
from typing import Any


def wandb_mode() -> str:
    """``online``, ``offline`` or ``disabled`` (see the module docstring)."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        auth = netrc.netrc().authenticators("api.wandb.ai")
    except (OSError, netrc.NetrcParseError):
        auth = None
    return "online" if auth else "offline"


class TrialRun:
    """The W&B run of one trial (``group = <sweep>/<group id>``, ``name = <trial id>``).

    Args:
        project: W&B project.
        directory: Parent of the ``wandb/`` folder (the sweep's results directory).
        mode: ``online`` / ``offline`` / ``disabled``.
        sweep, group_id, trial_id: Naming of the run.
        config: Logged as the run's config (the full trial config).
    """

    def __init__(
        self,
        project: str,
        directory: str,
        mode: str,
        sweep: str,
        group_id: str,
        trial_id: str,
        config: Mapping[str, Any],
    ) -> None:
        import wandb

        os.makedirs(directory, exist_ok=True)
        self.run = wandb.init(
            project=project,
            dir=directory,
            mode=mode,
            group=f"{sweep}/{group_id}",
            name=trial_id,
            job_type="trial",
            config={**config, "trial_id": trial_id, "group_id": group_id},
            reinit="finish_previous",  # trial actors are reused: a stray run of a previous trial is closed
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=True, save_code=False),
        )

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Log the numeric entries of ``metrics`` at ``step`` (the epoch)."""
        clean = {
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        }
        self.run.log(clean, step=step)

    def finish(self, summary: Mapping[str, Any] | None = None, exit_code: int = 0) -> None:
        if summary:
            for k, v in summary.items():
                if isinstance(v, int | float | str | bool):
                    self.run.summary[k] = v
        self.run.finish(exit_code=exit_code)
        # Stop W&B's background service now: Ray ends a reused trial worker by killing its child
        # processes first, and W&B's exit hook would then fail loudly on the lost connection (~0.3 s more
        # for the next trial's start).
        import wandb

        wandb.teardown()
