"""Sweep specifications: one YAML file per job, parsed and validated before anything starts.

A spec names the dataset (with an optional fallback when its files are missing), the anomaly classes,
the seeds, the models with their loss cases, fixed hyperparameters and Optuna search spaces, the budget
(with named alternatives such as ``full``), the resources per trial, where results go and the W&B project.
Every mistake is reported as a :class:`~adgan.errors.ConfigError` naming the file, the key path
(``models.ganomaly.search.lr.low``) and what was expected. See ``docs/sweeps.md`` for the format.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from adgan.errors import ConfigError

DIST_TYPES = ("loguniform", "uniform", "int", "categorical")
BUDGET_KEYS = ("trials_per_group", "max_epochs", "grace_period", "reduction_factor")
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
}


@dataclasses.dataclass(frozen=True)
class Distribution:
    """One Optuna distribution of a search space.

    Attributes:
        type: ``loguniform``, ``uniform``, ``int`` or ``categorical``.
        low, high: Bounds (``loguniform``/``uniform``/``int``), inclusive.
        log: Log-scaled integer search (``int`` only).
        step: Integer step (``int`` only).
        choices: Values of a ``categorical``.
    """

    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: int = 1
    choices: tuple[Any, ...] = ()

    def to_optuna(self) -> Any:
        """The equivalent ``optuna.distributions`` object."""
        from optuna import distributions as od

        if self.type == "loguniform":
            return od.FloatDistribution(float(self.low), float(self.high), log=True)
        if self.type == "uniform":
            return od.FloatDistribution(float(self.low), float(self.high))
        if self.type == "int":
            return od.IntDistribution(int(self.low), int(self.high), log=self.log, step=self.step)
        return od.CategoricalDistribution(list(self.choices))

    def example(self) -> Any:
        """A valid value (the low end or first choice), used to type-check against the model's config."""
        return self.extremes()[0]

    def extremes(self) -> list[Any]:
        """The values a search may reach at its edges: both bounds, or every choice."""
        if self.type == "categorical":
            return list(self.choices)
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model of a sweep: its loss cases, fixed hyperparameters and search space."""

    name: str
    loss_cases: tuple[str, ...]
    fixed: dict[str, Any]
    search: dict[str, Distribution]
    is_iterative: bool
    grace_period: int | None = None  # this model's ASHA grace period (None: the budget's)


@dataclasses.dataclass(frozen=True)
class Budget:
    trials_per_group: int
    max_epochs: int
    grace_period: int
    reduction_factor: float


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
        """Trials of ``group``: the budget's ``trials_per_group``, or 1 for a model with nothing to search
        (its trials would all be the same configuration)."""
        return self.budget.trials_per_group if self.model(group.model).search else 1

    def model(self, name: str) -> ModelSpec:
        return next(m for m in self.models if m.name == name)

    def with_dataset(self, dataset: str) -> SweepSpec:
        """The same spec on another dataset (the fallback), re-validated."""
        from adgan.sweep.checks import as_dict

        raw = {**self.raw, "dataset": {**as_dict(self.raw["dataset"]), "name": dataset, "fallback": None}}
        return parse_spec(raw, self.path, budget=self.budget_name)


def load_spec(path: str | Path, *, budget: str = "default") -> SweepSpec:
    """Read and validate the YAML spec at ``path``.

    Raises:
        ConfigError: The file is missing, not YAML, or wrong (message names file, key and expectation).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: sweep spec not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return parse_spec(raw, str(path), budget=budget)


def parse_spec(raw: Any, path: str = "<spec>", *, budget: str = "default") -> SweepSpec:
    """Validate a parsed spec (a mapping, as from YAML); see :func:`load_spec`."""
    from adgan.data import dataset_classes, dataset_kind, list_datasets
    from adgan.models import DETECTORS
    from adgan.sweep.checks import (
        Checker,
        as_dict,
        budget_of,
        classes_of,
        model_spec,
        with_budget_overrides,
    )

    ck = Checker(path)
    raw = ck.mapping(raw, "")
    ck.unknown(raw, TOP_KEYS, "")
    raw = with_budget_overrides(ck, raw, budget)
    name = str(ck.require(raw, "name", ""))
    if not name or "/" in name or name.startswith("."):
        raise ck.fail("name", f"expected a plain directory name, got {name!r}")

    ds = as_dict(ck.require(raw, "dataset", ""))
    ck.unknown(ds, {"name", "fallback", "options"}, "dataset")
    dataset = str(ck.require(ds, "name", "dataset"))
    known = list_datasets()
    for field in ("name", "fallback"):
        value = ds.get(field)
        if value is not None and value not in known:
            raise ck.fail(
                f"dataset.{field}", f"unknown dataset {value!r}; expected one of: {', '.join(known)}"
            )
    fallback = ds.get("fallback")
    options = ck.mapping(ds.get("options") or {}, "dataset.options")
    if "device" in options:
        # The device follows the GPU share Ray reserves for each trial: a device set here would make trials
        # use a GPU they never reserved (Ray leaves every GPU visible to a trial without one) or ask CPU
        # nodes for CUDA.
        raise ck.fail(
            "dataset.options.device", "not a spec option: trials use CUDA exactly when resources.gpu > 0"
        )
    ck.unknown(options, {"data_dir", "image_size", "scale", "max_train", "bf16"}, "dataset.options")

    class_names = dataset_classes(dataset)
    classes = classes_of(ck, raw.get("classes", "all"), class_names, dataset)
    seeds_raw = raw.get("seeds", [0])
    if not isinstance(seeds_raw, list) or not seeds_raw:
        raise ck.fail("seeds", f"expected a non-empty list of integers, got {seeds_raw!r}")
    seeds = tuple(ck.number(s, f"seeds[{i}]", integer=True) for i, s in enumerate(seeds_raw))

    models_raw = ck.mapping(ck.require(raw, "models", ""), "models")
    if not models_raw:
        raise ck.fail("models", "expected at least one model")
    kind = dataset_kind(dataset)
    models = tuple(model_spec(ck, m, v, kind, DETECTORS) for m, v in models_raw.items())

    budget_obj = budget_of(ck, raw, budget)
    res = ck.mapping(raw.get("resources") or {}, "resources")
    ck.unknown(res, {"cpus", "gpu"}, "resources")
    cpus = ck.number(res.get("cpus", 1), "resources.cpus", positive=True)
    gpu = check_gpu(ck.number(res.get("gpu", 0), "resources.gpu"), lambda msg: ck.fail("resources.gpu", msg))
    wb = ck.mapping(raw.get("wandb") or {}, "wandb")
    ck.unknown(wb, {"project"}, "wandb")
    spec = SweepSpec(
        path=path,
        name=name,
        dataset=dataset,
        fallback=fallback,
        data_options=options,
        classes=classes,
        seeds=seeds,
        models=models,
        budget=budget_obj,
        budget_name=budget,
        cpus=float(cpus),
        gpu=float(gpu),
        results=str(raw.get("results", "results")),
        wandb_project=str(wb.get("project", f"adgan-{name}")),
        search_seed=ck.number(raw.get("search_seed", 0), "search_seed", integer=True),
        raw=raw,
    )
    _check_configs(ck, spec)
    return spec


def _check_configs(ck: Any, spec: SweepSpec) -> None:
    """Build full configs per (model, loss case) and let ``resolve_config`` judge: every searched
    hyperparameter at each edge of its range (the others at their low end or first choice)."""
    from adgan.train import resolve_config

    for m in spec.models:
        base = {p: d.example() for p, d in m.search.items()}
        variants = [(None, base)] + [
            (p, {**base, p: v}) for p, d in m.search.items() for v in d.extremes()[1:]
        ]
        for case in m.loss_cases:
            group = Group(m.name, spec.dataset, spec.classes[0], "", case, spec.seeds[0])
            for param, params in variants:
                try:
                    resolve_config(trial_config(spec, group, params))
                except ConfigError as exc:
                    where = f"models.{m.name}.search.{param}" if param else f"models.{m.name}"
                    raise ck.fail(where, str(exc)) from None


def trial_config(spec: SweepSpec, group: Group, params: Mapping[str, Any]) -> dict[str, Any]:
    """The flat ``adgan.train`` config of one trial: run keys, fixed and searched hyperparameters."""
    m = spec.model(group.model)
    config: dict[str, Any] = {
        "model": group.model,
        "dataset": group.dataset,
        "anomaly_class": group.anomaly_class,
        "seed": group.seed,
        "loss_case": group.loss_case,
        **spec.data_options,
        **m.fixed,
        **params,
    }
    if m.is_iterative:
        config["epochs"] = spec.budget.max_epochs
    return config


def check_gpu(gpu: float, fail: Callable[[str], Exception]) -> float:
    """A GPU share per trial: a fraction in [0, 1] or a whole number; ``fail(message)`` otherwise."""
    if gpu < 0 or (gpu > 1 and not float(gpu).is_integer()):
        raise fail(f"expected a fraction in [0, 1] or a whole number of GPUs, got {gpu!r}")
    return float(gpu)


def with_gpu(spec: SweepSpec, gpu: float) -> SweepSpec:
    """``spec`` with another GPU share per trial (``adgan sweep --gpu``)."""
    check_gpu(gpu, lambda msg: ConfigError(f"--gpu: {msg}"))
    return dataclasses.replace(spec, gpu=float(gpu))
