"""A grouped searcher and a grouped scheduler: many independent searches inside one Ray Tune ``Tuner``.

A *group* is one (model, dataset, anomaly class, loss case, seed). AUPRC's chance level is the anomaly
share of a split, so trials of different groups must never be compared. Both classes route every call by
the trial's group to a per-group delegate: one Optuna TPE search (``OptunaSearch``, seeded per group) and
one ASHA (``AsyncHyperBandScheduler``) per group. All groups share the Tuner's single trial queue, so a
cluster stays busy across groups while each group's budget and rungs stay its own.

Tune saves a searcher's state with the experiment but never a scheduler's (``Tuner.restore`` rebuilds
the scheduler from ``tuner.pkl`` as it was before the first trial), so the searcher carries the
scheduler's state in its own: both are pickled into ``tuner.pkl`` together and keep pointing at each other.
"""

from __future__ import annotations

import pickle
import zlib
from typing import TYPE_CHECKING, Any

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

GROUP_KEY = "_group"  # config key holding the group id of a trial; removed before training


class GroupedScheduler(FIFOScheduler):
    """One ASHA per group (see the module docstring).

    Args:
        metric, mode: What ASHA compares (``best_val_auprc``, ``max``).
        time_attr: Progress counter reported by trials (``epoch``).
        max_t, grace_period, reduction_factor: ASHA's settings, the same for every group ...
        group_grace: ... except the grace periods given here by group id (a model's own grace period).
    """

    def __init__(
        self,
        metric: str,
        mode: str,
        time_attr: str,
        max_t: int,
        grace_period: int,
        reduction_factor: float,
        group_grace: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        self._metric, self._mode = metric, mode
        self._asha_args = {
            "time_attr": time_attr,
            "metric": metric,
            "mode": mode,
            "max_t": max_t,
            "grace_period": min(grace_period, max_t),
            "reduction_factor": reduction_factor,
        }
        self.group_grace = dict(group_grace or {})
        self.groups: dict[str, AsyncHyperBandScheduler] = {}
        self.stopped: set[str] = set()

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return (metric in (None, self._metric)) and (mode in (None, self._mode))

    def _asha(self, trial: Trial) -> AsyncHyperBandScheduler:
        gid = trial.config[GROUP_KEY]
        if gid not in self.groups:
            args = dict(self._asha_args)
            if gid in self.group_grace:
                args["grace_period"] = min(self.group_grace[gid], args["max_t"])
            self.groups[gid] = AsyncHyperBandScheduler(**args)
        return self.groups[gid]

    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        asha = self._asha(trial)
        if trial.trial_id not in asha._trial_info:  # a restored trial keeps its bracket
            asha.on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: TuneController, trial: Trial, result: dict) -> str:
        asha = self._asha(trial)
        if trial.trial_id not in asha._trial_info:
            asha.on_trial_add(tune_controller, trial)
        action = asha.on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP:
            self.stopped.add(trial.trial_id)
        return action

    def on_trial_complete(self, tune_controller: TuneController, trial: Trial, result: dict) -> None:
        asha = self._asha(trial)
        if trial.trial_id in asha._trial_info:
            asha.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: TuneController, trial: Trial) -> None:
        self._asha(trial)._trial_info.pop(trial.trial_id, None)

    def on_trial_error(self, tune_controller: TuneController, trial: Trial) -> None:
        self.on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return f"GroupedScheduler: {len(self.groups)} groups, {len(self.stopped)} trials stopped early"

    def get_state(self) -> bytes:
        return pickle.dumps({"groups": self.groups, "stopped": self.stopped})

    def set_state(self, state: bytes) -> None:
        loaded = pickle.loads(state)
        self.groups, self.stopped = loaded["groups"], loaded["stopped"]


class GroupedSearcher(Searcher):
    """One seeded Optuna TPE search per group with a budget of trials each.

    Suggestions fill groups in order (class-major), so groups finish one after another and their test
    evaluation and progress lines appear while the sweep runs.

    Args:
        groups: ``{group id: (base config, {param: optuna distribution}, trials budget)}`` in run order.
        metric, mode: What Optuna maximises (a trial's ``best_val_auprc``).
        seed: Base seed; each group's sampler is seeded with ``seed`` and a hash of its id.
        scheduler: The grouped scheduler whose state is saved and restored with this searcher's.
    """

    def __init__(
        self,
        groups: dict[str, tuple[dict[str, Any], dict[str, Any], int]],
        metric: str,
        mode: str,
        seed: int,
        scheduler: GroupedScheduler | None = None,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.groups = groups
        self.seed = seed
        self.scheduler = scheduler
        self.searches: dict[str, OptunaSearch] = {}
        self.trial_group: dict[str, str] = {}
        self.trial_params: dict[str, dict[str, Any]] = {}
        self.best: dict[str, float] = {}
        self.reported: dict[str, set[int]] = {}
        self.suggested: dict[str, int] = dict.fromkeys(groups, 0)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # metric, mode and spaces are ours; Tune's param_space is empty

    def _search(self, gid: str) -> OptunaSearch:
        if gid not in self.searches:
            _, space, _ = self.groups[gid]
            seed = (self.seed * 1_000_003 + zlib.crc32(gid.encode())) % 2**31
            self.searches[gid] = OptunaSearch(
                space=space or None, metric=self.metric, mode=self.mode, seed=seed, study_name=gid
            )
        return self.searches[gid]

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        for gid, (base, space, budget) in self.groups.items():
            if self.suggested[gid] < budget:
                self.suggested[gid] += 1
                params = self._search(gid).suggest(trial_id) if space else {}
                self.trial_group[trial_id] = gid
                self.trial_params[trial_id] = dict(params)
                return {**base, **params, GROUP_KEY: gid}
        return Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        gid = self.trial_group.get(trial_id)
        value = result.get(self.metric)
        if gid is None or value is None or "epoch" not in result:
            return
        self.best[trial_id] = max(self.best.get(trial_id, float("-inf")), float(value))
        step = int(result["epoch"])
        if self.groups[gid][1] and step not in self.reported.setdefault(trial_id, set()):
            # Optuna records intermediate values by step; our step is the epoch, not Tune's iteration
            # (a trial restarted after a resume reports its epochs again).
            self.reported[trial_id].add(step)
            self._search(gid)._ot_trials[trial_id].report(float(value), step)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        gid = self.trial_group.get(trial_id)
        if gid is None or not self.groups[gid][1]:
            return
        search = self._search(gid)
        if trial_id in search._completed_trials:
            return
        # Tell Optuna the trial's best epoch (its checkpoint), also for trials ASHA stopped or that
        # diverged after some epochs; a trial with no epoch at all is a failure.
        best = self.best.get(trial_id)
        search.on_trial_complete(
            trial_id, {self.metric: best} if best is not None else None, error=error or best is None
        )

    def get_state(self) -> dict[str, Any]:
        return {
            "searches": {g: pickle.dumps(s.__dict__) for g, s in self.searches.items()},
            "trial_group": self.trial_group,
            "trial_params": self.trial_params,
            "best": self.best,
            "reported": self.reported,
            "suggested": self.suggested,
            "scheduler": self.scheduler.get_state() if self.scheduler is not None else None,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        for gid, blob in state["searches"].items():
            search = self._search(gid)
            search.__dict__.update(pickle.loads(blob))
        self.trial_group, self.trial_params = state["trial_group"], state["trial_params"]
        self.best, self.reported = state["best"], state["reported"]
        self.suggested = {**self.suggested, **state["suggested"]}
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.set_state(state["scheduler"])

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))
