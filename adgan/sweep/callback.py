"""The driver-side Tune callback: Parquet rows as results arrive, test evaluation of finished groups,
progress lines; and the reconciliation with Tune's own records when a sweep ends."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ray.tune import Callback

from adgan.sweep.grouped import GROUP_KEY
from adgan.sweep.results import ResultsStore, epoch_row, param_type, trial_row
from adgan.sweep.spec import Group, SweepSpec


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
    """Driver-side: Parquet rows as results arrive, test evaluation of finished groups, progress lines."""

    def __init__(
        self, spec: SweepSpec, results_dir: str, progress_every: float = 30.0, background: bool = False
    ) -> None:
        self.spec = spec
        self.results_dir = results_dir
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

    # ----- bookkeeping -----
    def setup(self, **info: Any) -> None:
        self.store = ResultsStore(self.results_dir, param_types(self.spec))  # existing rows come back
        self.results = {}
        if self.background:
            self._pool = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="adgan-test-eval", initializer=_driver_torch_threads
            )

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
        self.store.flush()

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
            assert self.store is not None
            self.store.flush()

    # ----- Tune hooks -----
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # A trial restarted after a resume or a lost node continues from its last checkpoint (its last
        # reported epoch, or its first epoch when it had none): its first report says where.
        self._attempts.add(trial.trial_id)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        assert self.store is not None
        tid = trial.trial_id
        if tid in self._attempts:
            self._attempts.discard(tid)
            self._continue_from(tid, int(result["epoch"]) if result.get("epoch") is not None else None)
        self.results.setdefault(tid, []).append(dict(result))
        if result.get("epoch") is not None:
            g = self.groups[trial.config[GROUP_KEY]]
            row = epoch_row(self.spec.name, _group_cols(g), result, self._params(g, trial.config))
            self.store.upsert("epochs", row)

    def _continue_from(self, tid: str, epoch: int | None) -> None:
        """A new attempt of trial ``tid`` reports ``epoch`` first (None: no epoch, e.g. it had already
        trained every epoch): what it had reported from there on is replaced, what came before stays
        (rebuilt from the Parquet rows when the driver itself was restarted)."""
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
        ckpt = trial.checkpoint.path if trial.checkpoint is not None else None
        self.record_trial(trial.trial_id, trial.config, self.results.get(trial.trial_id, []), None, ckpt)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        message = f"trial failed in Ray (see {trial.error_file})"
        ckpt = trial.checkpoint.path if trial.checkpoint is not None else None
        self.record_trial(trial.trial_id, trial.config, self.results.get(trial.trial_id, []), message, ckpt)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        assert self.store is not None
        self.collect()
        self.store.flush(min_interval=2.0)
        if time.monotonic() - self._last_progress >= self.progress_every:
            self._last_progress = time.monotonic()
            print(self.progress(trials), file=sys.stderr)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        assert self.store is not None
        self.collect(wait=True)
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self.store.close()  # the documented tables written whole, the parts removed

    def progress(self, trials: list) -> str:
        """Status: groups done / total, trials running and finished, best validation AUPRC so far of each
        group not yet done (a done group's best was printed when it finished; ``adgan best`` lists all)."""
        assert self.store is not None
        done = {r["group_id"] for r in self.store.table("best")}
        running = sum(t.status == "RUNNING" for t in trials)
        finished = len(self.store.table("trials"))
        best: dict[str, float] = {}
        for r in self.store.table("epochs"):
            if r["val_auprc"] is not None and r["group_id"] not in done:
                best[r["group_id"]] = max(best.get(r["group_id"], -1.0), r["val_auprc"])
        per_group = ", ".join(f"{gid} {v:.3f}" for gid, v in best.items())
        return self._sweep_progress(finished) + "\n" + (
            f"[{self.spec.name}] groups done {len(done)}/{len(self.groups)}, trials running {running}, "
            f"finished {finished}/{sum(self.spec.trials(g) for g in self.groups.values())}; "
            f"best val AUPRC so far: {per_group or '-'}"
        )

    def _sweep_progress(self, finished: int) -> str:
        """One line for the whole sweep: a bar of the budget's epochs settled (run, or never to run because
        their trial ended early: stopped by ASHA, diverged, errored), trials finished, elapsed and ETA (from
        the rate this driver has settled epochs at, so a resumed sweep's earlier work does not skew it)."""
        from adgan.sweep.plan import duration

        assert self.store is not None
        ended = self.store.table("trials")
        ended_ids = {r["trial_id"] for r in ended}
        epochs_run = len(self.store.table("epochs"))
        in_flight = sum(r["trial_id"] not in ended_ids for r in self.store.table("epochs"))
        settled = in_flight + sum(int(r.get("max_epochs") or 0) for r in ended)
        max_epochs = self.spec.budget.max_epochs
        most = sum(
            self.spec.trials(g) * (max_epochs if self.spec.model(g.model).is_iterative else 1)
            for g in self.groups.values()
        )
        # (Set on the first call, in on_step_end at the sweep's first step: not in __init__, whose state
        # Tune pickles into tuner.pkl and a resumed driver restores.)
        t0, settled0 = self.__dict__.setdefault("_progress_start", (time.monotonic(), settled))
        elapsed = time.monotonic() - t0
        rate = (settled - settled0) / elapsed if elapsed > 0 else 0.0
        eta = duration((most - settled) / rate) if rate > 0 else "-"
        share = settled / most if most else 1.0
        bar = "#" * round(20 * share) + "-" * (20 - round(20 * share))
        n_trials = sum(self.spec.trials(g) for g in self.groups.values())
        return (
            f"[{self.spec.name}] sweep [{bar}] {share:.0%}: epochs {epochs_run} run + {settled - epochs_run} "
            f"skipped of {most} at most; trials {finished}/{n_trials} finished; elapsed {duration(elapsed)}, "
            f"ETA {eta}"
        )


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


def reconcile(spec: SweepSpec, results_dir: Path, grid: Any) -> None:
    """Rebuild rows from Tune's own per-trial records (``result.json``), fill what a killed driver missed,
    and test every finished group that has no best row yet."""
    callback = SweepCallback(spec, str(results_dir))
    callback.setup()
    assert callback.store is not None
    for result in grid:
        path = Path(result.path) / "result.json"
        rows = (
            [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if path.is_file()
            else []
        )
        config = dict(result.config)
        if GROUP_KEY not in config or not rows:
            continue
        g = callback.groups[config[GROUP_KEY]]
        rows = _merge_attempts(rows)
        trial_id = rows[-1]["trial_id"]
        callback.store.drop_trial(trial_id)
        for r in rows:
            if r.get("epoch") is not None:
                row = epoch_row(spec.name, _group_cols(g), r, callback._params(g, config))
                callback.store.upsert("epochs", row)
        ckpt = result.checkpoint.path if result.checkpoint is not None else None
        error = f"trial failed in Ray: {result.error}" if result.error is not None else None
        callback.record_trial(trial_id, config, rows, error, ckpt)
    for gid in callback.groups:
        callback.finish_group(gid)
    callback.store.close()


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
