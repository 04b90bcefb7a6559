"""The private parts of Ray and Optuna that adgan relies on, checked on freshly built objects.

``pyproject.toml`` pins the majors adgan was tested with (``ray[tune]>=2.60,<3``, ``optuna>=5.0,<6``);
within them a minor release may still change a private attribute. Each test here fails with a message
naming the attribute, where adgan uses it, and the versions it was tested with, so that an upgrade that
breaks one is found before a sweep is resumed wrongly, not after.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import ray
from optuna.distributions import FloatDistribution

TESTED = "ray 2.60.0 and optuna 5.0.0"


def _fail(what: str, where: str) -> str:
    return (
        f"{what} (used by {where}) is not what adgan was tested with ({TESTED}; installed: ray "
        f"{ray.__version__}, optuna {optuna.__version__}): adapt {where} to this version, or install the "
        "tested one (pyproject.toml pins the majors)"
    )


def test_asha_keeps_its_trials_in_trial_info() -> None:
    """GroupedScheduler asks a group's ASHA whether it knows a trial (a restored trial keeps its bracket)
    and drops a removed trial from it; benchmarks/sweep_asha.py replays trials the same way."""
    from ray.tune.schedulers import AsyncHyperBandScheduler

    where = "adgan.sweep.grouped.GroupedScheduler"
    asha = AsyncHyperBandScheduler(time_attr="epoch", metric="m", mode="max", max_t=3, grace_period=1)
    info = getattr(asha, "_trial_info", None)
    assert isinstance(info, dict), _fail("AsyncHyperBandScheduler._trial_info (a dict)", where)
    trial = SimpleNamespace(trial_id="t0", config={})
    asha.on_trial_add(None, trial)  # type: ignore[arg-type]
    assert "t0" in asha._trial_info, _fail("AsyncHyperBandScheduler._trial_info after on_trial_add", where)
    asha.on_trial_complete(None, trial, {"epoch": 1, "m": 0.5})  # type: ignore[arg-type]
    assert "t0" not in asha._trial_info, _fail("ASHA's _trial_info after a trial ends", where)
    rungs = getattr(asha._brackets[0], "_rungs", None) if hasattr(asha, "_brackets") else None
    assert isinstance(rungs, list), _fail("AsyncHyperBandScheduler._brackets[i]._rungs", "test_sweep_spec.py")


def test_an_optuna_trial_can_be_reattached_by_its_storage_id(tmp_path: Path) -> None:
    """GroupedSearcher saves a running trial's ``Trial._trial_id`` and rebuilds ``optuna.trial.Trial(study,
    id)`` from it after a resume, in a new process, on the journal storage."""
    where = "adgan.sweep.grouped.GroupedSearcher (resume)"
    path = str(tmp_path / "journal")
    try:
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    except AttributeError as exc:
        pytest.fail(_fail(f"optuna.storages.JournalStorage / journal.JournalFileBackend ({exc})", where))
    study = optuna.create_study(storage=storage, study_name="g", direction="maximize")
    trial = study.ask(fixed_distributions={"lr": FloatDistribution(1e-4, 1e-1, log=True)})
    storage_id = getattr(trial, "_trial_id", None)
    assert isinstance(storage_id, int), _fail("optuna.trial.Trial._trial_id (an int)", where)
    trial.report(0.5, 1)

    fresh = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))  # "new process"
    again = optuna.load_study(study_name="g", storage=fresh)
    reattached = optuna.trial.Trial(again, storage_id)
    assert reattached.number == trial.number and reattached.params == trial.params, _fail(
        "optuna.trial.Trial(study, trial_id) with the id of Trial._trial_id", where
    )
    reattached.report(0.7, 2)
    again.tell(reattached, 0.7)
    (done,) = optuna.load_study(study_name="g", storage=fresh).trials
    assert done.intermediate_values == {1: 0.5, 2: 0.7} and done.value == 0.7, _fail(
        "reporting to and telling a reattached trial", where
    )


def test_tune_tells_the_scheduler_before_the_searcher_when_a_trial_ends() -> None:
    """GroupedSearcher drops a finished group's ASHA when the searcher learns of its last trial's end;
    that is safe because Tune calls the scheduler first (completion, error and removal alike)."""
    from ray.tune.execution.tune_controller import TuneController

    where = "adgan.sweep.grouped.GroupedSearcher.on_trial_complete (forget_group)"
    src = inspect.getsource(TuneController.stop_trial)
    calls = ("_scheduler_alg.on_trial_remove", "_search_alg.on_trial_complete(trial.trial_id)",
             "_scheduler_alg.on_trial_complete", "_search_alg.on_trial_complete(\n")
    order = [src.find(call) for call in calls]
    assert -1 not in order and order == sorted(order), _fail("TuneController.stop_trial's order", where)
    src = inspect.getsource(TuneController._process_trial_failure)
    first, then = src.find("_scheduler_alg.on_trial_error"), src.find("_search_alg.on_trial_complete")
    assert -1 < first < then, _fail("TuneController._process_trial_failure's order", where)


def test_tune_re_adds_finished_trials_on_restore_with_their_status() -> None:
    """GroupedScheduler ignores trials re-added by ``Tuner.restore`` as TERMINATED or ERROR (their group's
    ASHA may be gone); Tune must add them with that status already set."""
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

    where = "adgan.sweep.grouped.GroupedScheduler.on_trial_add"
    statuses = (Trial.TERMINATED, Trial.ERROR)
    assert statuses == ("TERMINATED", "ERROR"), _fail("Tune's Trial status names", where)
    src = inspect.getsource(TuneController._requeue_restored_trials)
    assert src.find("set_status(Trial.TERMINATED)") < src.find("self.add_trial(trial_to_add)"), _fail(
        "TuneController._requeue_restored_trials", where
    )


def test_rays_token_authentication_switches_are_where_the_runner_reads_them() -> None:
    where = "adgan.sweep.runner.init_ray"
    try:
        from ray._raylet import AuthenticationMode, Config, get_authentication_mode  # noqa: F401
    except ImportError as exc:
        pytest.fail(_fail(f"ray._raylet's AuthenticationMode, Config, get_authentication_mode: {exc}", where))
    assert hasattr(AuthenticationMode, "TOKEN") and callable(Config.initialize), _fail(
        "ray._raylet.AuthenticationMode.TOKEN / Config.initialize", where
    )


def test_a_tuner_holds_its_searcher_and_run_config_where_the_runner_reads_them(tmp_path: Path) -> None:
    """On ``--resume`` the runner points the restored searcher at this machine's Optuna journal
    (``Tuner._local_tuner._tune_config.search_alg``) and reads the restored ``RunConfig``'s callbacks
    (``Tuner._local_tuner.get_run_config()``); a Tuner built here shows where both are."""
    from ray import tune

    from adgan.sweep.grouped import GroupedSearcher

    where = "adgan.sweep.runner._restored_tuner / _only_the_json_logger"
    searcher = GroupedSearcher({}, "m", "max", 0)
    logger = tune.logger.JsonLoggerCallback()
    tuner = tune.Tuner(lambda config: None, tune_config=tune.TuneConfig(search_alg=searcher),
                       run_config=tune.RunConfig(callbacks=[logger], storage_path=str(tmp_path)))
    local = getattr(tuner, "_local_tuner", None)
    assert getattr(getattr(local, "_tune_config", None), "search_alg", None) is searcher, _fail(
        "Tuner._local_tuner._tune_config.search_alg", where)
    assert logger in local.get_run_config().callbacks, _fail("Tuner._local_tuner.get_run_config()", where)
