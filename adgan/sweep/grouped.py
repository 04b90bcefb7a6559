"""A grouped searcher and a grouped scheduler: many independent searches inside one Ray Tune ``Tuner``.

A *group* is one (model, dataset, anomaly class, loss case, seed). AUPRC's chance level is the anomaly
share of a split, so trials of different groups must never be compared. Both classes route every call by
the trial's group to a per-group delegate: one Optuna TPE study (seeded per group) and one ASHA
(``AsyncHyperBandScheduler``) per group. All groups share the Tuner's single trial queue, so a cluster
stays busy across groups while each group's budget and rungs stay its own.

**The studies are persistent.** Every group's Optuna study lives in one Optuna journal file of the sweep
(``<results>/<sweep>/optuna.journal``, one study per group, named by the group id): ``optuna-dashboard
<results>/<sweep>/optuna.journal`` shows every group's history, importances and parallel coordinates while
the sweep runs and after. The searcher talks to Optuna through its ask-and-tell interface (not through
Ray's ``OptunaSearch``, whose save/restore pickles the whole study); a journal is append-only, so a
record costs the same however long the sweep has run, and it works on NFS, where SQLite's locking does not.

**What Tune saves is small and does not grow with finished groups.** Tune saves the searcher's state with
every experiment snapshot, and restores the searcher from it on ``--resume``. The studies are not in it
(they are in the journal): the state holds only the trials still running (their Optuna trial number,
best value so far and reported epochs), the suggestion counts of groups that still have trials to hand
out, the samplers of the (at most few) groups part-way through their suggestions, and the ASHA of groups
with trials in flight. A group whose last trial ended leaves the state. On restore the searcher reattaches
to the stored studies. Trials the journal recorded after the snapshot Tune restored are unknown to the
restored Tune: those still running when the driver died are marked failed (they never ran to an end and
will not continue), and those that finished (their rows are in the tables) count against their group's
budget, so a group never runs more trials than its budget and does not run them again; its sampler then
starts a new seeded stream (the saved one would propose those trials' values again).

Tune saves a searcher's state with the experiment but never a scheduler's (``Tuner.restore`` rebuilds
the scheduler from ``tuner.pkl`` as it was before the first trial), so the searcher carries the
scheduler's state in its own: both are pickled into ``tuner.pkl`` together and keep pointing at each other.

Private attributes of Ray and Optuna used here (checked by ``tests/test_sweep_internals.py`` against the
versions pinned in ``pyproject.toml``): ``AsyncHyperBandScheduler._trial_info`` (which trials an ASHA
knows, so that a restored trial keeps its bracket) and ``optuna.trial.Trial._trial_id`` (the storage id a
running trial is reattached by after a resume).
"""

from __future__ import annotations

import itertools
import math
import pickle
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from adgan.errors import ConfigError

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

GROUP_KEY = "_group"  # config key holding the group id of a trial; removed before training
OPTUNA_JOURNAL = "optuna.journal"  # the sweep's Optuna storage, in results/<sweep>/
STATE_VERSION = 2  # of GroupedSearcher.get_state (1: every group's OptunaSearch pickled)
TRIAL_ID_ATTR = "tune_trial_id"  # Optuna user attribute naming the Tune trial (= the Parquet trial_id)
_FINISHED = ("TERMINATED", "ERROR")  # Tune statuses of trials that will never report again


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
        # Trials ASHA stopped that have not ended yet (the searcher takes them out when they end, so the
        # set, saved with every experiment snapshot, does not grow with the sweep), and a plain count.
        self.stopped: set[str] = set()
        self.n_stopped = 0

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

    def _known(self, trial: Trial) -> AsyncHyperBandScheduler | None:
        """The ASHA of the trial's group if it still exists (a finished group's was forgotten)."""
        return self.groups.get(trial.config[GROUP_KEY])

    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        if getattr(trial, "status", None) in _FINISHED:
            return  # a finished trial re-added by Tuner.restore never reports again
        asha = self._asha(trial)
        if trial.trial_id not in asha._trial_info:  # a restored trial keeps its bracket
            asha.on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: TuneController, trial: Trial, result: dict) -> str:
        asha = self._asha(trial)
        if trial.trial_id not in asha._trial_info:
            asha.on_trial_add(tune_controller, trial)
        action = asha.on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and trial.trial_id not in self.stopped:
            self.stopped.add(trial.trial_id)
            self.n_stopped += 1
        return action

    def on_trial_complete(self, tune_controller: TuneController, trial: Trial, result: dict) -> None:
        asha = self._known(trial)
        if asha is not None and trial.trial_id in asha._trial_info:
            asha.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: TuneController, trial: Trial) -> None:
        asha = self._known(trial)
        if asha is not None:
            asha._trial_info.pop(trial.trial_id, None)

    def on_trial_error(self, tune_controller: TuneController, trial: Trial) -> None:
        self.on_trial_remove(tune_controller, trial)

    def forget_group(self, gid: str) -> None:
        """Drop a finished group's ASHA (its rungs matter to no trial any more)."""
        self.groups.pop(gid, None)

    def debug_string(self) -> str:
        return f"GroupedScheduler: {len(self.groups)} groups active, {self.n_stopped} trials stopped early"

    def get_state(self) -> bytes:
        return pickle.dumps({"groups": self.groups, "stopped": self.stopped, "n_stopped": self.n_stopped})

    def set_state(self, state: bytes) -> None:
        loaded = pickle.loads(state)
        self.groups, self.stopped = loaded["groups"], loaded["stopped"]
        self.n_stopped = loaded.get("n_stopped", len(self.stopped))


@dataclass
class _Live:
    """A trial the searcher handed out that has not ended: what Tune's snapshot must carry for it."""

    group: str
    number: int  # the Optuna trial number in the group's study
    storage_id: int  # Optuna's storage-wide trial id (reattaches the trial after a resume)
    best: float = -math.inf  # best metric reported so far (the trial's best epoch)
    reported: set[int] = field(default_factory=set)  # epochs recorded as Optuna intermediate values
    told: bool = False  # the study already holds its end (the journal ran ahead of Tune's snapshot)


def _all_settings(space: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """Every setting of a finite space (choices, integer ranges) when it has at most ``limit``, else none
    (and none for a space with a continuous range or nothing searched)."""
    import optuna.distributions as od

    axes: list[list[tuple[str, Any]]] = []
    for name, dist in space.items():
        if isinstance(dist, od.CategoricalDistribution):
            values = list(dict.fromkeys(dist.choices))
        elif isinstance(dist, od.IntDistribution):
            values = list(range(int(dist.low), int(dist.high) + 1, int(dist.step)))
        else:
            return []
        axes.append([(name, v) for v in values])
    if not axes or math.prod(len(a) for a in axes) > limit:
        return []
    return [dict(combo) for combo in itertools.product(*axes)]


def _setting_key(params: dict[str, Any]) -> str:
    return repr(sorted(params.items()))


MAX_ENUMERATED = 100_000  # settings of a discrete space listed to find one not yet tried


class GroupedSearcher(Searcher):
    """One seeded Optuna TPE study per group with a budget of trials each (see the module docstring).

    Suggestions fill groups in order (class-major), so groups finish one after another and their test
    evaluation and progress lines appear while the sweep runs.

    Args:
        groups: ``{group id: (base config, {param: optuna distribution}, trials budget)}`` in run order.
        metric, mode: What Optuna maximises (a trial's ``best_val_auprc``).
        seed: Base seed; each group's sampler is seeded with ``seed`` and a hash of its id.
        scheduler: The grouped scheduler whose state is saved and restored with this searcher's.
        storage: The Optuna journal file holding every group's study (``<results>/<sweep>/optuna.journal``);
            None keeps the studies in memory and pickles them whole into every saved state (tests and
            programs that need neither inspection nor a state that stays small).

    Raises:
        ConfigError: ``storage`` already holds studies (of an earlier sweep): a new sweep's studies
            would continue them.
    """

    def __init__(
        self,
        groups: dict[str, tuple[dict[str, Any], dict[str, Any], int]],
        metric: str,
        mode: str,
        seed: int,
        scheduler: GroupedScheduler | None = None,
        storage: str | Path | None = None,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.groups = groups
        self.seed = seed
        self.scheduler = scheduler
        self.storage_path = str(Path(storage).resolve()) if storage is not None else None
        journal = Path(self.storage_path) if self.storage_path is not None else None
        if journal is not None and journal.is_file() and journal.stat().st_size > 0:
            raise ConfigError(
                f"{journal} already holds Optuna studies (of an earlier sweep); a new sweep would "
                "continue them: remove the file, or continue that sweep with --resume"
            )
        self.suggested: dict[str, int] = dict.fromkeys(groups, 0)
        # Set by the runner before a resume: the trials with a row in the results. A trial that ended after
        # the snapshot counts against its budget only if its row was written; None (not known): the
        # snapshot's counts are kept, and such trials are run again.
        self.recorded: set[str] | None = None
        self.live: dict[str, _Live] = {}
        self._order = list(groups)
        self._next = 0  # groups before this index have handed out their whole budget
        self._init_runtime()

    def _init_runtime(self) -> None:
        """What is rebuilt, never pickled: the storage, the open studies and Optuna's trial handles."""
        self._storage: optuna.storages.BaseStorage | None = None
        self.studies: dict[str, optuna.Study] = {}
        self._trials: dict[str, optuna.Trial] = {}
        self._samplers: dict[str, optuna.samplers.BaseSampler] = {}  # restored, for studies not yet open

    def __getstate__(self) -> dict[str, Any]:
        # tuner.pkl pickles this searcher when the sweep starts; the studies are in the journal.
        state = self.__dict__.copy()
        for key in ("_storage", "studies", "_trials", "_samplers"):
            state.pop(key, None)
        if self.storage_path is None and self._storage is not None:
            state["_memory"] = self._storage  # no journal: the in-memory studies travel with the object
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        memory = state.pop("_memory", None)
        state.setdefault("recorded", None)
        self.__dict__.update(state)
        self._init_runtime()
        self._storage = memory

    # ----- Optuna -----
    @property
    def storage(self) -> optuna.storages.BaseStorage:
        """The Optuna storage of every group's study (opened on first use)."""
        if self._storage is None:
            if self.storage_path is None:
                self._storage = optuna.storages.InMemoryStorage()
            else:
                Path(self.storage_path).parent.mkdir(parents=True, exist_ok=True)
                self._storage = optuna.storages.JournalStorage(
                    optuna.storages.journal.JournalFileBackend(self.storage_path)
                )
        return self._storage

    def _study(self, gid: str) -> optuna.Study:
        """The group's study, created in (or reattached from) the storage on first use."""
        if gid not in self.studies:
            base, _, _ = self.groups[gid]
            seed = (self.seed * 1_000_003 + zlib.crc32(gid.encode())) % 2**31
            sampler = self._samplers.pop(gid, None) or optuna.samplers.TPESampler(seed=seed)
            study = optuna.create_study(
                storage=self.storage,
                sampler=sampler,
                pruner=optuna.pruners.NopPruner(),  # ASHA stops trials, not Optuna
                study_name=gid,
                direction="maximize" if self.mode == "max" else "minimize",
                load_if_exists=True,
            )
            if not study.user_attrs:  # a new study: say what it is, for the dashboard
                # A budget that covers a finite space: each setting once (a sampler left to draw from so
                # small a space repeats settings, TPE's random start-up draws k=2 twice out of {1, 2}, and
                # leaves others untried; SweepSpec.trials caps the budget there).
                for params in _all_settings(self.groups[gid][1], self.groups[gid][2]):
                    study.enqueue_trial(params)  # (asked before the sampler is: each setting once)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    study.set_metric_names([self.metric])
                study.set_user_attr(
                    "group",
                    {k: base.get(k) for k in ("model", "dataset", "anomaly_class", "loss_case", "seed")},
                )
            self.studies[gid] = study
        return self.studies[gid]

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # metric, mode and spaces are ours; Tune's param_space is empty

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        while self._next < len(self._order):
            gid = self._order[self._next]
            base, space, budget = self.groups[gid]
            if self.suggested[gid] >= budget:
                self._next += 1
                continue
            self.suggested[gid] += 1
            study = self._study(gid)
            trial = self._ask_new(gid, study, space or {})
            trial.set_user_attr(TRIAL_ID_ATTR, trial_id)
            self._trials[trial_id] = trial
            self.live[trial_id] = _Live(gid, trial.number, trial._trial_id)
            return {**base, **trial.params, GROUP_KEY: gid}
        return Searcher.FINISHED

    def _ask_new(self, gid: str, study: optuna.Study, space: dict[str, Any]) -> optuna.trial.Trial:
        """The study's next trial, never a setting the group already ran or runs: a group's trials share
        its data, seed and model, so a repeat would only give the same result again. Optuna's samplers
        repeat settings of a discrete space (its first trials are drawn at random, with replacement): such
        a repeat is failed in the study and replaced by a setting not yet tried, drawn with the group's
        seed. A continuous space, or one whose settings are all taken, keeps what the sampler gave."""
        trial = study.ask(fixed_distributions=space)
        if not space:
            return trial
        taken = {_setting_key(t.params) for t in study.get_trials(deepcopy=False)
                 if t.number != trial.number and t.state != optuna.trial.TrialState.FAIL}
        if _setting_key(trial.params) not in taken:
            return trial
        free = [c for c in _all_settings(space, MAX_ENUMERATED) if _setting_key(c) not in taken]
        if not free:
            return trial
        pick = free[(zlib.crc32(f"{self.seed}/{gid}/{trial.number}".encode())) % len(free)]
        study.tell(trial, state=optuna.trial.TrialState.FAIL)  # (a repeat, never run: not a result)
        study.enqueue_trial(pick)
        return study.ask(fixed_distributions=space)

    def _report(self, trial_id: str, rec: _Live, result: dict | None) -> None:
        """Record a result's metric: the trial's best so far and, per epoch, an intermediate value."""
        value = (result or {}).get(self.metric)
        if not isinstance(value, int | float) or not math.isfinite(value):
            return  # NaN until an epoch was scored
        rec.best = max(rec.best, float(value))
        epoch = (result or {}).get("epoch")
        if epoch is None or rec.told or int(epoch) in rec.reported:
            return
        # Optuna records intermediate values by step; our step is the epoch, not Tune's iteration (a
        # trial restarted after a resume reports its epochs again).
        rec.reported.add(int(epoch))
        self._trials[trial_id].report(float(value), int(epoch))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        rec = self.live.get(trial_id)
        if rec is not None:
            self._report(trial_id, rec, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        rec = self.live.pop(trial_id, None)
        if rec is None:
            return  # not ours, or already ended
        # Tune does not pass the result on which ASHA stopped a trial to ``on_trial_result``, only here.
        self._report(trial_id, rec, result)
        if not rec.told:
            trial = self._trials[trial_id]
            # How it ended, as trials.parquet says it: the trial's own summary travels with its last
            # result; a trial the scheduler stopped ended before its summary.
            status = "errored" if error else str((result or {}).get("status") or "stopped early")
            trial.set_user_attr("status", status)
            # Optuna is told the trial's best epoch (its checkpoint), also for trials ASHA stopped or that
            # diverged after some epochs; a trial with no scored epoch is a failure.
            study = self._study(rec.group)
            if math.isfinite(rec.best):
                study.tell(trial, rec.best, skip_if_finished=True)
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        self._trials.pop(trial_id, None)
        if self.scheduler is not None:
            self.scheduler.stopped.discard(trial_id)
        budget = self.groups[rec.group][2]
        if self.suggested[rec.group] >= budget and not any(r.group == rec.group for r in self.live.values()):
            # The group is finished: nothing of it needs saving or keeping open any more.
            self.studies.pop(rec.group, None)
            if self.scheduler is not None:
                self.scheduler.forget_group(rec.group)

    # ----- saved with every experiment snapshot -----
    def get_state(self) -> dict[str, Any]:
        """What a resume needs; its size depends on the trials in flight and the groups not yet finished
        handing out trials, not on the groups already done (see the module docstring)."""
        open_groups = {g: n for g, n in self.suggested.items() if n < self.groups[g][2]}
        return {
            "version": STATE_VERSION,
            "live": {
                tid: {
                    "group": r.group, "number": r.number, "storage_id": r.storage_id, "best": r.best,
                    "reported": sorted(r.reported), "told": r.told,
                }
                for tid, r in self.live.items()
            },
            "suggested": open_groups,
            # A group part-way through its suggestions continues its sampler's random stream, so that a
            # resumed sweep proposes what the uninterrupted one would have.
            "samplers": {
                g: pickle.dumps(self.studies[g].sampler)
                for g, n in open_groups.items() if n > 0 and g in self.studies
            },
            "memory": pickle.dumps(self._storage) if self.storage_path is None and self._storage else None,
            "scheduler": self.scheduler.get_state() if self.scheduler is not None else None,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`get_state` and reattach to the stored studies (see the module docstring).

        Raises:
            RuntimeError: The state was saved by an adgan whose searcher kept no Optuna storage.
        """
        if state.get("version") != STATE_VERSION:
            raise RuntimeError(
                "this sweep was started by an earlier adgan whose searcher state (every group's Optuna "
                "search pickled, no journal) this version cannot continue: finish it with that version, "
                "or start the sweep again"
            )
        if state.get("memory") is not None:
            self._storage = pickle.loads(state["memory"])
        self.suggested = {g: self.groups[g][2] for g in self.groups}
        self.suggested.update({g: n for g, n in state["suggested"].items() if g in self.groups})
        self._next = 0
        self._samplers = {g: pickle.loads(blob) for g, blob in state["samplers"].items()}
        self.live = {
            tid: _Live(r["group"], r["number"], r["storage_id"], r["best"], set(r["reported"]), r["told"])
            for tid, r in state["live"].items()
        }
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.set_state(state["scheduler"])
        # Reattach: the studies of groups with trials in flight or still to hand out trials, if stored.
        stored = {s.study_name for s in self.storage.get_all_studies()}
        for gid in sorted({r.group for r in self.live.values()} | set(state["suggested"])):
            if gid in stored:
                self._reattach(gid, open_at_snapshot=gid in state["suggested"])

    def _reattach(self, gid: str, open_at_snapshot: bool) -> None:
        """Reattach the group's live trials to their stored Optuna trials, and settle the trials stored
        after the snapshot Tune restored (module docstring). ``open_at_snapshot``: the group was still
        handing out trials then."""
        study = self._study(gid)
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        mine = {r.number: tid for tid, r in self.live.items() if r.group == gid}
        for number, tid in mine.items():
            rec, frozen = self.live[tid], by_number.get(number)
            if frozen is None:
                raise RuntimeError(f"{self.storage_path}: study {gid!r} has no trial {number} (trial {tid})")
            if frozen.state.is_finished():
                rec.told = True  # ended after the snapshot Tune restored: the study already has its value
            else:
                rec.reported |= set(frozen.intermediate_values)
                self._trials[tid] = optuna.trial.Trial(study, rec.storage_id)
        for number, frozen in by_number.items():
            if frozen.state == optuna.trial.TrialState.RUNNING and number not in mine:
                # Suggested after the snapshot Tune restored: it did not run to its end and will not.
                study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        if not open_at_snapshot or self.recorded is None:
            return
        # What the group has spent: its trials with a row in the results (finished, before or after the
        # snapshot, errored ones included) and those in flight. More than the snapshot's count means trials
        # ended after it, unknown to the restored Tune: they count, and are not proposed again.
        ids = {t.user_attrs.get(TRIAL_ID_ATTR) for t in by_number.values()}
        spent = len((ids & self.recorded) | set(mine.values()))
        if spent > self.suggested[gid]:
            self.suggested[gid] = min(self.groups[gid][2], spent)
            # The saved sampler would propose those trials' values again: a new stream, seeded from the
            # group and how many trials its study holds (the same after the same interruption).
            self.studies.pop(gid, None)
            self._samplers[gid] = optuna.samplers.TPESampler(
                seed=(self.seed * 1_000_003 + zlib.crc32(gid.encode()) + 7919 * len(by_number)) % 2**31
            )

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))


def open_studies(storage: str | Path) -> dict[str, optuna.Study]:
    """Every group's study in a sweep's Optuna journal (``<results>/<sweep>/optuna.journal``), by group id,
    for reading (``study.trials_dataframe()``, ``optuna.visualization``)."""
    path = Path(storage)
    if path.is_dir():
        path = path / OPTUNA_JOURNAL
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no Optuna journal (sweeps record one from this version on)")
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    return {
        s.study_name: optuna.load_study(study_name=s.study_name, storage=journal)
        for s in journal.get_all_studies()
    }
