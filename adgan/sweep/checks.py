"""Validation helpers of sweep specs: each failure names the file, the key path and what was expected."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from adgan.errors import ConfigError
from adgan.sweep.spec import BUDGET_KEYS, DIST_TYPES, Budget, Distribution, ModelSpec


def as_dict(value: Any) -> dict[str, Any]:
    return {"name": value} if isinstance(value, str) else dict(value)


class Checker:
    """Builds error messages ``<file>: <key path>: <problem>``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {problem}" if key else f"{self.path}: {problem}")

    def mapping(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__} {value!r}")
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
            raise self.fail(key, f"expected {article} {what}, got {value!r}")
        return int(value) if integer else value

    def unknown(self, mapping: Mapping[str, Any], allowed: set[str], key: str) -> None:
        extra = sorted(set(mapping) - allowed)
        if extra:
            where = f"{key}." if key else ""
            raise self.fail(
                f"{where}{extra[0]}", f"unknown key; expected one of: {', '.join(sorted(allowed))}"
            )


def classes_of(ck: Checker, value: Any, names: list[str] | tuple[str, ...], dataset: str) -> tuple[int, ...]:
    if value == "all":
        return tuple(range(len(names)))
    if not isinstance(value, list) or not value:
        raise ck.fail("classes", f"expected 'all' or a non-empty list of class indices, got {value!r}")
    out: list[int] = []
    for i, c in enumerate(value):
        if isinstance(c, str) and c in names:
            c = list(names).index(c)
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < len(names):
            raise ck.fail(
                f"classes[{i}]",
                f"dataset {dataset!r} has no class {c!r}; expected 0..{len(names) - 1} or one of: "
                f"{', '.join(names)}",
            )
        out.append(c)
    if len(set(out)) != len(out):
        raise ck.fail("classes", f"a class is listed twice: {value!r}")
    return tuple(out)


def model_spec(ck: Checker, name: str, value: Any, kind: str, registry: Any) -> ModelSpec:
    key = f"models.{name}"
    if name not in registry:
        raise ck.fail(key, f"unknown model; expected one of: {', '.join(registry.names())}")
    cls = registry.get(name)
    if kind not in cls.input_kinds:
        raise ck.fail(
            key, f"model {name!r} does not accept {kind} data (it takes {', '.join(cls.input_kinds)})"
        )
    m = ck.mapping(value or {}, key)
    ck.unknown(m, {"loss_cases", "fixed", "search", "grace_period"}, key)
    cases_raw = m.get("loss_cases", [cls.loss_cases[0]])
    cases = list(cls.loss_cases) if cases_raw == "all" else cases_raw
    if not isinstance(cases, list) or not cases:
        raise ck.fail(f"{key}.loss_cases", f"expected 'all' or a list from: {', '.join(cls.loss_cases)}")
    for i, case in enumerate(cases):
        if case not in cls.loss_cases:
            raise ck.fail(
                f"{key}.loss_cases[{i}]",
                f"unknown loss case {case!r}; expected one of: {', '.join(cls.loss_cases)}",
            )
    fixed = ck.mapping(m.get("fixed") or {}, f"{key}.fixed")
    search_raw = ck.mapping(m.get("search") or {}, f"{key}.search")
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    for section, params in (("fixed", fixed), ("search", search_raw)):
        for p in params:
            if p not in fields:
                raise ck.fail(
                    f"{key}.{section}.{p}",
                    f"unknown hyperparameter of {name!r}; expected one of: {', '.join(sorted(fields))}",
                )
            if p == "loss_case":
                raise ck.fail(f"{key}.{section}.{p}", "set loss cases with models.<model>.loss_cases")
    both = sorted(set(fixed) & set(search_raw))
    if both:
        raise ck.fail(f"{key}.search.{both[0]}", "is also in fixed; a hyperparameter is fixed or searched")
    search = {p: distribution(ck, v, f"{key}.search.{p}") for p, v in search_raw.items()}
    grace = m.get("grace_period")
    if grace is not None:
        grace = ck.number(grace, f"{key}.grace_period", integer=True, positive=True)
    return ModelSpec(name, tuple(cases), fixed, search, bool(cls.is_iterative), grace)


def distribution(ck: Checker, value: Any, key: str) -> Distribution:
    d = ck.mapping(value, key)
    kind = ck.require(d, "type", key)
    if kind not in DIST_TYPES:
        raise ck.fail(
            f"{key}.type", f"unknown distribution {kind!r}; expected one of: {', '.join(DIST_TYPES)}"
        )
    if kind == "categorical":
        ck.unknown(d, {"type", "choices"}, key)
        choices = ck.require(d, "choices", key)
        if not isinstance(choices, list) or not choices:
            raise ck.fail(f"{key}.choices", f"expected a non-empty list, got {choices!r}")
        return Distribution("categorical", choices=tuple(choices))
    ck.unknown(d, {"type", "low", "high", "log", "step"} if kind == "int" else {"type", "low", "high"}, key)
    integer = kind == "int"
    low = ck.number(ck.require(d, "low", key), f"{key}.low", integer=integer)
    high = ck.number(ck.require(d, "high", key), f"{key}.high", integer=integer)
    if low > high:
        raise ck.fail(key, f"low ({low}) > high ({high}); expected low <= high")
    if kind == "loguniform" and low <= 0:
        raise ck.fail(f"{key}.low", f"a loguniform distribution needs low > 0, got {low}")
    step = ck.number(d.get("step", 1), f"{key}.step", integer=True, positive=True) if integer else 1
    log = bool(d.get("log", False))
    if integer and log and (low <= 0 or step != 1):
        raise ck.fail(key, "a log-scaled int distribution needs low >= 1 and step 1")
    return Distribution(kind, low=low, high=high, log=log, step=step)


def with_budget_overrides(ck: Checker, raw: dict[str, Any], name: str) -> dict[str, Any]:
    """A named budget may also change data options (``options``), fixed hyperparameters
    (``fixed: {model: {...}}``) and the seeds, e.g. train on all samples with full-size networks."""
    named = raw.get("budgets") or {}
    if name == "default" or not isinstance(named, Mapping) or not isinstance(named.get(name), Mapping):
        return raw
    override, where = named[name], f"budgets.{name}"
    out = copy.deepcopy(raw)
    if "seeds" in override:
        out["seeds"] = override["seeds"]  # checked with the spec's other fields
    if "options" in override:
        opts = ck.mapping(override["options"], f"{where}.options")
        ds = as_dict(ck.require(out, "dataset", ""))
        ds["options"] = {**ck.mapping(ds.get("options") or {}, "dataset.options"), **opts}
        out["dataset"] = ds
    for model, fixed in ck.mapping(override.get("fixed") or {}, f"{where}.fixed").items():
        models = ck.mapping(ck.require(out, "models", ""), "models")
        if model not in models:
            raise ck.fail(f"{where}.fixed.{model}", "is not a model of this spec")
        entry = ck.mapping(models[model] or {}, f"models.{model}")
        entry["fixed"] = {
            **ck.mapping(entry.get("fixed") or {}, f"models.{model}.fixed"),
            **ck.mapping(fixed, f"{where}.fixed.{model}"),
        }
        models[model] = entry
        out["models"] = models
    return out


def budget_of(ck: Checker, raw: Mapping[str, Any], name: str) -> Budget:
    base = ck.mapping(ck.require(raw, "budget", ""), "budget")
    ck.unknown(base, set(BUDGET_KEYS), "budget")
    named = ck.mapping(raw.get("budgets") or {}, "budgets")
    if name != "default":
        if name not in named:
            raise ck.fail(
                "budgets",
                f"no budget named {name!r}; expected one of: {', '.join(['default', *sorted(named)])}",
            )
        override = ck.mapping(named[name], f"budgets.{name}")
        ck.unknown(override, {*BUDGET_KEYS, "options", "fixed", "seeds"}, f"budgets.{name}")
        base = {**base, **{k: v for k, v in override.items() if k in BUDGET_KEYS}}
    where = "budget" if name == "default" else f"budgets.{name}"
    values = {k: ck.require(base, k, where) for k in BUDGET_KEYS}
    b = Budget(
        trials_per_group=ck.number(
            values["trials_per_group"], f"{where}.trials_per_group", integer=True, positive=True
        ),
        max_epochs=ck.number(values["max_epochs"], f"{where}.max_epochs", integer=True, positive=True),
        grace_period=ck.number(values["grace_period"], f"{where}.grace_period", integer=True, positive=True),
        reduction_factor=float(ck.number(values["reduction_factor"], f"{where}.reduction_factor")),
    )
    if b.grace_period > b.max_epochs:
        raise ck.fail(f"{where}.grace_period", f"{b.grace_period} > max_epochs ({b.max_epochs}); expected <=")
    if b.reduction_factor <= 1:
        raise ck.fail(f"{where}.reduction_factor", f"expected a number > 1, got {b.reduction_factor}")
    return b
