"""``spec.json``: what a sweep records of its spec when it starts, and what a resume compares with it.

The record is the spec as parsed plus what was derived from it (the budget used, the resources each trial
got, the planned groups, trials per model, the plugins' code); ``defining`` is the part that defines the
sweep, which a resume (``check_same_spec``) and the dry run's estimate from earlier results
(``adgan.sweep.plan``) compare."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from typing import Any

from adgan import plugins
from adgan.errors import ConfigError
from adgan.sweep.spec import SweepSpec
from adgan.sweep.storage import Location

# Keys of a spec a resume may change: where results and W&B runs go, what each trial reserves (--gpu too)
# and the named budgets (the one used is compared as effective_budget); of the dataset section, its name
# and fallback (the dataset a resume uses is the one recorded in dataset.json), not its options.
RESUME_MAY_CHANGE = ("resources", "results", "wandb", "budgets", "description")
# What spec.json records beside the spec: derived from it or checked on their own (groups against Tune's
# state, plugin code by warn_if_plugins_changed), not compared as spec keys.
DERIVED = ("effective_resources", "groups", "model_trials", "plugin_sha256")


def defining(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a (recorded or current) spec that define the sweep, as JSON values."""
    # (the groups: compared with tuner.pkl's in _restored_tuner, after the dataset fallback is applied)
    out = {k: v for k, v in raw.items() if k not in (*RESUME_MAY_CHANGE, *DERIVED)}
    section = out.get("dataset")
    section = {"name": section} if isinstance(section, str) else dict(section or {})
    out["dataset"] = {k: v for k, v in section.items() if k not in ("name", "fallback")}
    return json.loads(json.dumps(out, default=str))


def check_same_spec(spec: SweepSpec, results: Location) -> None:
    """A resume continues the sweep that was started: groups, search spaces, budget and seeds as recorded
    in ``spec.json``. Tune and the searcher restore that sweep whatever the spec now says, so a spec edited
    since would be silently ignored (or break the reconciliation): refused, naming the keys.

    Raises:
        ConfigError: The spec differs from the recorded one outside ``RESUME_MAY_CHANGE``.
    """
    record = results.child("spec.json")
    if not record.is_file():
        return  # (a sweep killed before writing it: nothing to compare)
    recorded = defining(json.loads(record.read_text()))
    now = defining(spec_record(spec, spec.gpu))
    if "dataset_declaration" not in recorded:  # a sweep started before the declaration was recorded
        now.pop("dataset_declaration", None)
    differ = differing_keys(recorded, now)
    if differ:
        where = " (keys of the dataset's declaration file, dataset.declare)" if any(
            k.startswith("dataset_declaration") for k in differ) else ""
        raise ConfigError(
            f"{spec.path}: --resume: the spec differs from the one sweep {spec.name!r} started with "
            f"({record.uri}) in: {', '.join(differ)}{where}. A resume continues the sweep as it was started: "
            "restore those keys, or run the changed spec as a new sweep (another name or --results)"
        )


def sweep_plugins(spec: SweepSpec) -> list[str]:
    """The plugins a sweep's trials load: those this driver loaded from ADGAN_PLUGINS (the spec was checked
    with them; trials without them would all fail), then the spec's own."""
    return list(dict.fromkeys([*plugins.from_env(), *spec.plugins]))


def warn_if_plugins_changed(spec: SweepSpec, results: Location) -> None:
    """Say when a plugin's code differs from the sweep's start: the trials from now on run the new code,
    and the result rows do not tell which code made them (adgan's own code version they do record)."""
    record = results.child("spec.json")
    recorded = json.loads(record.read_text()).get("plugin_sha256") if record.is_file() else None
    if not isinstance(recorded, dict):
        return
    now = plugins.fingerprints(sweep_plugins(spec))
    changed = sorted(p for p in set(recorded) | set(now) if recorded.get(p) != now.get(p))
    if changed:
        print(f"adgan: warning: {spec.path}: --resume: plugin code changed since sweep {spec.name!r} started "
              f"({', '.join(changed)}): the trials still to run use the new code, the finished ones kept the "
              "old; run a new sweep for results of one code", file=sys.stderr)


def differing_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The key paths (``models.ganomaly.search.lr.high``) where two JSON values differ, sorted."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [path for k in sorted(set(old) | set(new), key=str)
                for path in differing_keys(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]


def spec_record(spec: SweepSpec, gpu: float) -> dict[str, Any]:
    """What ``spec.json`` holds: the spec as parsed, plus the budget actually used (a named budget
    overrides the spec's own), the resources each trial got and the planned groups."""
    return {
        **spec.raw, "budget_name": spec.budget_name, "effective_budget": dataclasses.asdict(spec.budget),
        # A declared dataset's declaration as read (the spec names only its file, which may be edited).
        "dataset_declaration": spec.dataset_decl,
        "effective_resources": {"cpus": spec.cpus, "gpu": gpu},  # after --gpu and the no-GPU fallback
        "groups": [g.id for g in spec.groups()],  # planned (adgan best says which have no result yet)
        # The code of the plugins the trials load (a resume says when it changed: rows do not record it).
        "plugin_sha256": plugins.fingerprints(sweep_plugins(spec)),
        # Trials per group of each model (SweepSpec.trials: fewer where a search space is small), for the
        # report's planned trials.
        "model_trials": {m.name: spec.trials(next(g for g in spec.groups() if g.model == m.name))
                         for m in spec.models},
    }


def write_spec_record(spec: SweepSpec, results: Location, gpu: float) -> None:
    """``spec.json`` (:func:`spec_record`)."""
    results.child("spec.json").write_text(json.dumps(spec_record(spec, gpu), indent=2, default=str))
