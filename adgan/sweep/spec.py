"""Sweep specifications: one YAML file per job, parsed and validated before anything starts.

A spec names the dataset (with an optional fallback when its files are missing), the anomaly classes,
the seeds, the models with their loss cases, fixed hyperparameters and Optuna search spaces, the budget
(with named alternatives such as ``full``), the resources per trial, where results go and the W&B project.
Every mistake is reported as a :class:`~adgan.errors.ConfigError` naming the file, the key path
(``models.ganomaly.search.lr.low``) and what was expected. See ``docs/sweeps.md`` for the format.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from adgan.errors import ConfigError
from adgan.sweep.checks import (
    Budget,
    Checker,
    Distribution,
    ModelSpec,
    as_dict,
    budget_of,
    check_gpu,
    classes_of,
    clip,
    dataset_of,
    model_spec,
    resources_of,
    seeds_of,
    short,
    with_budget_overrides,
)
from adgan.yamlload import load_yaml

__all__ = [
    "Budget", "Distribution", "Group", "ModelSpec", "SweepSpec", "find_spec", "load_spec", "packaged_specs",
    "parse_spec", "trial_config", "with_gpu",
]

TOP_KEYS = {
    "name",
    "dataset",
    "classes",
    "seeds",
    "models",
    "budget",
    "budgets",
    "resources",
    "results",
    "wandb",
    "search_seed",
    "description",
    "plugins",
}


@dataclasses.dataclass(frozen=True)
class Group:
    """One independent search: (model, dataset, anomaly class, loss case, seed)."""

    model: str
    dataset: str
    anomaly_class: int
    class_name: str
    loss_case: str
    seed: int

    @property
    def id(self) -> str:
        return f"{self.dataset}/c{self.anomaly_class}/{self.model}/{self.loss_case}/s{self.seed}"


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A validated sweep specification (see the module docstring)."""

    path: str
    name: str
    dataset: str
    fallback: str | None
    data_options: dict[str, Any]
    classes: tuple[int, ...]
    seeds: tuple[int, ...]
    models: tuple[ModelSpec, ...]
    budget: Budget
    budget_name: str
    cpus: float
    gpu: float
    results: str
    wandb_project: str
    search_seed: int
    raw: dict[str, Any]
    dataset_decl: dict[str, Any] | None = None  # a dataset of one's own (adgan.data.declared)
    plugins: tuple[str, ...] = ()  # modules or .py files registering detectors of one's own (adgan.plugins)

    def groups(self) -> list[Group]:
        """All groups, class-major so one class's models finish close together."""
        from adgan.data import dataset_classes

        names = dataset_classes(self.dataset)
        return [
            Group(m.name, self.dataset, c, names[c], case, s)
            for c in self.classes
            for m in self.models
            for case in m.loss_cases
            for s in self.seeds
        ]

    def trials(self, group: Group) -> int:
        """Trials of ``group``: the budget's ``trials_per_group``, at most the number of distinct
        configurations its search space holds when that is finite (1 for a model with nothing to search):
        more trials would repeat configurations already run."""
        sizes = [d.n_values() for d in self.model(group.model).search.values()]
        if any(n is None for n in sizes):
            return self.budget.trials_per_group
        return min(self.budget.trials_per_group, math.prod(n for n in sizes if n is not None))

    def model(self, name: str) -> ModelSpec:
        return next(m for m in self.models if m.name == name)

    def with_dataset(self, dataset: str) -> SweepSpec:
        """The same spec on another dataset (the fallback), re-validated."""
        raw = {**self.raw, "dataset": {**as_dict(self.raw["dataset"]), "name": dataset, "fallback": None}}
        return parse_spec(raw, self.path, budget=self.budget_name)


def spec_dirs() -> list[Path]:
    """Where the shipped example specs are: the ``adgan.specs`` package of an installed adgan (the wheel
    carries the repository's ``sweeps/*.yaml`` there, see ``setup.py``), else the ``sweeps/`` directory
    of the source checkout this module runs from."""
    found = importlib.util.find_spec("adgan.specs")
    if found is not None and found.submodule_search_locations:
        return [Path(p) for p in found.submodule_search_locations]
    checkout = Path(__file__).resolve().parents[2] / "sweeps"
    return [checkout] if checkout.is_dir() else []


def packaged_specs() -> dict[str, Path]:
    """``{name: path}`` of the shipped example specs (``adgan specs`` lists them)."""
    return {p.stem: p for d in reversed(spec_dirs()) for p in sorted(d.glob("*.yaml"))}


def find_spec(name: str | Path) -> Path:
    """The spec file ``name``: a path when one exists there, else a shipped spec of that name (``mnist``
    or ``mnist.yaml``), so that ``adgan sweep mnist`` works from any directory.

    Raises:
        ConfigError: Neither exists (the message lists the shipped specs).
    """
    path = Path(name)
    if path.is_file():
        return path
    shipped = packaged_specs()
    stem = path.name.removesuffix(".yaml").removesuffix(".yml")
    if path.parent == Path(".") and stem in shipped:
        return shipped[stem]
    names = ", ".join(shipped) or "none found"
    raise ConfigError(f"{path}: sweep spec not found (no such file, nor a shipped spec; shipped: {names})")


def load_spec(path: str | Path, *, budget: str = "default") -> SweepSpec:
    """Read and validate the YAML spec at ``path`` (or the shipped spec of that name, :func:`find_spec`).

    Raises:
        ConfigError: The file is missing, not YAML (or a duplicate key, or a document whose aliases expand
            beyond a small size), or wrong (the message names the file, the key and what was expected).
    """
    path = find_spec(path)
    raw = load_yaml(path.read_text(), str(path))
    spec = parse_spec(raw, str(path), budget=budget)
    # Every named budget too: a mistake in one not chosen today would otherwise wait for the day it is.
    named = raw.get("budgets") if isinstance(raw, dict) else None
    for other in named if isinstance(named, dict) else ():
        if other != budget:
            try:
                parse_spec(raw, str(path), budget=str(other), other_budget=True)
            except ConfigError as exc:
                # (found while checking a budget this run does not use: say so, not that it was chosen)
                used = "its default budget" if budget == "default" else repr(budget)
                raise ConfigError(f"{exc} (in the named budget {other!r}, checked though this run uses "
                                  f"{used})") from None
    return spec


def parse_spec(
    raw: Any, path: str = "<spec>", *, budget: str = "default", other_budget: bool = False
) -> SweepSpec:
    """Validate a parsed spec (a mapping, as from YAML); see :func:`load_spec`. ``other_budget``: checked
    as a budget not run now (a model's grace_period above its max_epochs only matters to the one run)."""
    from adgan.data import dataset_classes, dataset_kind, list_datasets
    from adgan.models import DETECTORS

    check = Checker(path)
    raw = check.mapping(raw, "")
    check.unknown(raw, TOP_KEYS, "")
    base_dir = Path(path).parent if path != "<spec>" else None
    plugins = _plugins_of(check, raw, base_dir)  # before the models are looked up: they may register one
    raw = with_budget_overrides(check, raw, budget)
    name = check.text(check.require(raw, "name", ""), "name")
    if not name or "/" in name or name.startswith("."):
        raise check.fail("name", f"expected a plain directory name, got {short(name)}")
    dataset, fallback, options, declaration = dataset_of(check, raw, list_datasets(), base_dir)
    models_raw = check.mapping(check.require(raw, "models", ""), "models")
    if not models_raw:
        raise check.fail("models", "expected at least one model")
    kind = dataset_kind(dataset)
    cpus, gpu = resources_of(check, raw)
    wandb = check.mapping(raw.get("wandb") or {}, "wandb")
    check.unknown(wandb, {"project"}, "wandb")
    spec = SweepSpec(
        path=path,
        name=name,
        dataset=dataset,
        fallback=fallback,
        data_options=options,
        classes=classes_of(check, raw.get("classes", "all"), dataset_classes(dataset), dataset),
        seeds=seeds_of(check, raw.get("seeds", [0])),
        models=tuple(model_spec(check, m, v, kind, DETECTORS) for m, v in models_raw.items()),
        budget=budget_of(check, raw, budget),
        budget_name=budget,
        cpus=cpus,
        gpu=gpu,
        results=check.text(raw.get("results", "results"), "results"),
        wandb_project=check.text(wandb.get("project", f"adgan-{name}"), "wandb.project"),
        search_seed=check.number(raw.get("search_seed", 0), "search_seed", integer=True),
        raw=raw,
        dataset_decl=declaration,
        plugins=plugins,
    )
    for m in () if other_budget else spec.models:
        if m.grace_period is not None and m.grace_period > spec.budget.max_epochs:
            raise check.fail(f"models.{m.name}.grace_period", f"{m.grace_period} > max_epochs "
                             f"({spec.budget.max_epochs}); expected <= max_epochs (ASHA would stop none of "
                             "its trials)")
    _check_configs(check, spec)
    return spec


def _plugins_of(check: Checker, raw: Mapping[str, Any], base_dir: Path | None) -> tuple[str, ...]:
    """The spec's ``plugins`` (module names or ``.py`` paths relative to the spec), loaded here."""
    from adgan import plugins

    value = raw.get("plugins") or []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise check.fail("plugins", f"expected a list of module names or .py files, got {short(value)}")
    resolved = plugins.resolve(value, base_dir)
    try:
        plugins.load(resolved)
    except ConfigError as exc:
        raise check.fail("plugins", clip(str(exc), 600)) from None
    return tuple(resolved)


def _check_configs(check: Checker, spec: SweepSpec,
                   judge: Callable[[dict[str, Any]], object] | None = None) -> None:
    """Build full configs per (model, loss case) and let ``judge`` (default: ``resolve_config``) refuse
    them with a ``ConfigError``: every searched hyperparameter at each edge of its range, the others at
    their low end or first choice. A failure is reported at the search key that causes it (found by trying
    each searched value alone with the model's other settings), else at the model."""
    from adgan.train import resolve_config

    judge = judge or resolve_config
    for model in spec.models:
        base = {p: d.example() for p, d in model.search.items()}
        edges = [(p, v) for p, d in model.search.items() for v in d.extremes()]
        # (each edge but the first is tried with the others at base: the first one is base itself)
        variants = [base] + [{**base, p: v} for p, d in model.search.items() for v in d.extremes()[1:]]
        for case in model.loss_cases:
            group = Group(model.name, spec.dataset, spec.classes[0], "", case, spec.seeds[0])
            for params in variants:
                try:
                    judge(trial_config(spec, group, params))
                except ConfigError as exc:
                    raise check.fail(_blamed(spec, group, model.name, edges, judge),
                                     clip(str(exc), 600)) from None


def check_configs_on_data(spec: SweepSpec, input_shape: tuple[int, ...]) -> None:
    """The spec's configs (as ``_check_configs`` builds them) against the data the sweep runs on: a
    hyperparameter that cannot work on samples of ``input_shape`` (``Detector.check_data``: PCA with as
    many components as features) is refused where it is written, before Ray starts, instead of failing
    every trial that draws it. Called once the driver has loaded the data (``runner.available_dataset``).

    Raises:
        ConfigError: ``<spec>: models.<model>...: <the detector's reason>``.
    """
    from adgan.errors import DataError
    from adgan.train import detector_for, resolve_config

    def judge(config: dict[str, Any]) -> None:
        detector = detector_for(resolve_config(config))
        try:
            detector.check_data(input_shape)
        except DataError as exc:
            raise ConfigError(str(exc)) from None

    _check_configs(Checker(spec.path), spec, judge)


def _blamed(spec: SweepSpec, group: Group, model: str, edges: list[tuple[str, Any]],
            judge: Callable[[dict[str, Any]], object]) -> str:
    """The key to name for a config ``judge`` refused. Refused with nothing searched: the fixed
    hyperparameter or data option without which (the model's or loader's default in its place) it passes;
    else the first searched value refused alone (when nothing searched passes either: one of whose values
    some pass)."""

    def refused(config: dict[str, Any]) -> bool:
        try:
            judge(config)
        except ConfigError:
            return True
        return False

    plain = trial_config(spec, group, {})
    if refused(plain):
        # (a named budget's overrides are merged into the model's fixed values and the data options: named
        # where they are written)
        named = (spec.raw.get("budgets") or {}).get(spec.budget_name) or {}
        from_budget = f"budgets.{spec.budget_name}"
        owners = [(k, f"{from_budget}.fixed.{model}.{k}" if k in ((named.get("fixed") or {}).get(model) or {})
                   else f"models.{model}.fixed.{k}") for k in spec.model(model).fixed]
        owners += [(k, f"{from_budget}.options.{k}" if k in (named.get("options") or {})
                    else f"dataset.options.{k}") for k in spec.data_options]
        for key, path in owners:
            if key in plain and not refused({k: v for k, v in plain.items() if k != key}):
                return path
    # A searched value refused alone; when the plain config is refused too (a searched hyperparameter's
    # default in its place, e.g. PCA's 8 components on 8 features), one whose other values pass.
    for p, v in edges:
        if refused(trial_config(spec, group, {p: v})) and (
                not refused(plain) or any(not refused(trial_config(spec, group, {p: w}))
                                          for q, w in edges if q == p)):
            return f"models.{model}.search.{p}"
    return f"models.{model}"


def trial_config(spec: SweepSpec, group: Group, params: Mapping[str, Any]) -> dict[str, Any]:
    """The flat ``adgan.train`` config of one trial: run keys, fixed and searched hyperparameters."""
    from adgan.data import default_scale
    from adgan.models import DETECTORS

    model = spec.model(group.model)
    options = {k: v for k, v in spec.data_options.items() if k != "subsample_baselines"}
    if DETECTORS.get(group.model).family == "baseline" and not spec.data_options.get("subsample_baselines"):
        # Baselines are cheap: a budget that subsamples the training normals for the GANs leaves them the
        # whole training split unless the spec says otherwise (trials.parquet's n_train shows which).
        options.pop("max_train", None)
    config: dict[str, Any] = {
        "model": group.model,
        "dataset": group.dataset,
        "anomaly_class": group.anomaly_class,
        "seed": group.seed,
        "loss_case": group.loss_case,
        **options,
        **model.fixed,
        **params,
    }
    if spec.dataset_decl is not None:
        config["dataset_decl"] = spec.dataset_decl
    # Recorded in every trial config (a config without it is of a sweep from before the default changed:
    # adgan.sweep.trial.as_started).
    config.setdefault("scale", default_scale(group.dataset))
    if model.is_iterative:
        config["epochs"] = spec.budget.max_epochs
    return config


def with_gpu(spec: SweepSpec, gpu: float) -> SweepSpec:
    """``spec`` with another GPU share per trial (``adgan sweep --gpu``)."""
    check_gpu(gpu, lambda msg: ConfigError(f"--gpu: {msg}"))
    return dataclasses.replace(spec, gpu=float(gpu))
