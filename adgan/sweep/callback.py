"""The driver-side Tune callback: Parquet rows as results arrive, test evaluation of finished groups,
progress lines, pruning of Tune's storage; and the reconciliation with Tune's own records when a sweep
ends.

**What Tune's storage keeps** (issue 16: 1.5 MB per trial of a 150-trial mnist-5k sweep): each trial's one
checkpoint holds the best detector and the training state a restarted trial continues from
(``train_state.pt``: weights, both optimisers' moments, ...; 3x the detector for a GAN). Two things are not
needed once they are settled:

- a trial that ended (completed, stopped by ASHA, errored after its retries) is never continued, so its
  ``train_state.pt`` is deleted;
- a group whose chosen trial was scored on test: ``adgan export``, ``best`` and ``report`` use only that
  trial's checkpoint, so the checkpoints of the group's other trials are deleted.

Never what a resume could still need: a driver killed moments after a trial ended may leave a Tune snapshot
in which that trial still runs, and ``--resume`` then starts it again from that checkpoint. So before
anything is deleted the trial's outcome is written into its checkpoint (``finished.json``: its final
report, what ``trials.parquet`` records), and a trial started on such a checkpoint reports that outcome
again instead of training (``adgan.sweep.trial``), which rebuilds the same rows. The marker stays; the rest
of a pruned checkpoint goes. Deletions run in a driver thread, off Tune's event loop."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ray.tune import Callback

from adgan.runfiles import FINISHED, RUN_LOGS, TRAIN_STATE, TUNE_EXPERIMENT
from adgan.sweep.grouped import GROUP_KEY
from adgan.sweep.results import (
    EPOCH_REPORTS,
    STORE_ERRORS,
    ResultsStore,
    epoch_report,
    epoch_row,
    param_type,
    trial_row,
)
from adgan.sweep.spec import Group, SweepSpec
from adgan.sweep.storage import Location, location

# The tables are flushed (a part per changed table; every step of Tune's loop checks) at most every
# FLUSH_EVERY_S while only epochs arrive, and within ENDED_FLUSH_S of a trial's or a group's end, so that
# readers (`adgan best`, progress, tests) see ended trials promptly, but never a write per trial end: with
# short trials that would put an object store's round trip (~20 ms) into Tune's loop for every trial.
FLUSH_EVERY_S = 2.0
ENDED_FLUSH_S = 0.5
# What a trial's final report carries that its row needs (the rest is Tune's, or per epoch).
FINISHED_KEYS = ("trial_id", "status", "message", "epochs_run", "fit_seconds", "score_seconds",
                 "wall_seconds", "best_val_auprc", "node_ip", "node_id", "code_version", "data_source",
                 "data_sha256", "data_n_samples", "n_train", "n_val", "n_val_anomalies", "time_total_s",
                 "resolved_config")


def _group_cols(g: Group) -> dict[str, Any]:
    """The columns every row of group ``g`` carries (its key, the model's family, the class name)."""
    from adgan.models import DETECTORS

    return {
        "group_id": g.id,
        "model": g.model,
        "dataset": g.dataset,
        "anomaly_class": g.anomaly_class,
        "loss_case": g.loss_case,
        "seed": g.seed,
        "family": DETECTORS.get(g.model).family,
        "class_name": g.class_name,
    }


def param_types(spec: SweepSpec) -> dict[str, Any]:
    """The Arrow type of every hyperparameter a model of ``spec`` searches (its ``param_<name>`` column)."""
    types: dict[str, Any] = {}
    for m in spec.models:
        for name, dist in m.search.items():
            types.setdefault(name, param_type(dist.choices if dist.type == "categorical" else dist.type))
    return types


class SweepCallback(Callback):
    """Driver-side: Parquet rows as results arrive, test evaluation of finished groups, progress lines,
    pruning of Tune's storage (see the module docstring).

    Args:
        results_dir: The sweep's results, a path or a URI (``adgan.sweep.storage``).
        prune: Delete what Tune's storage no longer needs (see the module docstring).
    """

    def __init__(
        self, spec: SweepSpec, results_dir: str, progress_every: float = 30.0, background: bool = False,
        prune: bool = True,
    ) -> None:
        self.spec = spec
        self.results_dir = str(results_dir)
        self.prune = prune
        self.progress_every = progress_every
        self.groups = {g.id: g for g in spec.groups()}
        self.store: ResultsStore | None = None
        self.results: dict[str, list[dict[str, Any]]] = {}
        self._attempts: set[str] = set()  # trials started whose first report of this attempt is due
        self._last_progress = 0.0
        # Test evaluation of a finished group (loading its data and scoring the whole test split) runs in a
        # driver thread when ``background``: a trial's ``tune.report`` waits until the driver takes its
        # result, so a driver busy scoring would stall every running trial.
        self.background = background
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[str, Future] = {}
        self._pruner: ThreadPoolExecutor | None = None
        self._pruning: list[Future] = []
        self._ended_waiting = False  # a trial's or group's row waits for a flush (see ENDED_FLUSH_S)

    # ----- bookkeeping -----
    def setup(self, **info: Any) -> None:
        self.loc = location(self.results_dir)
        self.store = ResultsStore(self.loc, param_types(self.spec))  # existing rows come back
        self.results = {}
        if self.background:
            self._pool = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="adgan-test-eval", initializer=_driver_torch_threads
            )
            self._pruner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="adgan-prune")

    def checkpoint_uri(self, checkpoint: Any) -> str | None:
        """A Tune checkpoint's address as the tables record it: a local path, or a URI on the results'
        object store that the readers (``adgan best / export / score``) open again."""
        if checkpoint is None:
            return None
        return self.loc.uri_of(checkpoint.path) if hasattr(self, "loc") else str(checkpoint.path)

    def __getstate__(self) -> dict[str, Any]:
        # tuner.pkl pickles this callback when the sweep starts: threads and open stores stay out.
        state = self.__dict__.copy()
        for key in ("_pool", "_pruner", "_pending", "_pruning", "store", "loc", "_totals"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("prune", True)
        self.__dict__.setdefault("_ended_waiting", False)
        self.store, self._pool, self._pruner, self._pending, self._pruning = None, None, None, {}, []

    def _trials_of(self, gid: str) -> list[dict[str, Any]]:
        assert self.store is not None
        return self.store.rows_of_group("trials", gid)

    def record_trial(
        self,
        trial_id: str,
        config: dict[str, Any],
        results: list[dict[str, Any]],
        error: str | None,
        checkpoint: str | None,
    ) -> None:
        """Write the trial's row, and its group's best row when the group is complete."""
        assert self.store is not None
        gid = config[GROUP_KEY]
        g = self.groups[gid]
        params = self._params(g, config)
        clean = {k: v for k, v in config.items() if k != GROUP_KEY}
        max_epochs = self.spec.budget.max_epochs if self.spec.model(g.model).is_iterative else 1
        self.store.upsert(
            "trials",
            trial_row(
                self.spec.name,
                _group_cols(g),
                trial_id,
                clean,
                params,
                results,
                error=error,
                checkpoint=checkpoint,
                max_epochs=max_epochs,
            ),
        )
        self.finish_group(gid)
        self._flush_ended()

    def _flush_ended(self) -> None:
        """Flush the row of a trial or group that ended, or soon (see ENDED_FLUSH_S)."""
        assert self.store is not None
        self._ended_waiting = not self.store.flush(min_interval=ENDED_FLUSH_S)

    def _params(self, g: Group, config: Mapping[str, Any]) -> dict[str, Any]:
        """The hyperparameters searched for ``g``'s model, as a trial's config holds them."""
        return {k: config[k] for k in self.spec.model(g.model).search if k in config}

    def finish_group(self, gid: str, *, force: bool = False) -> None:
        """Score the group's chosen checkpoint on test once all its trials ended (or when ``force``)."""
        from adgan.sweep.best import evaluate_best

        assert self.store is not None
        trials = self._trials_of(gid)
        done = len(trials) >= self.spec.trials(self.groups[gid])
        if not trials or not (done or force) or gid in self._pending:
            return
        if self.store.rows_of_group("best", gid):
            return
        g = self.groups[gid]
        if self._pool is not None:
            self._pending[gid] = self._pool.submit(evaluate_best, trials, g.class_name)
        else:
            self._record_best(gid, evaluate_best(trials, g.class_name))

    def _record_best(self, gid: str, row: dict[str, Any]) -> None:
        assert self.store is not None
        self.store.upsert("best", row)
        if self.prune:  # the group's other trials' checkpoints are of no use any more
            for t in self.store.rows_of_group("trials", gid):
                if t.get("checkpoint") and t["trial_id"] != row.get("trial_id"):
                    self._housekeeping(prune_checkpoint, t["checkpoint"])
        print(
            f"[{self.spec.name}] group {gid} done: "
            + (f"best val AUPRC {_f(row.get('val_auprc'))} (trial {row['trial_id']}), "
               f"test AUPRC {_f(row.get('test_auprc'))}" if row.get("trial_id")
               else "no trial finished with a checkpoint (every trial failed or diverged)"),
            file=sys.stderr,
        )

    def collect(self, wait: bool = False) -> None:
        """Record the best rows of the background test evaluations that ended (all of them if ``wait``).

        A failed evaluation is reported and left without a best row: the reconciliation at the end of the
        sweep evaluates such groups again, in the driver, and raises if it fails again.
        """
        for gid, fut in list(self._pending.items()):
            if not (wait or fut.done()):
                continue
            del self._pending[gid]
            try:
                row = fut.result()
            except Exception as exc:  # noqa: BLE001 (any error of one group's evaluation)
                print(f"[{self.spec.name}] group {gid}: test evaluation failed: {exc!r}", file=sys.stderr)
                continue
            self._record_best(gid, row)
            self._flush_ended()

    # ----- Tune hooks -----
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # A trial restarted after a resume or a lost node continues from its last checkpoint (its last
        # reported epoch, or its first epoch when it had none): its first report says where.
        self._attempts.add(trial.trial_id)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        assert self.store is not None
        tid = trial.trial_id
        *carried, report = _unpack_replay(result)
        epoch = int(report["epoch"]) if report.get("epoch") is not None else None
        if tid in self._attempts:
            self._attempts.discard(tid)
            self._continue_from(tid, epoch)
        g = self.groups[trial.config[GROUP_KEY]]
        results = self.results.setdefault(tid, [])
        # Epochs a restarted trial (or a finished one reporting its outcome again) carries: the ones this
        # driver has no record of fill the gap (see adgan.sweep.trial._Reporter.history).
        have = {int(r["epoch"]) for r in results if r.get("epoch") is not None}
        gaps = [r for r in carried
                if int(r["epoch"]) not in have and (epoch is None or int(r["epoch"]) < epoch)]
        for r in [*gaps, report]:
            if r.get("epoch") is not None:
                row = epoch_row(self.spec.name, _group_cols(g), r, self._params(g, trial.config))
                self.store.upsert("epochs", row)
        if gaps:
            results.extend(gaps)
            results.sort(key=lambda r: int(r["epoch"]) if r.get("epoch") is not None else float("inf"))
        results.append(report)

    def _continue_from(self, tid: str, epoch: int | None) -> None:
        """A new attempt of trial ``tid`` reports ``epoch`` first (None: no epoch, e.g. it had already
        trained every epoch): what it had reported from there on is replaced, what came before stays
        (rebuilt from the Parquet rows when the driver itself was restarted; the epochs a killed driver
        never wrote there come with the attempt's first report)."""
        assert self.store is not None
        earlier = self.results.get(tid)
        if earlier is None:  # a resumed driver: the earlier epochs are in epochs.parquet
            earlier = [
                {**r, **{f"loss_{k}": v for k, v in _losses(r.get("losses")).items()}}
                for r in self.store.rows_of_trial("epochs", tid)
            ]
        done = [int(r["epoch"]) for r in earlier if r.get("epoch") is not None]
        first = epoch if epoch is not None else 1 + max(done, default=0)
        self.store.drop_trial(tid, from_epoch=first)
        self.results[tid] = [r for r in earlier if r.get("epoch") is not None and int(r["epoch"]) < first]

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._trial_ended(trial, None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._trial_ended(trial, f"trial failed in Ray (see {trial.error_file})")

    def _trial_ended(self, trial: Any, error: str | None) -> None:
        """Its checkpoint settled (``_mark_finished``) and its row recorded; ``error``: why it failed."""
        results = self.results.get(trial.trial_id, [])
        ckpt = _final_checkpoint(results) or self.checkpoint_uri(trial.checkpoint)
        self._mark_finished(ckpt, results, trial, error=error)
        self.record_trial(trial.trial_id, trial.config, results, error, ckpt)

    def _mark_finished(
        self, ckpt: str | None, results: list[dict[str, Any]], trial: Any, error: str | None = None
    ) -> None:
        """A trial that ended: its own logs to storage, its outcome into its checkpoint, then its training
        state out (see the module docstring); in a driver thread."""
        if not self.prune or ckpt is None or not results:
            return
        final: dict[str, Any] = {}
        for r in results:  # the facts of its last report carrying them, the outcome of its last report
            final.update({k: r[k] for k in FINISHED_KEYS if r.get(k) is not None})
        if error is not None:
            final.update(status="errored", message=error)
        final.setdefault("status", "stopped early")
        # Where the trial's detector is: a snapshot taken before the trial's last checkpoint names the one
        # before it (reduced to this outcome), and the trial restarted on it must report the newer one.
        final["final_checkpoint"] = ckpt
        # Its epochs too: a driver killed before they reached the tables and Tune's result.json in storage
        # leaves them nowhere else once the trial's checkpoint is reduced to this outcome.
        final[EPOCH_REPORTS] = [epoch_report(r) for r in results if r.get("epoch") is not None]
        self._housekeeping(finish_checkpoint, ckpt, final, _driver_logs(trial))

    def _housekeeping(self, fn: Any, *args: Any) -> None:
        """Run a storage deletion in the pruning thread (inline without one); a failure is reported, not
        raised: it leaves only bytes behind."""
        if self._pruner is not None:
            self._pruning = [f for f in self._pruning if not f.done()]
            self._pruning.append(self._pruner.submit(_quietly, fn, *args))
        else:
            _quietly(fn, *args)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        assert self.store is not None
        self.collect()
        if self.store.flush(min_interval=ENDED_FLUSH_S if self._ended_waiting else FLUSH_EVERY_S):
            self._ended_waiting = False
        if time.monotonic() - self._last_progress >= self.progress_every:
            self._last_progress = time.monotonic()
            print(self.progress(trials), file=sys.stderr)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        assert self.store is not None
        self.collect(wait=True)
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._pruner is not None:
            self._pruner.shutdown(wait=True)
            self._pruner = None
        self.store.close()  # the documented tables written whole, the parts removed

    def progress(self, trials: list) -> str:
        """Status: groups done / total, trials running and finished, best validation AUPRC so far of each
        group not yet done (a done group's best was printed when it finished; ``adgan best`` lists all)."""
        assert self.store is not None
        # No scan of the tables: these lines come every 30 s however many rows the sweep has written, so
        # they read the store's tallies and the rows of the groups still open only.
        running = sum(t.status == "RUNNING" for t in trials)
        finished = self.store.count("trials")
        best: dict[str, float] = {}
        for gid in self.store.open_groups():
            rows = self.store.rows_of_group("epochs", gid)
            values = [r["val_auprc"] for r in rows if r["val_auprc"] is not None]
            if values:
                best[gid] = max(values)
        per_group = ", ".join(f"{gid} {v:.3f}" for gid, v in best.items())
        _, n_trials = self._budget_totals()
        return self._sweep_progress(finished) + "\n" + (
            f"[{self.spec.name}] groups done {self.store.count('best')}/{len(self.groups)}, trials running "
            f"{running}, finished {finished}/{n_trials}; best val AUPRC so far: {per_group or '-'}"
        )

    def _budget_totals(self) -> tuple[int, int]:
        """(epochs at most, trials) of the whole sweep; computed once."""
        if getattr(self, "_totals", None) is None:
            max_epochs = self.spec.budget.max_epochs
            most = sum(self.spec.trials(g) * (max_epochs if self.spec.model(g.model).is_iterative else 1)
                       for g in self.groups.values())
            self._totals = (most, sum(self.spec.trials(g) for g in self.groups.values()))
        return self._totals

    def _sweep_progress(self, finished: int) -> str:
        """One line for the whole sweep: a bar of the budget's epochs settled (run, or never to run because
        their trial ended early: stopped by ASHA, diverged, errored), trials finished, elapsed and ETA (from
        the rate this driver has settled epochs at, so a resumed sweep's earlier work does not skew it)."""
        from adgan.sweep.plan import duration

        assert self.store is not None
        # Epochs run by trials still in flight, plus the whole budget of every trial that ended.
        epochs_run, epochs_of_ended, budget_of_ended = self.store.progress_counts()
        settled = epochs_run - epochs_of_ended + budget_of_ended
        most, n_trials = self._budget_totals()
        # (Set on the first call, in on_step_end at the sweep's first step: not in __init__, whose state
        # Tune pickles into tuner.pkl and a resumed driver restores.)
        t0, settled0 = self.__dict__.setdefault("_progress_start", (time.monotonic(), settled))
        elapsed = time.monotonic() - t0
        rate = (settled - settled0) / elapsed if elapsed > 0 else 0.0
        eta = duration((most - settled) / rate) if rate > 0 else "-"
        share = settled / most if most else 1.0
        bar = "#" * round(20 * share) + "-" * (20 - round(20 * share))
        return (
            f"[{self.spec.name}] sweep [{bar}] {share:.0%}: epochs {epochs_run} run + {settled - epochs_run} "
            f"skipped of {most} at most; trials {finished}/{n_trials} finished; elapsed {duration(elapsed)}, "
            f"ETA {eta}"
        )


def finish_checkpoint(ckpt: str, final: Mapping[str, Any], logs: Sequence[Path] = ()) -> None:
    """Copy a trial's own logs kept on the driver (``logs``) into its directory in storage, write its
    outcome into its checkpoint (``finished.json``), then delete its training state: in that order, so
    that no moment leaves a checkpoint a restarted trial can neither continue nor report from, and a
    trial restarted on it (which then trains nothing and writes no log) finds its whole log there (Tune
    uploads the driver's copy only with its experiment snapshots, which a killed driver may not reach).
    An older checkpoint Tune still keeps of the trial (it keeps two) is reduced to the outcome too: a
    snapshot taken before the last checkpoint may name it, and a trial restarted on it reports the outcome,
    whose ``final_checkpoint`` names the newer one. Newer checkpoints than ``ckpt``
    are never touched."""
    loc = location(ckpt)
    if not loc.exists():
        return
    trial_dir = location(ckpt.rstrip("/").rsplit("/", 1)[0])
    for log in logs:
        trial_dir.child(log.name).upload_file(log)
    text = json.dumps(dict(final), sort_keys=True, default=str)
    loc.child(FINISHED).write_text(text)
    loc.child(TRAIN_STATE).delete()
    mine = _checkpoint_index(loc.name())
    older = {name.split("/", 1)[0] for name, _ in trial_dir.files() if "/" in name
             and _checkpoint_index(name.split("/", 1)[0]) < mine}
    for name in sorted(older):
        trial_dir.child(name, FINISHED).write_text(text)
        prune_checkpoint(trial_dir.child(name).uri)


def _driver_logs(trial: Any) -> list[Path]:
    """The trial's own logs (``adgan.sweep.trial._copy_logs``) in the driver's staging directory of the
    trial, when it ran on the driver's node (elsewhere its node uploads them when the trial ends)."""
    staging = getattr(getattr(trial, "storage", None), "trial_driver_staging_path", None)
    if staging is None:
        return []
    return [p for name in RUN_LOGS if (p := Path(staging) / name).is_file()]


def _checkpoint_index(name: str) -> float:
    """The index of Tune's checkpoint directory ``checkpoint_000003`` (3); infinity for anything else."""
    prefix, _, number = name.partition("_")
    return float(number) if prefix == "checkpoint" and number.isdigit() else float("inf")


def _unpack_replay(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A trial's report as the reports it stands for: the earlier epochs' reports it carries (a finished
    trial's outcome reported again, ``finish_checkpoint``; the first report of a restarted trial,
    ``adgan.sweep.trial._Reporter.history``), then itself."""
    report = dict(result)
    epochs = report.pop(EPOCH_REPORTS, None)
    return [*(dict(r) for r in epochs or ()), report]


def _final_checkpoint(results: list[dict[str, Any]]) -> str | None:
    """The checkpoint a finished trial's outcome names, when its last report is that outcome reported again
    (a trial restarted on a checkpoint reduced to ``finished.json``; see ``finish_checkpoint``)."""
    return results[-1].get("final_checkpoint") if results else None


def prune_checkpoint(ckpt: str) -> None:
    """Delete a checkpoint no reader needs (a trial its group did not choose), keeping its
    ``finished.json``; a checkpoint without one is left alone (a trial that could still be restarted)."""
    loc = location(ckpt)
    if not loc.child(FINISHED).is_file():
        return
    for name, _ in loc.files():
        if name != FINISHED:
            loc.child(name).delete()


def _quietly(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except STORE_ERRORS as exc:
        print(f"adgan: warning: Tune's storage not pruned ({fn.__name__}: {exc}); only bytes are left behind",
              file=sys.stderr)


def _driver_torch_threads() -> None:
    """Torch threads of the driver's test evaluations: one where trials run on the driver's node (they
    have its CPUs); all of them on a head that runs no trials (a cluster head with ``CPU: 0``)."""
    import torch

    from adgan.train import cpus_available

    threads = 1
    try:
        import ray

        if not ray.is_initialized():  # (the runtime context of an uninitialised Ray ends the process)
            raise RuntimeError("no Ray here")
        here = ray.get_runtime_context().get_node_id()
        node = next((n for n in ray.nodes() if n.get("NodeID") == here), None)
        if node is not None and float(node.get("Resources", {}).get("CPU", 0.0)) == 0.0:
            threads = cpus_available()
    except Exception:  # noqa: BLE001 (no Ray here, e.g. reconcile in tests: one thread is safe)
        pass
    torch.set_num_threads(threads)


def _losses(value: Any) -> dict[str, float]:
    """An epoch row's losses: a dict as reported, or the JSON text that Parquet holds."""
    if isinstance(value, str):
        return json.loads(value) if value else {}
    return dict(value or {})


def _f(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, int | float) and math.isfinite(v) else "-"


def reconcile(spec: SweepSpec, results_dir: str | Path | Location, grid: Any) -> None:
    """Fill in, from Tune's own per-trial records (``result.json``), the rows a killed driver missed (epoch
    rows not in the tables, trials that ended without a row), and test every finished group that has no
    best row yet.

    It never removes or replaces a row: the callback's rows are what the drivers received, while Tune's
    ``result.json`` in the sweep's storage can lag behind them. It is uploaded with Tune's experiment
    snapshots, and when Tune restarts a trial (a lost node, a storage failure) it copies the stored file
    back over the driver's, losing the lines reported since the last snapshot (``LoggerCallback.
    _restore_from_remote`` in Ray 2.60)."""
    loc = results_dir if isinstance(results_dir, Location) else location(results_dir)
    callback = SweepCallback(spec, loc.uri)
    callback.setup()
    assert callback.store is not None
    known: set[str] = set()
    for result in grid:
        known.add(result.path.rstrip("/").rsplit("/", 1)[-1])  # (the trial's directory is its id)
        record = Location(result.filesystem, f"{result.path}/result.json", "")
        text = record.read_text() if record.is_file() else ""
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        rows = [r for row in rows for r in _unpack_replay(row)]
        config = dict(result.config or {})  # (None for a trial that never started)
        if GROUP_KEY not in config or not rows:
            continue
        g = callback.groups[config[GROUP_KEY]]
        rows = _merge_attempts(rows)
        trial_id = rows[-1]["trial_id"]
        have = {int(r["epoch"]) for r in callback.store.rows_of_trial("epochs", trial_id)}
        for r in rows:
            if r.get("epoch") is not None and int(r["epoch"]) not in have:
                row = epoch_row(spec.name, _group_cols(g), r, callback._params(g, config))
                callback.store.upsert("epochs", row)
        if not callback.store.rows_of_trial("trials", trial_id):
            ckpt = _final_checkpoint(rows) or callback.checkpoint_uri(result.checkpoint)
            error = f"trial failed in Ray: {result.error}" if result.error is not None else None
            callback.record_trial(trial_id, config, rows, error, ckpt)
    _drop_orphans(callback.store, known, loc)
    for gid in callback.groups:
        # Tune ended the sweep (reconcile runs after a run that was not interrupted): every group is done,
        # also one whose trial rows a killed driver lost, which would never reach its budget of rows.
        callback.finish_group(gid, force=True)
    callback.store.close()


def _drop_orphans(store: ResultsStore, known: set[str], results: Location) -> None:
    """Remove the epoch rows, and Tune's directory, of trials that Tune does not know: a driver killed
    after a new trial reported but before Tune's next snapshot of the experiment leaves such a trial,
    which the resumed sweep never continues (its configuration is asked for again as a new trial)."""
    for tid in store.trials_without_row("epochs"):
        if tid in known:
            continue
        store.drop_trial(tid)
        print(f"adgan: trial {tid} was started by a driver that was killed before Ray Tune recorded it; "
              "its epochs are dropped (the resumed sweep ran its place in the budget as a new trial)",
              file=sys.stderr)
        _quietly(Location.delete_dir, results.child(TUNE_EXPERIMENT, tid))


def _merge_attempts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A trial's results over its attempts: a restarted trial continues from its last checkpoint (or from
    epoch 1 when it had none) and reports from there, replacing what an earlier attempt reported from
    that epoch on."""
    kept: list[dict[str, Any]] = []
    prev = 0
    for r in rows:
        epoch = r.get("epoch")
        if epoch is not None:
            if int(epoch) <= prev:
                kept = [k for k in kept if k.get("epoch") is not None and int(k["epoch"]) < int(epoch)]
            prev = int(epoch)
        kept.append(r)
    return kept
