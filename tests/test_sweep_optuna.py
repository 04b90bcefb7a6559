"""The grouped searcher's Optuna studies: one journal per sweep, one study per group, a saved state that
does not grow with finished groups, and a resume that reattaches to the stored studies (no Ray needed)."""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState
from ray.tune.search import Searcher

from adgan.errors import ConfigError
from adgan.sweep.grouped import (
    GROUP_KEY,
    OPTUNA_JOURNAL,
    TRIAL_ID_ATTR,
    GroupedScheduler,
    GroupedSearcher,
    open_studies,
)

SPACE = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "k": IntDistribution(1, 20)}
METRIC = "best_val_auprc"


def _groups(n: int, budget: int = 2, space: dict | None = SPACE) -> dict[str, tuple[dict, dict, int]]:
    return {f"g{i:04d}": ({"model": "m", "anomaly_class": i}, space or {}, budget) for i in range(n)}


def _searcher(groups: dict, journal: Path | None) -> GroupedSearcher:
    sched = GroupedScheduler(METRIC, "max", "epoch", 3, 1, 2)
    return GroupedSearcher(groups, METRIC, "max", seed=0, scheduler=sched, storage=journal)


def _epoch(s: GroupedSearcher, tid: str, config: dict, epoch: int, value: float) -> str:
    """One epoch result through the scheduler (as Tune does) and, unless ASHA stops it, the searcher."""
    assert s.scheduler is not None
    trial = SimpleNamespace(trial_id=tid, config=config, status="RUNNING")
    result = {"epoch": epoch, METRIC: value}
    action = s.scheduler.on_trial_result(None, trial, result)  # type: ignore[arg-type]
    if action != "STOP":  # Tune tells the searcher only of results the scheduler lets through
        s.on_trial_result(tid, result)
    return action


def _complete(s: GroupedSearcher, tid: str, config: dict, last: dict | None) -> None:
    assert s.scheduler is not None
    trial = SimpleNamespace(trial_id=tid, config=config, status="RUNNING")
    s.scheduler.on_trial_complete(None, trial, last or {})  # type: ignore[arg-type]
    s.on_trial_complete(tid, last)


def test_every_group_has_a_study_in_one_journal(tmp_path: Path) -> None:
    journal = tmp_path / OPTUNA_JOURNAL
    groups = {**_groups(2, budget=3), "baseline": ({"model": "knn", "anomaly_class": 0}, {}, 1)}
    s = _searcher(groups, journal)
    configs = {f"t{i}": s.suggest(f"t{i}") for i in range(7)}
    assert s.suggest("t7") == Searcher.FINISHED
    assert [c[GROUP_KEY] for c in configs.values()] == ["g0000"] * 3 + ["g0001"] * 3 + ["baseline"]
    assert len({c["lr"] for c in list(configs.values())[:6]}) == 6
    assert "lr" not in configs["t6"]  # a model with nothing to search: one trial, no parameters
    values = {}
    for i, (tid, cfg) in enumerate(configs.items()):
        _epoch(s, tid, cfg, 1, 0.1 + 0.01 * i)
        if tid != "t6":
            _epoch(s, tid, cfg, 2, 0.5 + 0.01 * i)
        values[tid] = 0.5 + 0.01 * i if tid != "t6" else 0.1 + 0.01 * i
        # Tune hands the last result to on_trial_complete; a lower "best" there changes nothing.
        _complete(s, tid, cfg, {METRIC: 0.0})

    studies = open_studies(tmp_path)  # the results directory (or the journal file itself)
    assert set(studies) == {"g0000", "g0001", "baseline"}
    for gid, study in studies.items():
        assert study.user_attrs["group"]["model"] in ("m", "knn") and study.metric_names == [METRIC]
        for t in study.trials:
            tid = t.user_attrs[TRIAL_ID_ATTR]
            assert configs[tid][GROUP_KEY] == gid
            assert t.state == TrialState.COMPLETE and t.value == pytest.approx(values[tid])
            assert {k: configs[tid][k] for k in t.params} == t.params
    assert studies["g0000"].trials[0].intermediate_values == {1: pytest.approx(0.1), 2: pytest.approx(0.5)}
    # Finished groups are closed: nothing of them stays open in the searcher or in ASHA.
    assert s.live == {} and s.studies == {} and s.scheduler is not None and s.scheduler.groups == {}


def test_a_trial_stopped_by_asha_is_told_its_best_epoch_including_the_stopping_one(tmp_path: Path) -> None:
    """Tune does not pass the result on which ASHA stops a trial to the searcher's ``on_trial_result``,
    only to ``on_trial_complete``: that epoch counts too."""
    s = _searcher(_groups(1, budget=2), tmp_path / OPTUNA_JOURNAL)
    a, b = s.suggest("a"), s.suggest("b")
    assert a is not None and b is not None
    _epoch(s, "a", a, 1, 0.9)
    assert _epoch(s, "b", b, 1, 0.5) == "STOP"  # ASHA (grace 1, rf 2) stops the worse one at its rung
    _complete(s, "b", b, {"epoch": 1, METRIC: 0.5})
    _complete(s, "a", a, {"epoch": 1, METRIC: 0.9})
    (study,) = open_studies(tmp_path / OPTUNA_JOURNAL).values()
    b_trial = next(t for t in study.trials if t.user_attrs[TRIAL_ID_ATTR] == "b")
    assert b_trial.value == 0.5 and b_trial.intermediate_values == {1: 0.5}
    assert b_trial.user_attrs["status"] == "stopped early"


def test_a_trial_without_a_scored_epoch_fails(tmp_path: Path) -> None:
    s = _searcher(_groups(1, budget=1), tmp_path / OPTUNA_JOURNAL)
    cfg = s.suggest("t0")
    assert cfg is not None
    s.on_trial_result("t0", {"epoch": 1, METRIC: float("nan")})
    _complete(s, "t0", cfg, None)
    (study,) = open_studies(tmp_path).values()
    assert study.trials[0].state == TrialState.FAIL


def test_saved_state_does_not_grow_with_finished_groups(tmp_path: Path) -> None:
    """Issue 16: Tune saves the searcher's state at every experiment snapshot; with every group's study
    pickled into it, the saving cost grew with the sweep."""
    s = _searcher(_groups(120, budget=2), tmp_path / OPTUNA_JOURNAL)
    sizes = {}
    for done in range(120):
        configs = {f"t{done}-{j}": s.suggest(f"t{done}-{j}") for j in range(2)}
        for tid, cfg in configs.items():
            for epoch in (1, 2, 3):
                if _epoch(s, tid, cfg, epoch, 0.3 + 0.1 * epoch) == "STOP":
                    break
            _complete(s, tid, cfg, {METRIC: 0.6})
        if done + 1 in (10, 110):
            sizes[done + 1] = len(pickle.dumps(s.get_state()))
    # What remains is about the groups still to run: 110 groups finished save less than 10 did.
    assert sizes[110] < sizes[10] < 8_000, sizes
    assert s.scheduler is not None and s.scheduler.groups == {} and s.scheduler.stopped == set()
    assert s.scheduler.n_stopped > 0  # the count of stopped trials survives as a number


def test_a_fresh_sweep_refuses_a_journal_that_holds_studies(tmp_path: Path) -> None:
    journal = tmp_path / OPTUNA_JOURNAL
    s = _searcher(_groups(1), journal)
    s.suggest("t0")
    with pytest.raises(ConfigError, match="already holds Optuna studies"):
        _searcher(_groups(1), journal)


def test_resume_reattaches_to_the_studies(tmp_path: Path) -> None:
    """Tune restores the searcher from ``tuner.pkl`` (pickled before the first trial) and the state of
    its last experiment snapshot; the journal may have run ahead of that snapshot."""
    journal = tmp_path / OPTUNA_JOURNAL
    groups = _groups(2, budget=4)
    s1 = _searcher(groups, journal)
    tuner_pkl = pickle.dumps(s1)  # as Tune pickles it when the sweep starts
    cfg = {t: s1.suggest(t) for t in ("t0", "t1", "t2")}
    _epoch(s1, "t0", cfg["t0"], 1, 0.4)
    _epoch(s1, "t1", cfg["t1"], 1, 0.5)
    snapshot = pickle.loads(pickle.dumps(s1.get_state()))  # Tune's last experiment snapshot
    # After the snapshot, before the driver died: t0 ended, t1 reported epoch 2, t3 was suggested.
    _epoch(s1, "t0", cfg["t0"], 2, 0.6)
    _complete(s1, "t0", cfg["t0"], {"epoch": 2, METRIC: 0.6})
    _epoch(s1, "t1", cfg["t1"], 2, 0.7)
    orphan = s1.suggest("t3")
    assert orphan is not None and orphan[GROUP_KEY] == "g0000"

    s2: GroupedSearcher = pickle.loads(tuner_pkl)  # a new driver process
    assert s2.live == {} and s2.studies == {}
    s2.set_state(snapshot)
    # Tune reruns t0, t1 and t2 from their checkpoints (epochs 1, 1 and none) and suggests one more.
    _epoch(s2, "t0", cfg["t0"], 2, 0.6)
    _complete(s2, "t0", cfg["t0"], {"epoch": 2, METRIC: 0.6})
    _epoch(s2, "t1", cfg["t1"], 2, 0.7)  # already in the journal: not recorded twice
    _epoch(s2, "t1", cfg["t1"], 3, 0.8)
    _complete(s2, "t1", cfg["t1"], {"epoch": 3, METRIC: 0.8})
    _epoch(s2, "t2", cfg["t2"], 1, 0.3)
    _complete(s2, "t2", cfg["t2"], {"epoch": 1, METRIC: 0.3})  # (Tune passes the last result)
    again = s2.suggest("t4")
    assert again is not None and again[GROUP_KEY] == "g0000"
    # The sampler continued from the snapshot: it proposes what it had proposed to the lost suggestion.
    assert {k: again[k] for k in SPACE} == {k: orphan[k] for k in SPACE}
    _epoch(s2, "t4", again, 1, 0.2)
    _complete(s2, "t4", again, {"epoch": 1, METRIC: 0.2})
    assert s2.suggest("t5")[GROUP_KEY] == "g0001"  # type: ignore[index]

    trials = {t.user_attrs[TRIAL_ID_ATTR]: t for t in open_studies(journal)["g0000"].trials}
    assert trials["t3"].state == TrialState.FAIL  # suggested after the snapshot, never run
    done = {tid: t for tid, t in trials.items() if t.state == TrialState.COMPLETE}
    assert sorted(done) == ["t0", "t1", "t2", "t4"] and len(done) == groups["g0000"][2]
    assert {tid: t.value for tid, t in done.items()} == pytest.approx({"t0": 0.6, "t1": 0.8, "t2": 0.3,
                                                                       "t4": 0.2})
    assert done["t1"].intermediate_values == pytest.approx({1: 0.5, 2: 0.7, 3: 0.8})
    assert not [t for t in trials.values() if t.state == TrialState.RUNNING]


def test_a_trial_that_finished_after_the_snapshot_counts_against_the_budget(tmp_path: Path) -> None:
    """Trials suggested and ended after Tune's last snapshot (their rows are in the tables: completed or
    errored) are unknown to the restored Tune: they count against their group's budget, and their values
    are not proposed again; a trial in flight at the kill is replaced."""
    journal = tmp_path / OPTUNA_JOURNAL
    groups = _groups(1, budget=4)
    s1 = _searcher(groups, journal)
    tuner_pkl = pickle.dumps(s1)
    cfg = {"t0": s1.suggest("t0")}
    _epoch(s1, "t0", cfg["t0"], 1, 0.4)
    _complete(s1, "t0", cfg["t0"], {"epoch": 1, METRIC: 0.4})
    snapshot = pickle.loads(pickle.dumps(s1.get_state()))
    # After the snapshot: t1 finished, t2 errored before scoring an epoch (both have rows), t3 in flight.
    cfg["t1"] = s1.suggest("t1")
    _epoch(s1, "t1", cfg["t1"], 1, 0.9)
    _complete(s1, "t1", cfg["t1"], {"epoch": 1, METRIC: 0.9})
    cfg["t2"] = s1.suggest("t2")
    _complete(s1, "t2", cfg["t2"], None)
    cfg["t3"] = s1.suggest("t3")
    _epoch(s1, "t3", cfg["t3"], 1, 0.1)

    lost = pickle.loads(tuner_pkl)
    lost.recorded = {"t0"}  # rows of t1 and t2 not written before the kill: lost, they do not count
    lost.set_state(pickle.loads(pickle.dumps(snapshot)))
    assert lost.suggested["g0000"] == 1
    s2: GroupedSearcher = pickle.loads(tuner_pkl)
    s2.recorded = {"t0", "t1", "t2"}  # (as the runner sets it from the trials table before a resume)
    s2.set_state(snapshot)
    assert s2.suggested["g0000"] == 3
    last = s2.suggest("t4")  # the one trial the budget has left, in t3's place
    assert last is not None and {k: last[k] for k in SPACE} != {k: cfg["t1"][k] for k in SPACE}
    _epoch(s2, "t4", last, 1, 0.5)
    state_while_t4_runs = pickle.loads(pickle.dumps(s2.get_state()))
    _complete(s2, "t4", last, {"epoch": 1, METRIC: 0.5})
    assert s2.suggest("t5") is Searcher.FINISHED
    trials = {t.user_attrs[TRIAL_ID_ATTR]: t for t in open_studies(journal)["g0000"].trials}
    assert {tid for tid, t in trials.items() if t.state == TrialState.COMPLETE} == {"t0", "t1", "t4"}
    assert trials["t2"].state == trials["t3"].state == TrialState.FAIL
    # Killed again while t4 ran (it finished after that snapshot): t4 is continued, nothing is counted twice.
    s3: GroupedSearcher = pickle.loads(tuner_pkl)
    s3.recorded = {"t0", "t1", "t2", "t4"}
    s3.set_state(state_while_t4_runs)
    assert s3.suggested["g0000"] == 4 and s3.live["t4"].told
    assert s3.suggest("t6") is Searcher.FINISHED


def test_a_state_of_the_old_format_is_refused_with_a_message(tmp_path: Path) -> None:
    s = _searcher(_groups(1), tmp_path / OPTUNA_JOURNAL)
    with pytest.raises(RuntimeError, match="earlier adgan"):
        s.set_state({"searches": {}, "trial_group": {}, "suggested": {}})


def test_without_a_journal_the_studies_travel_in_the_state() -> None:
    s = _searcher(_groups(1, budget=2), None)
    tuner_pkl = pickle.dumps(s)
    cfg = s.suggest("t0")
    assert cfg is not None
    _epoch(s, "t0", cfg, 1, 0.7)
    _complete(s, "t0", cfg, None)
    s2: GroupedSearcher = pickle.loads(tuner_pkl)
    s2.set_state(s.get_state())
    study: Any = optuna.load_study(study_name="g0000", storage=s2.storage)
    assert [t.value for t in study.trials] == [0.7]
    assert s2.suggest("t1") is not None and s2.suggest("t2") == Searcher.FINISHED


def test_a_space_the_budget_covers_is_tried_setting_by_setting(tmp_path: Path) -> None:
    """k in 1..2 with 2 trials, a choice of 3 with 3: each setting exactly once (TPE's random start-up
    alone drew repeats); a space larger than the budget is left to the sampler."""
    from optuna.distributions import CategoricalDistribution

    groups = {
        "small": ({"model": "knn", "anomaly_class": 0}, {"k": IntDistribution(1, 2)}, 2),
        "grid": ({"model": "m", "anomaly_class": 1},
                 {"k": IntDistribution(1, 5, step=4), "c": CategoricalDistribution(["a", "b", "a"])}, 4),
        "large": ({"model": "knn", "anomaly_class": 2}, {"k": IntDistribution(1, 20)}, 3),
    }
    s = _searcher(groups, tmp_path / OPTUNA_JOURNAL)
    configs = [s.suggest(f"t{i}") for i in range(10)]
    assert configs[-1] == Searcher.FINISHED  # 2 + 4 + 3 trials, then no more
    by_group: dict[str, list] = {}
    for c in configs[:-1]:
        assert c is not None
        by_group.setdefault(c[GROUP_KEY], []).append({k: c[k] for k in ("k", "c") if k in c})
    assert sorted(d["k"] for d in by_group["small"]) == [1, 2]
    assert sorted((d["k"], d["c"]) for d in by_group["grid"]) == [(1, "a"), (1, "b"), (5, "a"), (5, "b")]
    assert len(by_group["large"]) == 3


def test_a_group_never_runs_one_setting_twice(tmp_path: Path) -> None:
    """k in 1..10 with 6 trials (fewer than its settings, so not laid out as a grid): Optuna's first
    (random) draws repeat settings; every trial of the group gets a setting of its own, whether the earlier
    ones ended or still run, the same ones on every run."""
    space = {"k": IntDistribution(1, 10)}
    drawn = []
    for run in range(2):
        s = _searcher(_groups(1, budget=6, space=space), tmp_path / f"j{run}.journal")
        ks = []
        for i in range(6):
            config = s.suggest(f"t{i}")
            assert config is not None
            ks.append(config["k"])
            if i % 2:  # some end before the next is drawn, some are still running
                s.on_trial_complete(f"t{i}", {METRIC: 0.1 * i, "epoch": 1})
        assert len(set(ks)) == 6
        drawn.append(ks)
    assert drawn[0] == drawn[1]
    # A continuous space is left to the sampler (a repeat there is a draw of probability zero).
    s = _searcher(_groups(1, budget=3, space={"lr": FloatDistribution(1e-4, 1e-1, log=True)}), None)
    assert len({s.suggest(f"u{i}")["lr"] for i in range(3)}) == 3
