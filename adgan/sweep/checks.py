"""The parts of a sweep spec and their validation: each failure names the file, the key path and what was
expected, and shows the offending value shortened (:func:`short`), never whole.

This module is the lower layer of spec parsing: it knows nothing of :mod:`adgan.sweep.spec`, which
assembles these parts into a :class:`~adgan.sweep.spec.SweepSpec`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from adgan.errors import ConfigError, clip, short
from adgan.runkeys import is_seed

DIST_TYPES = ("loguniform", "uniform", "int", "categorical")
BUDGET_KEYS = ("trials_per_group", "max_epochs", "grace_period", "reduction_factor")
DATASET_OPTIONS = {"data_dir", "image_size", "scale", "max_train", "bf16", "subsample_baselines"}
def key_text(key: Any) -> str:
    """A mapping key as it appears in a key path: a short string as is, anything else shortened."""
    return key if isinstance(key, str) and len(key) <= 40 else short(key, 40)


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

    def n_values(self) -> int | None:
        """How many distinct values the search can draw: the choices, the integers of the range (every
        ``step``th), or None for a continuous range."""
        if self.type == "categorical":
            return len({json.dumps(c, sort_keys=True, default=str) for c in self.choices})
        if self.type == "int":
            return (int(self.high) - int(self.low)) // int(self.step) + 1
        return None

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
    """Trials per group and ASHA's settings (``max_epochs`` is ASHA's ``max_t``)."""

    trials_per_group: int
    max_epochs: int
    grace_period: int
    reduction_factor: float


def as_dict(value: Any) -> dict[str, Any]:
    """A ``dataset`` entry as a mapping: a plain name is short for ``{name: ...}``."""
    return {"name": value} if isinstance(value, str) else dict(value)


class Checker:
    """Builds error messages ``<file>: <key path>: <problem>``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {problem}" if key else f"{self.path}: {problem}")

    def mapping(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__} {short(value)}")
        return dict(value)

    def require(self, mapping: Mapping[str, Any], field: str, key: str) -> Any:
        if field not in mapping or mapping[field] is None:
            raise self.fail(f"{key}.{field}" if key else field, "missing required field")
        return mapping[field]

    def number(self, value: Any, key: str, *, integer: bool = False, positive: bool = False) -> Any:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if ok and integer and isinstance(value, float) and not value.is_integer():
            ok = False
        if ok and positive and value <= 0:
            ok = False
        if not ok:
            what = "integer" if integer else "number"
            article = "a positive" if positive else ("an" if integer else "a")
            raise self.fail(key, f"expected {article} {what}, got {short(value)}")
        return int(value) if integer else value

    def text(self, value: Any, key: str) -> str:
        """A plain string (not a number, list or mapping that would be turned into one)."""
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {type(value).__name__} {short(value)}")
        return value

    def unknown(self, mapping: Mapping[str, Any], allowed: set[str], key: str) -> None:
        extra = sorted((k for k in mapping if k not in allowed), key=str)
        if extra:
            where = f"{key}." if key else ""
            raise self.fail(
                f"{where}{key_text(extra[0])}", f"unknown key; expected one of: {', '.join(sorted(allowed))}"
            )


def _installed_example_hint(base_dir: Path | None) -> str:
    """For a shipped example spec run from an installed adgan (``adgan sweep own_images``): its data are
    the checkout's ``data/user/`` (``make user-data``), not beside the installed spec."""
    if base_dir is None or "site-packages" not in Path(base_dir).resolve().parts:
        return ""
    return ("; this example spec of an installed adgan reads the data/user/ folder of a source checkout "
            "(written there by `make user-data`): copy the spec (adgan specs shows where it is) beside your "
            "own data and set dataset.declare to your declaration")


def dataset_of(
    check: Checker, raw: Mapping[str, Any], known: list[str], base_dir: Path | None
) -> tuple[str, str | None, dict, dict | None]:
    """``(dataset, fallback, options, declaration)`` of the ``dataset`` section.

    A built-in dataset is named (``name``, among ``known``); a dataset of one's own is declared (``declare``:
    the declaration itself, or the path of its ``.yaml``/``.json`` file relative to the spec), registered
    here, and its declaration travels in every trial's config (``dataset_decl``).
    """
    from adgan.data import register_declared, resolve_declaration

    section = as_dict(check.require(raw, "dataset", ""))
    check.unknown(section, {"name", "fallback", "options", "declare"}, "dataset")
    declaration = None
    if section.get("declare") is not None:
        value = section["declare"]
        if not isinstance(value, str | Mapping):
            raise check.fail("dataset.declare", f"expected a declaration or the path of its file, got "
                                                f"{short(value)}")
        try:
            declaration = resolve_declaration(value, base_dir=base_dir)
            if declaration is None:
                raise ConfigError(f"{value}: no such declaration file (.yaml, .yml or .json)"
                                  + _installed_example_hint(base_dir))
            register_declared(declaration)
        except ConfigError as exc:
            raise check.fail("dataset.declare", clip(str(exc), 600)) from None
        if section.get("name") not in (None, declaration["name"]):
            raise check.fail("dataset.name", f"{short(section['name'])} differs from the declared name "
                                             f"{declaration['name']!r}; give one name or none")
        section["name"] = declaration["name"]
        known = [*known, declaration["name"]]
    dataset = check.text(check.require(section, "name", "dataset"), "dataset.name")
    for field in ("name", "fallback"):
        value = section.get(field)
        if value is not None and value not in known:
            raise check.fail(
                f"dataset.{field}", f"unknown dataset {short(value)}; expected one of: {', '.join(known)} "
                "(or dataset.declare for data of your own)"
            )
    options = check.mapping(section.get("options") or {}, "dataset.options")
    if "device" in options:
        # The device follows the GPU share Ray reserves for each trial: a device set here would make trials
        # use a GPU they never reserved (Ray leaves every GPU visible to a trial without one) or ask CPU
        # nodes for CUDA.
        raise check.fail(
            "dataset.options.device", "not a spec option: trials use CUDA exactly when resources.gpu > 0"
        )
    check.unknown(options, DATASET_OPTIONS, "dataset.options")
    if options.get("max_train") is not None:
        check.number(options["max_train"], "dataset.options.max_train", integer=True, positive=True)
    for flag in ("scale", "bf16", "subsample_baselines"):
        if options.get(flag) is not None and not isinstance(options[flag], bool):
            raise check.fail(f"dataset.options.{flag}", f"expected true or false, got {short(options[flag])}")
    data_dir = options.get("data_dir")
    if isinstance(data_dir, str) and base_dir is not None and not os.path.isabs(os.path.expanduser(data_dir)):
        # Relative to the spec, as every path of a spec is: the trials run in Ray's own working directory,
        # where a path relative to where `adgan sweep` was started names nothing. (An absolute one is kept
        # as written, its links too.)
        options = {**options, "data_dir": os.path.abspath(os.path.join(base_dir, data_dir))}
    return dataset, section.get("fallback"), options, declaration


def classes_of(
    check: Checker, value: Any, names: list[str] | tuple[str, ...], dataset: str
) -> tuple[int, ...]:
    """Class indices from ``all`` or a list of indices and class names."""
    if value == "all":
        return tuple(range(len(names)))
    if not isinstance(value, list) or not value:
        raise check.fail(
            "classes", f"expected 'all' or a non-empty list of class names or indices, got {short(value)}"
        )
    from adgan.data import class_index

    out: list[int] = []
    for i, c in enumerate(value):
        if not isinstance(c, int | str):
            raise check.fail(f"classes[{i}]", f"expected a class name or index, got {short(c)}")
        try:
            out.append(class_index(names, c, dataset))
        except ConfigError as exc:
            raise check.fail(f"classes[{i}]", str(exc)) from None
    if len(set(out)) != len(out):
        raise check.fail("classes", f"a class is listed twice: {short(value)}")
    return tuple(out)


def seeds_of(check: Checker, value: Any) -> tuple[int, ...]:
    """The seeds: a non-empty list of non-negative integers (the split's and the training's seeds)."""
    if not isinstance(value, list) or not value:
        raise check.fail("seeds", f"expected a non-empty list of integers, got {short(value)}")
    seeds = tuple(check.number(s, f"seeds[{i}]", integer=True) for i, s in enumerate(value))
    for i, seed in enumerate(seeds):
        if not is_seed(seed):
            raise check.fail(f"seeds[{i}]", f"expected an integer in 0 .. 2**32 - 1, got {seed}")
    if len(set(seeds)) != len(seeds):
        raise check.fail("seeds", f"a seed is listed twice: {short(value)}")
    return seeds


def model_spec(check: Checker, name: str, value: Any, kind: str, registry: Any) -> ModelSpec:
    """One entry of ``models``: the model must exist and take ``kind`` data (``image``/``tabular``)."""
    key = f"models.{name}"
    if name not in registry:
        raise check.fail(key, f"unknown model; expected one of: {', '.join(registry.names())} (a detector of "
                              "one's own is registered by loading its plugin: the spec's plugins:)")
    cls = registry.get(name)
    if kind not in cls.input_kinds:
        raise check.fail(
            key, f"model {name!r} does not accept {kind} data (it takes {', '.join(cls.input_kinds)})"
        )
    entry = check.mapping(value or {}, key)
    check.unknown(entry, {"loss_cases", "fixed", "search", "grace_period"}, key)
    cases_raw = entry.get("loss_cases", [cls.loss_cases[0]])
    cases = list(cls.loss_cases) if cases_raw == "all" else cases_raw
    if not isinstance(cases, list) or not cases:
        raise check.fail(f"{key}.loss_cases", f"expected 'all' or a list from: {', '.join(cls.loss_cases)}")
    for i, case in enumerate(cases):
        if case not in cls.loss_cases:
            raise check.fail(
                f"{key}.loss_cases[{i}]",
                f"unknown loss case {short(case)}; expected one of: {', '.join(cls.loss_cases)}",
            )
        if case in cases[:i]:
            raise check.fail(f"{key}.loss_cases[{i}]", f"loss case {short(case)} is listed twice")
    fixed = check.mapping(entry.get("fixed") or {}, f"{key}.fixed")
    search_raw = check.mapping(entry.get("search") or {}, f"{key}.search")
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    for section, params in (("fixed", fixed), ("search", search_raw)):
        for p in params:
            if p not in fields:
                raise check.fail(
                    f"{key}.{section}.{key_text(p)}",
                    f"unknown hyperparameter of {name!r}; expected one of: {', '.join(sorted(fields))}",
                )
            if p == "loss_case":
                raise check.fail(f"{key}.{section}.{p}", "set loss cases with models.<model>.loss_cases")
            if p == "epochs":  # (every trial gets budget.max_epochs; a value here would be overwritten)
                raise check.fail(f"{key}.{section}.{p}", "set a trial's epochs with budget.max_epochs (ASHA "
                                 "stops trials earlier, from grace_period on)")
    both = sorted(set(fixed) & set(search_raw))
    if both:
        raise check.fail(f"{key}.search.{both[0]}", "is also in fixed; a hyperparameter is fixed or searched")
    search = {p: distribution(check, v, f"{key}.search.{p}") for p, v in search_raw.items()}
    _check_search_types(check, cls, search, key)
    grace = entry.get("grace_period")
    if grace is not None:
        grace = check.number(grace, f"{key}.grace_period", integer=True, positive=True)
    return ModelSpec(name, tuple(cases), fixed, search, bool(cls.is_iterative), grace)


def _check_search_types(check: Checker, cls: Any, search: Mapping[str, Distribution], key: str) -> None:
    """Distributions that draw values of the hyperparameter's type: a ``uniform`` draw of an integer such
    as kNN's ``k`` (11.54) would fail every trial on Ray, a text choice of a number be recorded as text."""
    hints = typing.get_type_hints(cls.Config)
    for p, d in search.items():
        want = hints.get(p)
        if want is int and d.type in ("uniform", "loguniform"):
            raise check.fail(f"{key}.search.{p}.type", f"{p} is an integer hyperparameter: a {d.type} "
                             "distribution draws fractions; use type: int (with log: true for a log scale)")
        if d.type == "categorical" and want in (int, float):
            kind = "an integer" if want is int else "a number"
            for c in d.choices:
                if isinstance(c, bool) or not isinstance(c, int if want is int else (int, float)):
                    raise check.fail(f"{key}.search.{p}.choices", f"{short(c)} is not {kind}, as {p} is")


def distribution(check: Checker, value: Any, key: str) -> Distribution:
    """One search-space entry, e.g. ``{type: loguniform, low: 1e-4, high: 1e-2}``."""
    entry = check.mapping(value, key)
    kind = check.require(entry, "type", key)
    if kind not in DIST_TYPES:
        raise check.fail(
            f"{key}.type", f"unknown distribution {short(kind)}; expected one of: {', '.join(DIST_TYPES)}"
        )
    if kind == "categorical":
        check.unknown(entry, {"type", "choices"}, key)
        choices = check.require(entry, "choices", key)
        if not isinstance(choices, list) or not choices:
            raise check.fail(f"{key}.choices", f"expected a non-empty list, got {short(choices)}")
        return Distribution("categorical", choices=tuple(choices))
    integer = kind == "int"
    check.unknown(entry, {"type", "low", "high", "log", "step"} if integer else {"type", "low", "high"}, key)
    low = check.number(check.require(entry, "low", key), f"{key}.low", integer=integer)
    high = check.number(check.require(entry, "high", key), f"{key}.high", integer=integer)
    if low > high:
        raise check.fail(key, f"low ({low}) > high ({high}); expected low <= high")
    if low == high and not integer:  # (every trial would draw the same value: one setting run again)
        raise check.fail(key, f"low == high ({low}): a single value; put it in the model's fixed settings")
    if kind == "loguniform" and low <= 0:
        raise check.fail(f"{key}.low", f"a loguniform distribution needs low > 0, got {low}")
    step = check.number(entry.get("step", 1), f"{key}.step", integer=True, positive=True) if integer else 1
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise check.fail(f"{key}.log", f"expected true or false, got {short(log)}")
    if integer and log and (low <= 0 or step != 1):
        raise check.fail(key, "a log-scaled int distribution needs low >= 1 and step 1")
    return Distribution(kind, low=low, high=high, log=log, step=step)


def with_budget_overrides(check: Checker, raw: dict[str, Any], name: str) -> dict[str, Any]:
    """A named budget may also change data options (``options``), fixed hyperparameters
    (``fixed: {model: {...}}``) and the seeds, e.g. train on all samples with full-size networks."""
    named = raw.get("budgets") or {}
    if name == "default" or not isinstance(named, Mapping) or not isinstance(named.get(name), Mapping):
        return raw
    override, where = named[name], f"budgets.{name}"
    out = copy.deepcopy(raw)  # bounded: the YAML loader refused documents that expand beyond a small size
    if "seeds" in override:
        out["seeds"] = override["seeds"]  # checked with the spec's other fields
    if "options" in override:
        opts = check.mapping(override["options"], f"{where}.options")
        section = as_dict(check.require(out, "dataset", ""))
        section["options"] = {**check.mapping(section.get("options") or {}, "dataset.options"), **opts}
        out["dataset"] = section
    for model, fixed in check.mapping(override.get("fixed") or {}, f"{where}.fixed").items():
        models = check.mapping(check.require(out, "models", ""), "models")
        if model not in models:
            raise check.fail(f"{where}.fixed.{key_text(model)}", "is not a model of this spec")
        entry = check.mapping(models[model] or {}, f"models.{model}")
        entry["fixed"] = {
            **check.mapping(entry.get("fixed") or {}, f"models.{model}.fixed"),
            **check.mapping(fixed, f"{where}.fixed.{model}"),
        }
        models[model] = entry
        out["models"] = models
    return out


def budget_of(check: Checker, raw: Mapping[str, Any], name: str) -> Budget:
    """The ``budget`` section, or the named budget ``name`` applied over it."""
    base = check.mapping(check.require(raw, "budget", ""), "budget")
    check.unknown(base, set(BUDGET_KEYS), "budget")
    named = check.mapping(raw.get("budgets") or {}, "budgets")
    if name != "default":
        if name not in named:
            raise check.fail(
                "budgets",
                f"no budget named {short(name)}; expected one of: {', '.join(['default', *sorted(named)])}",
            )
        override = check.mapping(named[name], f"budgets.{name}")
        check.unknown(override, {*BUDGET_KEYS, "options", "fixed", "seeds"}, f"budgets.{name}")
        base = {**base, **{k: v for k, v in override.items() if k in BUDGET_KEYS}}
    where = "budget" if name == "default" else f"budgets.{name}"
    values = {k: check.require(base, k, where) for k in BUDGET_KEYS}
    budget = Budget(
        trials_per_group=check.number(
            values["trials_per_group"], f"{where}.trials_per_group", integer=True, positive=True
        ),
        max_epochs=check.number(values["max_epochs"], f"{where}.max_epochs", integer=True, positive=True),
        grace_period=check.number(
            values["grace_period"], f"{where}.grace_period", integer=True, positive=True
        ),
        reduction_factor=float(check.number(values["reduction_factor"], f"{where}.reduction_factor")),
    )
    if budget.grace_period > budget.max_epochs:
        raise check.fail(
            f"{where}.grace_period", f"{budget.grace_period} > max_epochs ({budget.max_epochs}); expected <="
        )
    if budget.reduction_factor <= 1:
        raise check.fail(f"{where}.reduction_factor", f"expected a number > 1, got {budget.reduction_factor}")
    return budget


def resources_of(check: Checker, raw: Mapping[str, Any]) -> tuple[float, float]:
    """``(cpus, gpu)`` per trial from the ``resources`` section (default 1 CPU, no GPU)."""
    section = check.mapping(raw.get("resources") or {}, "resources")
    check.unknown(section, {"cpus", "gpu"}, "resources")
    cpus = check.number(section.get("cpus", 1), "resources.cpus", positive=True)
    gpu = check_gpu(
        check.number(section.get("gpu", 0), "resources.gpu"), lambda msg: check.fail("resources.gpu", msg)
    )
    return float(cpus), gpu


def check_gpu(gpu: float, fail: Callable[[str], Exception]) -> float:
    """A GPU share per trial: a fraction in [0, 1] or a whole number; ``fail(message)`` otherwise."""
    if gpu < 0 or (gpu > 1 and not float(gpu).is_integer()):
        raise fail(f"expected a fraction in [0, 1] or a whole number of GPUs, got {gpu!r}")
    return float(gpu)
