"""Sweep specs are validated before anything starts; the grouped searcher keeps groups apart."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from adgan.errors import ConfigError
from adgan.sweep.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "sweeps").glob("*.yaml"))


@pytest.fixture()
def raw() -> dict:
    return yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())


@pytest.fixture(scope="module")
def user_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in for the repository root with ``data/user`` as ``make user-data`` writes it (same formats,
    declarations and class names), from random images and a random KDD-like table: the shipped
    ``own_*.yaml`` specs are checked on a clean clone, which has neither ``data/user`` nor its sources."""
    import importlib.util

    import numpy as np
    import pyarrow as pa

    from adgan.data.kdd import FEATURES, LABEL

    spec = importlib.util.spec_from_file_location("make_user_datasets",
                                                  ROOT / "benchmarks" / "make_user_datasets.py")
    assert spec is not None and spec.loader is not None
    mud = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mud)
    root = tmp_path_factory.mktemp("shipped")
    out = root / "data" / "user"
    out.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 100)  # (MVTec's normals: 2.5 x per_class beside the class folders')
    images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
    mud.write_fashion(out, images, labels, per_class=25, seed=0, source="random images")
    n = 400
    columns = {f: rng.random(n) for f in FEATURES}
    for f, values in (("protocol_type", "tcp udp"), ("service", "http ftp"), ("flag", "SF S0")):
        columns[f] = rng.choice(values.split(), n)
    columns[LABEL] = rng.choice(["normal.", "smurf.", "neptune."], n)
    mud.write_kdd(out, pa.table(columns), n_rows=300, seed=0, source="a random table")
    (root / "sweeps").mkdir()
    return root


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_shipped_specs_are_valid(path: Path, user_data: Path) -> None:
    declared = yaml.safe_load(path.read_text()).get("dataset", {}).get("declare")
    if isinstance(declared, str) and not (path.parent / declared).is_file():
        path = user_data / "sweeps" / path.name  # (see the fixture) the spec as is, beside stand-in data
        path.write_text((ROOT / "sweeps" / path.name).read_text())
    spec = load_spec(path)
    assert spec.groups() and spec.budget.trials_per_group >= 1
    for name in spec.raw.get("budgets", {}):
        assert load_spec(path, budget=name).budget != spec.budget


def _refused(raw: dict, tmp_path: Path, *expected: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: "), msg
    for part in expected:
        assert part in msg, msg
    return msg


def test_unknown_model(raw: dict, tmp_path: Path) -> None:
    raw["models"]["gannomaly"] = {}
    _refused(raw, tmp_path, "models.gannomaly", "unknown model", "ganomaly")


def test_class_the_dataset_lacks(raw: dict, tmp_path: Path) -> None:
    raw["classes"] = [0, 7]
    _refused(raw, tmp_path, "classes[1]", "no class 7", "0..4")


def test_low_above_high(raw: dict, tmp_path: Path) -> None:
    raw["models"]["ganomaly"]["search"]["lr"] = {"type": "loguniform", "low": 0.1, "high": 0.001}
    _refused(raw, tmp_path, "models.ganomaly.search.lr", "low (0.1) > high (0.001)")


def test_missing_field(raw: dict, tmp_path: Path) -> None:
    del raw["budget"]["max_epochs"]
    _refused(raw, tmp_path, "budget.max_epochs", "missing required field")
    raw2 = copy.deepcopy(raw)
    del raw2["name"]
    _refused(raw2, tmp_path, "name: missing required field")


def test_unknown_hyperparameter_and_loss_case(raw: dict, tmp_path: Path) -> None:
    raw["models"]["ganomaly"]["search"]["w_cons"] = {"type": "uniform", "low": 1, "high": 2}
    _refused(raw, tmp_path, "models.ganomaly.search.w_cons", "unknown hyperparameter", "w_con")
    del raw["models"]["ganomaly"]["search"]["w_cons"]
    raw["models"]["ganomaly"]["loss_cases"] = ["fm", "mse"]
    _refused(raw, tmp_path, "models.ganomaly.loss_cases[1]", "'mse'", "fm, bce")


def test_bad_distribution_and_budget(raw: dict, tmp_path: Path) -> None:
    bad = copy.deepcopy(raw)
    bad["models"]["knn"]["search"]["k"] = {"type": "normal", "low": 1, "high": 3}
    _refused(bad, tmp_path, "models.knn.search.k.type", "loguniform, uniform, int, categorical")
    bad = copy.deepcopy(raw)
    bad["budget"]["grace_period"] = 9
    _refused(bad, tmp_path, "budget.grace_period", "max_epochs")
    bad = copy.deepcopy(raw)
    bad["dataset"]["name"] = "mnist-6k"
    _refused(bad, tmp_path, "dataset.name", "unknown dataset 'mnist-6k'")
    bad = copy.deepcopy(raw)
    bad["reources"] = {}
    _refused(bad, tmp_path, "reources", "unknown key")
    with pytest.raises(ConfigError, match="no budget named 'huge'"):
        parse_spec(raw, "x.yaml", budget="huge")


def test_cli_refuses_bad_spec_before_ray_starts(
    raw: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import sys

    from adgan.cli import main

    raw["classes"] = [5]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    t0 = time.perf_counter()
    assert main(["sweep", str(path), "--results", str(tmp_path / "r")]) == 2
    assert time.perf_counter() - t0 < 30
    err = capsys.readouterr().err
    assert f"{path}: classes[0]" in err and "no class 5" in err
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()
    assert not (tmp_path / "r").exists()


def test_grouped_searcher_budgets_routing_and_state() -> None:
    from optuna.distributions import FloatDistribution
    from ray.tune.search import Searcher

    from adgan.sweep.grouped import GROUP_KEY, GroupedScheduler, GroupedSearcher

    space = {"lr": FloatDistribution(1e-4, 1e-1, log=True)}
    groups = {
        "a": ({"model": "m", "anomaly_class": 0}, space, 3),
        "b": ({"model": "m", "anomaly_class": 1}, space, 2),
    }
    sched = GroupedScheduler("best_val_auprc", "max", "epoch", 3, 1, 2)
    s = GroupedSearcher(groups, "best_val_auprc", "max", seed=0, scheduler=sched)
    configs = [s.suggest(f"t{i}") for i in range(5)]
    assert s.suggest("t5") == Searcher.FINISHED
    assert [c[GROUP_KEY] for c in configs] == ["a", "a", "a", "b", "b"]
    assert [c["anomaly_class"] for c in configs] == [0, 0, 0, 1, 1]
    assert len({c["lr"] for c in configs}) == 5
    s.on_trial_result("t0", {"epoch": 1, "best_val_auprc": 0.5})
    s.on_trial_result("t0", {"epoch": 2, "best_val_auprc": 0.7})
    s.on_trial_complete("t0", {"best_val_auprc": 0.1})  # Optuna is told the best epoch, not the last report
    study = s.studies["a"]
    assert study.trials[0].value == 0.7 and study.trials[0].intermediate_values == {1: 0.5, 2: 0.7}
    assert len(s.studies["b"].trials) == 2 and s.studies["b"].trials[0].value is None

    # The state round trip used by Tuner.restore keeps budgets, studies and the scheduler's state.
    sched.stopped.add("t9")
    state = s.get_state()
    sched2 = GroupedScheduler("best_val_auprc", "max", "epoch", 3, 1, 2)
    s2 = GroupedSearcher(groups, "best_val_auprc", "max", seed=0, scheduler=sched2)
    s2.set_state(state)
    assert s2.suggest("t6") == Searcher.FINISHED and sched2.stopped == {"t9"}
    assert s2.studies["a"].trials[0].value == 0.7


def test_results_store_keys_atomic_files_and_schema_version(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from adgan.errors import DataError
    from adgan.sweep.callback import _merge_attempts
    from adgan.sweep.results import ResultsStore, read_table

    group = {
        "sweep": "s",
        "group_id": "g",
        "model": "knn",
        "dataset": "d",
        "anomaly_class": 1,
        "loss_case": "default",
        "seed": 0,
    }
    store = ResultsStore(tmp_path)
    for epoch, auprc in ((1, 0.2), (2, float("nan")), (1, 0.3)):  # the second epoch-1 row replaces the first
        store.upsert(
            "epochs", {**group, "trial_id": "t1", "epoch": epoch, "val_auprc": auprc, "losses": {"d": 1.0}}
        )
    store.upsert("epochs", {**group, "trial_id": "t2", "epoch": 1, "val_auprc": 0.5})
    store.flush()
    rows = read_table(tmp_path, "epochs")
    assert [(r["trial_id"], r["epoch"], r["val_auprc"]) for r in rows] == [
        ("t1", 1, 0.3),
        ("t1", 2, None),
        ("t2", 1, 0.5),
    ]
    assert rows[0]["losses"] == '{"d": 1.0}' and not list(tmp_path.glob(".*tmp"))
    store.drop_trial("t1")
    store.flush()
    assert [r["trial_id"] for r in ResultsStore(tmp_path).table("epochs")] == ["t2"]  # read back on resume
    store.close()  # the documented file, written whole

    table = pq.read_table(tmp_path / "epochs.parquet")
    pq.write_table(
        table.replace_schema_metadata({b"adgan.schema_version": b"99"}), tmp_path / "epochs.parquet"
    )
    with pytest.raises(DataError, match="schema version 99"):
        read_table(tmp_path, "epochs")
    assert pa.types.is_int32(table.schema.field("epoch").type)

    # Attempts of a trial in result.json: restarted from scratch (epoch 1 again), then from a checkpoint
    # after epoch 2 (reports from 3 on, replacing the 3 and 4 the interrupted attempt had reported).
    attempts = [{"epoch": 1}, {"epoch": 2}, {"epoch": 1}, {"epoch": 2}, {"epoch": 3}, {"epoch": 4},
                {"epoch": 3, "n": 2}, {"epoch": 4, "n": 2}, {"status": "completed"}]
    assert _merge_attempts(attempts) == attempts[2:4] + attempts[6:]
    store.drop_trial("t2", from_epoch=2)
    assert [r["epoch"] for r in store.table("epochs")] == [1]  # epoch 1 of t2 stays


def test_trial_status_from_reports() -> None:
    """completed / stopped early / diverged / errored, from what a trial reported and how it ended."""
    from adgan.sweep.results import trial_row

    def epoch(e: int, v: float, **kw: object) -> dict:
        return {
            "epoch": e,
            "val_auprc": v,
            "val_auroc": v,
            "epoch_seconds": 1.0,
            "eval_seconds": 0.5,
            "node_ip": "127.0.0.1",
            "time_total_s": 2.0 * e,
            **kw,
        }

    def row(results: list, error: str | None = None) -> dict:
        return trial_row(
            "s",
            {"group_id": "g"},
            "t",
            {"lr": 0.1},
            {"lr": 0.1},
            results,
            error=error,
            checkpoint="/c",
            max_epochs=3,
        )

    done = row([epoch(1, 0.4), epoch(2, 0.6), epoch(3, 0.5, status="completed", message="")])
    assert (done["status"], done["best_val_auprc"], done["best_epoch"], done["epochs_run"]) == (
        "completed",
        0.6,
        2,
        3,
    )
    assert done["fit_seconds"] == 3.0 and done["wall_seconds"] == 6.0 and done["node_ip"] == "127.0.0.1"
    stopped = row([epoch(1, 0.4)])
    assert stopped["status"] == "stopped early" and stopped["epochs_run"] == 1
    diverged = row([epoch(1, 0.4), {"status": "diverged", "message": "loss is nan", "epochs_run": 1}])
    assert (diverged["status"], diverged["message"], diverged["best_val_auprc"]) == (
        "diverged",
        "loss is nan",
        0.4,
    )
    crashed = row([{"status": "errored", "message": "ValueError: bad"}])
    assert crashed["status"] == "errored" and crashed["best_val_auprc"] is None and crashed["epochs_run"] == 0
    lost = row([epoch(1, 0.4)], error="trial failed in Ray: node died")
    assert lost["status"] == "errored" and "node died" in lost["message"]


def test_a_model_may_have_its_own_grace_period(raw: dict, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from adgan.sweep.grouped import GROUP_KEY, GroupedScheduler

    raw["models"]["ganomaly"]["grace_period"] = 1
    spec = parse_spec(copy.deepcopy(raw), "spec.yaml")
    assert spec.model("ganomaly").grace_period == 1
    others = [m for m in raw["models"] if m != "ganomaly"]
    assert all(spec.model(m).grace_period is None for m in others)
    sched = GroupedScheduler("best_val_auprc", "max", "epoch", 9, 3, 3, group_grace={"a": 1})

    def rungs(gid: str) -> list[int]:
        trial = SimpleNamespace(config={GROUP_KEY: gid}, trial_id=f"t-{gid}")
        return sorted(m for m, _ in sched._asha(trial)._brackets[0]._rungs)

    assert rungs("a") == [1, 3, 9] and rungs("b") == [3, 9]
    for bad in (0, 1.5, "two"):
        raw["models"]["ganomaly"]["grace_period"] = bad
        _refused(raw, tmp_path, "models.ganomaly.grace_period")


def test_a_named_budget_may_change_the_seeds(raw: dict) -> None:
    raw["budgets"] = {"one": {"seeds": [7], "max_epochs": 2}}
    default = parse_spec(copy.deepcopy(raw), "spec.yaml")
    one = parse_spec(copy.deepcopy(raw), "spec.yaml", budget="one")
    assert {g.seed for g in one.groups()} == {7} and one.budget.max_epochs == 2
    assert {g.seed for g in default.groups()} == set(raw.get("seeds", [0]))


def test_device_follows_the_gpu_share(raw: dict, tmp_path: Path) -> None:
    """A device in the spec's options would bypass Ray's GPU bookkeeping: refused; --gpu sets the share."""
    from adgan.sweep.runner import build_groups
    from adgan.sweep.spec import with_gpu

    bad = copy.deepcopy(raw)
    bad.setdefault("dataset", {}).setdefault("options", {})["device"] = "cuda"
    _refused(bad, tmp_path, "dataset.options.device", "resources.gpu")
    spec = parse_spec(copy.deepcopy(raw), "spec.yaml")
    assert with_gpu(spec, 0.25).gpu == 0.25 and with_gpu(spec, 2).gpu == 2.0
    for share in (-0.5, 1.5):
        with pytest.raises(ConfigError, match=r"--gpu: expected a fraction in \[0, 1\]"):
            with_gpu(spec, share)
    # Every trial config carries the device the runner derives from the share, and the CPUs it reserved;
    # a model that computes on the CPU only (pca, iforest, ocsvm) runs on "cpu".
    from adgan.models import DETECTORS

    for base, _, _ in build_groups(spec, "cuda", 3).values():
        on_gpu = DETECTORS.get(base["model"]).uses_accelerator
        assert base["device"] == ("cuda" if on_gpu else "cpu") and base["threads"] == 3
    assert not DETECTORS.get("pca").uses_accelerator and DETECTORS.get("knn").uses_accelerator


def test_cli_refuses_a_bad_gpu_share(raw: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from adgan.cli import main

    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["sweep", str(path), "--gpu", "1.5", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--gpu: expected a fraction in [0, 1] or a whole number of GPUs, got 1.5" in err
    assert not (tmp_path / "r").exists()


def test_search_ranges_are_checked_at_both_ends(raw: dict, tmp_path: Path) -> None:
    """A range whose low end is fine but whose high end the model refuses is refused before Ray starts."""
    bad = copy.deepcopy(raw)
    bad["models"]["ganomaly"]["search"]["lr"] = {"type": "uniform", "low": -1.0, "high": 0.1}
    _refused(bad, tmp_path, "models.ganomaly.search.lr", "'lr'", "expected > 0, got -1.0")
    bad = copy.deepcopy(raw)
    bad["models"]["ganomaly"]["search"]["beta1"] = {"type": "uniform", "low": 0.0, "high": 1.0}
    _refused(bad, tmp_path, "models.ganomaly.search.beta1", "expected in [0, 1), got 1.0")
    bad = copy.deepcopy(raw)
    bad["models"]["ganomaly"]["search"]["w_enc"] = {"type": "categorical", "choices": [1.0, -2.0]}
    _refused(bad, tmp_path, "models.ganomaly.search.w_enc", "expected >= 0, got -2.0")


def test_cli_refuses_bad_options_and_an_unreachable_address(
    raw: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import socket

    from adgan.cli import main

    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(raw))
    results = ["--results", str(tmp_path / "r")]
    for option, value in (("--cpus", "0"), ("--max-concurrent", "0"), ("--max-failures", "-1"),
                          ("--progress-every", "-5")):
        assert main(["sweep", str(path), option, value, *results]) == 2
        assert f"adgan: error: {option}: expected" in capsys.readouterr().err
    # A port where nothing listens: refused in seconds (Ray itself would retry for minutes), nothing written.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    assert main(["sweep", str(path), "--address", f"127.0.0.1:{port}", *results]) == 2
    assert time.perf_counter() - t0 < 30
    assert f"--address 127.0.0.1:{port}: no Ray cluster answers there" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def _bomb(levels: int = 9, width: int = 9) -> str:
    """A "billion laughs" chain: level i lists ``width`` aliases of level i-1 (width**levels leaves)."""
    lines = ['l0: &l0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines)


@pytest.mark.parametrize("field", ["name", "seeds", "classes"])
def test_yaml_bombs_are_refused_before_anything_walks_them(raw: dict, tmp_path: Path, field: str) -> None:
    """An alias chain that expands to 9**9 values as a scalar field: refused by the loader (formatting it
    into a message used to take gigabytes); the refusal names the file and says why."""
    raw.pop(field, None)
    path = tmp_path / "bomb.yaml"
    path.write_text(f"bombs:\n  {_bomb().replace(chr(10), chr(10) + '  ')}\n{field}: *l9\n"
                    + yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: line ") and "expands to more than 10,000 values" in msg, msg
    assert len(msg) < 400


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("name: &a [1, *a]\n")
    with pytest.raises(ConfigError, match=r"line 1: an alias refers to itself"):
        load_spec(path)


def test_modest_aliases_and_merge_keys_still_load(raw: dict, tmp_path: Path) -> None:
    text = yaml.safe_dump(raw).replace("knn:\n", "knn: &knn\n", 1)
    path = tmp_path / "alias.yaml"
    # An anchor reused and a merge key (<<) overriding nothing twice: ordinary YAML, accepted.
    path.write_text(text + "budgets:\n  more: {<<: {max_epochs: 2}, trials_per_group: 1}\n")
    spec = load_spec(path, budget="more")
    assert spec.budget.max_epochs == 2 and spec.budget.trials_per_group == 1


def test_duplicate_keys_are_refused_naming_both_lines(tmp_path: Path) -> None:
    text = (ROOT / "sweeps" / "smoke.yaml").read_text()
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("budget:")) + 1
    path = tmp_path / "dup.yaml"
    path.write_text(text + "budget: {trials_per_group: 1, max_epochs: 1, grace_period: 1}\n")
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert str(info.value) == (
        f"{path}: line {len(lines) + 1}: duplicate key 'budget' (first at line {first}); "
        "each key may appear once in a mapping"
    )
    # Nested, and two keys on one line.
    path.write_text(text.replace("lr: {type: loguniform,", "lr: {type: uniform, type: loguniform,"))
    line = next(i for i, s in enumerate(lines) if "lr: {type: loguniform" in s) + 1
    with pytest.raises(ConfigError, match=rf"line {line}: duplicate key 'type' \(first at line {line}\)"):
        load_spec(path)


def test_values_in_messages_are_shortened(raw: dict, tmp_path: Path) -> None:
    """A long value in a wrong place is shown cut, not whole (a message is one readable line)."""
    raw["seeds"] = {"x": list(range(5000))}
    expected = "seeds: expected a non-empty list of integers, got {'x': [0, 1, 2, 3, 4, 5, ...]}"
    msg = _refused(raw, tmp_path, expected)
    assert len(msg) < 300
    raw["seeds"] = [0]
    raw["name"] = ["a" * 10_000]
    msg = _refused(raw, tmp_path, "name: expected a string, got list ['aaaa")
    assert len(msg) < 300
    from adgan.sweep.checks import short

    assert len(short("x" * 10**6)) <= 120 and len(short([[[[list(range(10**5))]]]])) <= 120


def test_messages_of_errors_are_whole_and_say_where(raw: dict, tmp_path: Path) -> None:
    """An error's own text is kept whole (not cut in the middle like a shown value), a searched value is
    blamed on its search key, and a YAML error says its line and column in the file."""
    raw["models"]["ganomaly"]["search"]["w_adv"] = {"type": "int", "low": -1, "high": 8}
    msg = _refused(raw, tmp_path, "models.ganomaly.search.w_adv: hyperparameter 'w_adv' of model "
                   "'ganomaly': expected >= 0, got -1.0")
    assert "..." not in msg
    del raw["models"]["ganomaly"]["search"]["w_adv"]
    raw["plugins"] = ["no_such_plugin_module_of_mine"]
    msg = _refused(raw, tmp_path, "plugins:", "no_such_plugin_module_of_mine")
    assert "..." not in msg
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nclasses: [0\nseeds: [0]\n")
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}: line 3, column 6: not valid YAML: expected ',' or ']'")
    assert "started at line 2, column 10" in str(info.value) and "<unicode string>" not in str(info.value)


def test_shipped_specs_are_found_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``adgan sweep mnist`` from any directory: a file of that name wins, else the shipped spec."""
    from adgan.sweep.spec import find_spec, packaged_specs

    monkeypatch.chdir(tmp_path)
    assert set(packaged_specs()) == {p.stem for p in SPECS}
    assert find_spec("mnist").read_bytes() == (ROOT / "sweeps" / "mnist.yaml").read_bytes()
    assert find_spec("smoke.yaml").name == "smoke.yaml" and load_spec("smoke").name == "smoke"
    (tmp_path / "mnist").write_text("name: mine\n")
    assert find_spec("mnist") == Path("mnist")
    with pytest.raises(ConfigError, match=r"mnsit: sweep spec not found .*shipped: cifar10, fashion_mnist"):
        find_spec("mnsit")
    with pytest.raises(ConfigError, match="sweep spec not found"):
        find_spec("elsewhere/smoke.yaml")  # a path is a path: no fallback to the shipped spec


def test_a_resume_refuses_a_spec_changed_since_the_start(raw: dict, tmp_path: Path) -> None:
    """Tune restores the sweep as started whatever the spec says now: a changed class list, search space or
    budget is refused naming the keys; where results go and what trials reserve may change."""
    from adgan.sweep.records import check_same_spec, write_spec_record
    from adgan.sweep.spec import with_gpu
    from adgan.sweep.storage import location

    results = location(str(tmp_path / "results"))
    started = parse_spec(copy.deepcopy(raw), "smoke.yaml")
    write_spec_record(started, results, 0.0)
    check_same_spec(parse_spec(copy.deepcopy(raw), "smoke.yaml"), results)  # the same spec: fine
    moved = copy.deepcopy(raw) | {"results": "elsewhere", "resources": {"cpus": 2, "gpu": 0},
                                  "description": "a note written since"}
    check_same_spec(with_gpu(parse_spec(moved, "smoke.yaml"), 0.5), results)
    changed = copy.deepcopy(raw) | {"classes": [0, 1]}
    changed["models"]["ganomaly"]["search"]["lr"]["high"] = 0.01
    with pytest.raises(ConfigError, match=r"smoke.yaml: --resume: the spec differs from the one sweep "
                       r"'smoke' started with \(.*spec.json\) in: classes, "
                       r"models\.ganomaly\.search\.lr\.high\. "
                       r"A resume continues"):
        check_same_spec(parse_spec(changed, "smoke.yaml"), results)
    options = copy.deepcopy(raw)
    options["dataset"]["options"]["max_train"] = 999  # what the trials train on: refused too
    with pytest.raises(ConfigError, match=r"in: dataset\.options\.max_train\. A resume"):
        check_same_spec(parse_spec(options, "smoke.yaml"), results)
    with pytest.raises(ConfigError, match=r"in: budget_name, effective_budget\.max_epochs\. A resume"):
        named = copy.deepcopy(raw) | {"budgets": {"quick": {"max_epochs": 2}}}
        check_same_spec(parse_spec(named, "smoke.yaml", budget="quick"), results)


def test_values_a_sweep_would_silently_override_are_refused(raw: dict, tmp_path: Path) -> None:
    bad = copy.deepcopy(raw)
    bad["models"]["ganomaly"]["fixed"]["epochs"] = 50
    _refused(bad, tmp_path, "models.ganomaly.fixed.epochs: set a trial's epochs with budget.max_epochs")
    bad = copy.deepcopy(raw)
    bad["dataset"]["options"]["max_train"] = -5
    _refused(bad, tmp_path, "dataset.options.max_train: expected a positive integer, got -5")
    bad = copy.deepcopy(raw)
    bad["dataset"]["options"]["scale"] = "yes"
    _refused(bad, tmp_path, "dataset.options.scale: expected true or false, got 'yes'")


def test_resume_of_nothing_is_refused_and_creates_nothing(raw: dict, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    from adgan.cli import main

    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["sweep", str(path), "--results", str(tmp_path / "none"), "--resume", "--no-wandb"]) == 2
    expected = f"--resume: no sweep to resume in {tmp_path / 'none' / 'smoke' / 'tune'}"
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_a_model_grace_period_above_a_budget_not_run_is_no_mistake(raw: dict, tmp_path: Path) -> None:
    """A model's grace_period applies to every budget: above the max_epochs of a quick budget it only
    matters when that budget runs (refused then), not when another one does."""
    raw["budget"]["max_epochs"] = 5
    raw["models"]["ganomaly"]["grace_period"] = 4
    raw["budgets"] = {"quick": {"max_epochs": 2}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_spec(path).model("ganomaly").grace_period == 4
    with pytest.raises(ConfigError, match=r"models.ganomaly.grace_period: 4 > max_epochs \(2\)"):
        load_spec(path, budget="quick")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [  # a value refused by the model or the loader is named where it is written, not at a searched key
        (lambda r: r["models"]["ganomaly"]["fixed"].update(base_filters="eight"),
         "models.ganomaly.fixed.base_filters: hyperparameter 'base_filters' of model 'ganomaly': "
         "expected int"),
        (lambda r: r["models"]["ganomaly"]["fixed"].update(batch_size=0),
         "models.ganomaly.fixed.batch_size: hyperparameter 'batch_size'"),
        (lambda r: r["dataset"]["options"].update(image_size=17),
         "dataset.options.image_size: image_size must"),
        (lambda r: r["models"].update(knn={"fixed": {"k": 0}}), "models.knn.fixed.k: hyperparameter 'k'"),
        (lambda r: r["models"]["ganomaly"]["search"]["lr"].update(low=-1.0),
         "models.ganomaly.search.lr.low: a loguniform distribution needs low > 0"),
        (lambda r: r.update(seeds=[0, 1, 0]), "seeds: a seed is listed twice: [0, 1, 0]"),
        (lambda r: r.update(seeds=[0, -1]), "seeds[1]: expected an integer in 0 .. 2**32 - 1, got -1"),
        (lambda r: r.update(seeds=[0, 2**32]),
         "seeds[1]: expected an integer in 0 .. 2**32 - 1, got 4294967296"),
        (lambda r: r["models"]["ganomaly"].update(grace_period=4),
         "models.ganomaly.grace_period: 4 > max_epochs (3); expected <= max_epochs"),
        (lambda r: r["models"]["knn"]["search"]["k"].update(log="maybe"),
         "models.knn.search.k.log: expected true or false, got 'maybe'"),
        # distributions that draw values the hyperparameter cannot take, or one value over and over
        (lambda r: r["models"]["knn"]["search"].update(k={"type": "loguniform", "low": 1, "high": 20}),
         "models.knn.search.k.type: k is an integer hyperparameter: a loguniform distribution draws "
         "fractions; use type: int"),
        (lambda r: r["models"]["knn"]["search"].update(k={"type": "categorical", "choices": [3, "5"]}),
         "models.knn.search.k.choices: '5' is not an integer, as k is"),
        (lambda r: r["models"]["ganomaly"]["search"].update(w_adv={"type": "categorical",
                                                                   "choices": [1, "2.5"]}),
         "models.ganomaly.search.w_adv.choices: '2.5' is not a number, as w_adv is"),
        (lambda r: r["models"]["ganomaly"]["search"]["lr"].update(low=0.001, high=0.001),
         "models.ganomaly.search.lr: low == high (0.001): a single value; put it in the model's fixed"),
        (lambda r: r["models"]["ganomaly"].update(loss_cases=["fm", "fm"]),
         "models.ganomaly.loss_cases[1]: loss case 'fm' is listed twice"),
        # a named budget is checked also when another one is chosen
        (lambda r: r.update(budgets={"full": {"trials_per_grup": 3}}),
         "budgets.full.trials_per_grup: unknown key; expected one of: fixed, grace_period, max_epochs, "
         "options, reduction_factor, seeds, trials_per_group (in the named budget 'full', checked though "
         "this run uses its default budget)"),
        (lambda r: r.update(budgets={"full": {"fixed": {"ganomaly": {"batch_size": -2}}}}),
         "budgets.full.fixed.ganomaly.batch_size: hyperparameter 'batch_size' of model 'ganomaly': expected "
         ">= 1, got -2 (in the named budget 'full', checked though this run uses its default budget)"),
        (lambda r: r.update(budgets={"full": {"options": {"image_size": 17}}}),
         "budgets.full.options.image_size: image_size must be 28 or 32, got 17 (in the named budget 'full'"),
    ],
)
def test_mistakes_are_named_where_they_are_written(raw: dict, tmp_path: Path, edit: Any,
                                                    expected: str) -> None:
    edit(raw)
    _refused(raw, tmp_path, expected)


def test_a_resume_refuses_data_or_a_declaration_changed_since_the_start(tmp_path: Path) -> None:
    """One's own data edited between the start and a resume (rows added, the declaration's fractions
    changed): the resume would mix two datasets in one sweep's results, so it is refused before Ray starts,
    naming what changed; the unchanged data and declaration resume."""
    import numpy as np

    from adgan.data.datasets import DATASETS
    from adgan.sweep import trial
    from adgan.sweep.records import check_same_spec, write_spec_record
    from adgan.sweep.runner import _with_available_dataset
    from adgan.sweep.storage import location

    def write_table(n: int) -> None:
        rng = np.random.default_rng(n)
        rows = [f"{a:.4f},{b:.4f},{'odd' if i % 5 == 0 else 'usual'}" for i, (a, b) in
                enumerate(rng.normal(size=(n, 2)))]
        (tmp_path / "t.csv").write_text("a,b,label\n" + "\n".join(rows) + "\n")

    def spec(**decl: Any) -> Any:
        (tmp_path / "mine.yaml").write_text(yaml.safe_dump(
            {"name": "mine-table", "format": "table", "path": "t.csv", "label_column": "label", **decl}))
        return parse_spec({"name": "mine", "dataset": {"declare": str(tmp_path / "mine.yaml")},
                           "classes": ["odd"], "models": {"knn": {}}, "seeds": [0],
                           "budget": {"trials_per_group": 1, "max_epochs": 1, "grace_period": 1,
                                      "reduction_factor": 2},
                           "resources": {"cpus": 1, "gpu": 0}}, str(tmp_path / "mine-sweep.yaml"))

    write_table(200)
    results = location(str(tmp_path / "results"))
    started = spec()
    write_spec_record(started, results, 0.0)
    _with_available_dataset(started, results, resume=False)  # records dataset.json as a start does
    recorded = json.loads((tmp_path / "results" / "dataset.json").read_text())
    assert recorded["n_samples"] == 200 and len(recorded["sha256"]) == 64
    assert recorded["classes"] == ["odd", "usual"]
    assert recorded["input_shape"] == [2] and recorded["columns"] == ["a", "b"]
    check_same_spec(spec(), results)
    _with_available_dataset(spec(), results, resume=True)  # the same data: resumed
    # The same files read into other classes (a sweep started by an adgan that read labels otherwise).
    (tmp_path / "results" / "dataset.json").write_text(json.dumps({**recorded, "classes": ["usual", "odd"]}))
    with pytest.raises(ConfigError, match=r"--resume: the classes of dataset 'mine-table' were \['usual', "
                                          r"'odd'\] when sweep 'mine' started and are read as \['odd', "
                                          r"'usual'\] now"):
        _with_available_dataset(spec(), results, resume=True)
    # The same files encoded otherwise (an adgan that encoded a table another way).
    (tmp_path / "results" / "dataset.json").write_text(json.dumps({**recorded, "input_shape": [3],
                                                                   "columns": ["a", "b", "c"]}))
    with pytest.raises(ConfigError, match=r"--resume: dataset 'mine-table' was encoded into samples of shape "
                                          r"\(3,\) when sweep 'mine' started and is encoded into \(2,\) now"):
        _with_available_dataset(spec(), results, resume=True)
    (tmp_path / "results" / "dataset.json").write_text(json.dumps(recorded))
    # (the resume is a new process: here the declaration and the data loaded are forgotten by hand)
    DATASETS.unregister("mine-table")
    with pytest.raises(ConfigError, match=r"mine-sweep.yaml: --resume: the spec differs .* in: "
                                          r"dataset_declaration\.val_fraction \(keys of the dataset's "
                                          r"declaration file, dataset\.declare\)\. A resume"):
        check_same_spec(spec(val_fraction=0.4), results)
    DATASETS.unregister("mine-table")
    write_table(230)
    trial._load.cache_clear()
    with pytest.raises(ConfigError, match=r"mine-sweep.yaml: --resume: the data of dataset 'mine-table' "
                                          r"changed since sweep 'mine' started: it was 200 samples, sha256 "
                                          r"[0-9a-f]{16}\.\.\. \(.*t\.csv\); it is now 230 samples"):
        _with_available_dataset(spec(), results, resume=True)
    DATASETS.unregister("mine-table")
    trial._load.cache_clear()


def test_a_small_search_space_gets_no_more_trials_than_it_has_settings(raw: dict) -> None:
    """trials_per_group caps a group's trials; a finite space with fewer distinct settings (a choice of one,
    an int range of two) gets one trial per setting, since more would repeat settings already run."""
    raw["budget"]["trials_per_group"] = 6
    raw["models"] = {
        "ganomaly": raw["models"]["ganomaly"],  # a continuous range: the budget's 6
        "knn": {"search": {"k": {"type": "int", "low": 1, "high": 2}}},
        "iforest": {"search": {"n_estimators": {"type": "categorical", "choices": [50, 50]}}},
        "pca": {"search": {"n_components": {"type": "int", "low": 2, "high": 20, "step": 6}}},  # 2, 8, 14, 20
        "ocsvm": {},
    }
    spec = parse_spec(raw, "smoke.yaml")
    trials = {g.model: spec.trials(g) for g in spec.groups()}
    assert trials == {"ganomaly": 6, "knn": 2, "iforest": 1, "pca": 4, "ocsvm": 1}
    from adgan.sweep.records import spec_record

    assert spec_record(spec, 0.0)["model_trials"] == trials


def test_a_resume_says_when_a_plugins_code_changed(raw: dict, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """spec.json records each plugin's sha256; a resume after the plugin's file was edited says so (the
    result rows record adgan's code version, not the plugin's)."""
    from adgan.sweep.records import warn_if_plugins_changed, write_spec_record
    from adgan.sweep.storage import location

    plug = tmp_path / "myplug.py"
    plug.write_text("X = 1\n")
    raw["plugins"] = [str(plug)]
    results = location(str(tmp_path / "results"))
    spec = parse_spec(copy.deepcopy(raw), str(tmp_path / "smoke.yaml"))
    write_spec_record(spec, results, 0.0)
    recorded = json.loads((tmp_path / "results" / "spec.json").read_text())["plugin_sha256"]
    assert list(recorded) == [str(plug)] and len(recorded[str(plug)]) == 64
    warn_if_plugins_changed(spec, results)
    assert "plugin code changed" not in capsys.readouterr().err
    plug.write_text("X = 2\n")
    warn_if_plugins_changed(spec, results)
    assert (f"--resume: plugin code changed since sweep 'smoke' started ({plug}): the trials still to run "
            "use the new code") in capsys.readouterr().err


def test_a_relative_data_dir_is_taken_relative_to_the_spec(
    raw: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As every path of a spec: the trials run in Ray's own working directory, where a path relative to
    where `adgan sweep` was started names nothing (every trial errored with "not a folder")."""
    (tmp_path / "data").mkdir()
    (tmp_path / "specs").mkdir()
    spec_file = tmp_path / "specs" / "s.yaml"
    raw["dataset"]["options"] = {**(raw["dataset"].get("options") or {}), "data_dir": "../data"}
    spec_file.write_text(yaml.safe_dump(raw))
    data = (tmp_path / "data").resolve()
    monkeypatch.chdir(tmp_path / "specs")
    assert Path(load_spec(spec_file.name).data_options["data_dir"]).resolve() == data
    monkeypatch.chdir("/")
    assert Path(load_spec(spec_file).data_options["data_dir"]).resolve() == data
    raw["dataset"]["options"]["data_dir"] = str(tmp_path / "data")  # an absolute one stays as it is
    spec_file.write_text(yaml.safe_dump(raw))
    assert load_spec(spec_file).data_options["data_dir"] == str(tmp_path / "data")
