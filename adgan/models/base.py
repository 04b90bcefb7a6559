"""The detector contract shared by GANs and classical baselines.

In the spirit of PyOD, kept stricter:
- ``__init__`` only stores hyperparameters (validated into the model's ``Config`` dataclass); no networks,
  devices or seeds are touched there.
- ``fit_epochs(x)`` trains, yielding one dict of losses per epoch, so ``adgan.train.train`` can evaluate
  between epochs; ``fit(x)`` runs all epochs and returns ``self``.
- ``score(x)`` returns one float per sample, higher = more anomalous, independent of how ``x`` is batched.
- ``save(path)`` / ``load(path)`` write and read a directory: ``detector.json`` (format version, model name,
  config, input shape, metadata such as preprocessing facts) and ``state.pt`` (tensors, arrays and plain
  values only, read back with ``torch.load(weights_only=True)`` so a checkpoint cannot run code).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import sys
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, get_args

import numpy as np
import torch

from adgan.atomic import replacing_dir
from adgan.errors import ConfigError, ContractError, DataError, InputWarning, short
from adgan.registry import Registry
from adgan.runfiles import PLUGIN_DIR
from adgan.runkeys import RUN_DEFAULTS, SEEDS, is_seed

FORMAT_VERSION = 1
D = TypeVar("D", bound="Detector")
C = TypeVar("C", bound="DetectorConfig")

DETECTORS: Registry[type[Detector]] = Registry("detector")


@dataclasses.dataclass
class DetectorConfig:
    """The hyperparameter every detector has (``loss_case``); subclasses add their own fields.

    Names mean one thing wherever a detector has them (``SHARED_RANGES``): the GANs share ``lr``,
    ``epochs``, ``batch_size``, ``latent_dim`` (``GANConfig``); a baseline has none of those it does not
    use, and refuses them (kNN's ``batch_size`` is its scoring chunk).
    """

    loss_case: str = "default"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def make_config(cls: type[DetectorConfig], model: str, hparams: dict[str, Any]) -> DetectorConfig:
    """Build ``cls`` from ``hparams``, refusing unknown keys and values of the wrong type."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(hparams) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown hyperparameter(s) for model {model!r}: {', '.join(unknown)}; "
            f"expected some of: {', '.join(sorted(fields))}"
        )
    coerced: dict[str, Any] = {}
    hints: dict[str, Any] | None = None
    for key, value in hparams.items():
        default = fields[key].default
        if default is dataclasses.MISSING and fields[key].default_factory is not dataclasses.MISSING:
            default = fields[key].default_factory()
        if default is None or default is dataclasses.MISSING:
            # No default to take the type from: the annotation's (``float | None``: a float, or None).
            hints = hints if hints is not None else _type_hints(cls)
            kind, optional = _plain_type(hints.get(key))
            if kind is not None and not (optional and value is None):
                coerced[key] = _coerce(model, key, value, kind())
                continue
        coerced[key] = _coerce(model, key, value, default)
    return cls(**coerced)


def _type_hints(cls: type) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 (an annotation naming what its module cannot resolve: left unchecked)
        return {}


def _plain_type(hint: Any) -> tuple[type | None, bool]:
    """``(bool/int/float/str, optional)`` of an annotation such as ``float`` or ``float | None``; ``(None,
    ...)`` for anything else (left unchecked)."""
    import types
    import typing

    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    args = typing.get_args(hint) if union else (hint,)
    plain = [a for a in args if a is not type(None)]
    kind = plain[0] if len(plain) == 1 and plain[0] in (bool, int, float, str) else None
    return kind, type(None) in args


def _coerce(model: str, key: str, value: Any, default: Any) -> Any:
    """Coerce plain values (from YAML, CLI or Optuna) to the type of the field's default."""
    if default is dataclasses.MISSING or default is None:
        return value  # (a field without a default, or an optional one)
    kind = type(default)
    try:
        if value is None or (isinstance(value, bool) and kind in (int, float)):
            raise ValueError  # (YAML's `lr: ~`; True is no learning rate, though Python calls it 1)
        if kind is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            return bool(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind is float:
            return float(value)
        if kind is str:
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise ConfigError(f"hyperparameter {key!r} of model {model!r}: expected {kind.__name__}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Range:
    """The valid values of a numeric hyperparameter: ``low`` .. ``high``, each end open or closed.

    Checked when a config is built (a sweep spec: before Ray starts), never by torch mid-run.
    """

    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    note: str = ""

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below  # both False for NaN

    def text(self) -> str:
        """``"> 0"``, ``">= 1"``, ``"in (0, 1]"``..."""
        if math.isinf(self.high):
            text = f"{'>' if self.low_open else '>='} {self.low:g}"
        else:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            text = f"in {left}{self.low:g}, {self.high:g}{right}"
        return f"{text} ({self.note})" if self.note else text

    def outside(self) -> list[float]:
        """Values just outside the range (for tests and examples)."""
        out = [self.low if self.low_open else self.low - 1]
        if not math.isinf(self.high):
            out.append(self.high if self.high_open else self.high + 1)
        return out


def ranged(default: Any, valid: Range) -> Any:
    """A config field with a model-specific ``Range`` (the shared names have theirs in ``SHARED_RANGES``)."""
    return dataclasses.field(default=default, metadata={"range": valid})


# Ranges of the shared hyperparameter vocabulary, checked for every detector that has the field.
SHARED_RANGES: dict[str, Range] = {
    "lr": Range(0.0, low_open=True),
    "search_lr": Range(0.0, low_open=True),
    "beta1": Range(0.0, 1.0, high_open=True),
    "lam": Range(0.0, 1.0),
    "epochs": Range(0),
    "latent_dim": Range(0, note="0: the model's default"),
    "batch_size": Range(1),
    "base_filters": Range(1),
    "gamma_steps": Range(1),
    "search_batch_size": Range(1),
    "fit_samples": Range(0, note="0: all rows"),
}
LOSS_WEIGHT = Range(0.0)  # every ``w_*`` field: a loss weight


def valid_range(field: dataclasses.Field[Any]) -> Range | None:
    """The ``Range`` of a config field: its own, the shared one of its name, ``LOSS_WEIGHT`` for ``w_*``."""
    if "range" in field.metadata:
        return field.metadata["range"]
    if field.name in SHARED_RANGES:
        return SHARED_RANGES[field.name]
    return LOSS_WEIGHT if field.name.startswith("w_") else None


def check_ranges(model: str, config: DetectorConfig) -> None:
    """Refuse non-finite values (NaN, +-inf) of any numeric hyperparameter and values outside a field's
    ``valid_range``."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(value):  # NaN and +-inf: no hyperparameter of any model means anything there
            raise ConfigError(
                f"hyperparameter {field.name!r} of model {model!r}: expected a finite number, got {value!r}"
            )
        valid = valid_range(field)
        if valid is not None and value not in valid:
            raise ConfigError(
                f"hyperparameter {field.name!r} of model {model!r}: expected {valid.text()}, got {value!r}"
            )


class Detector(ABC, Generic[C]):
    """Base class of every detector. See the module docstring for the contract.

    A detector names its hyperparameter dataclass once, as the type argument of its base
    (``class KNN(_Baseline[KNNConfig])``): that gives ``self.config`` its static type and sets ``Config``.

    Class attributes set by subclasses:
        name: Registry name.
        family: ``"gan"`` or ``"baseline"``: how sweeps, ``adgan best`` and reports group detectors (result
            rows carry it, so readers need neither torch nor a list of names).
        Config: The hyperparameter dataclass (from the base's type argument, or inherited).
        loss_cases: Valid values of ``config.loss_case``; the first is the default.
        input_kinds: Which data kinds the detector accepts, subset of ("image", "tabular").
        preferred_image_size: Image side the detector's networks are designed for (28 or 32).
        is_iterative: True for detectors trained over several epochs (GANs), False for one-shot fits.
        uses_accelerator: False for detectors that compute on the CPU whatever ``device`` says (a sweep
            runs their trials with device "cpu").
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    Config: ClassVar[type[DetectorConfig]] = DetectorConfig
    loss_cases: ClassVar[tuple[str, ...]] = ("default",)
    input_kinds: ClassVar[tuple[str, ...]] = ("image", "tabular")
    preferred_image_size: ClassVar[int] = 28
    is_iterative: ClassVar[bool] = True
    uses_accelerator: ClassVar[bool] = True
    config: C

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # ``class X(Base[XConfig])``: the type argument is the runtime Config too (one declaration, not two).
        for base in cls.__dict__.get("__orig_bases__", ()):
            arg = next(iter(get_args(base)), None)
            if isinstance(arg, type) and issubclass(arg, DetectorConfig):
                cls.Config = arg

    def __init__(self, **hparams: Any) -> None:
        self.config = self._checked(hparams)
        self.input_shape: tuple[int, ...] | None = None
        self.meta: dict[str, Any] = {}
        self.device = torch.device("cpu")
        self.bf16 = False

    def _checked(self, hparams: Mapping[str, Any]) -> C:
        """The config of ``hparams``: names, types, ranges and the loss case checked."""
        config = make_config(self.Config, self.name, dict(hparams))
        if "loss_case" not in hparams:
            config.loss_case = self.loss_cases[0]
        if config.loss_case not in self.loss_cases:
            raise ConfigError(
                f"loss_case {config.loss_case!r} is not valid for model {self.name!r}; "
                f"expected one of: {', '.join(self.loss_cases)}"
            )
        check_ranges(self.name, config)
        return config  # type: ignore[return-value]

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, by the names the constructor takes (scikit-learn's and PyOD's spelling)."""
        return self.config.to_dict()

    def set_params(self: D, **hparams: Any) -> D:
        """Change hyperparameters, checked as the constructor checks them; returns ``self``. A fitted
        detector keeps its fit until it is fitted again."""
        self.config = self._checked({**self.get_params(), **hparams})
        return self

    # ----- training -----
    @property
    def n_epochs(self) -> int:
        """How many epochs ``fit_epochs`` yields."""
        return int(getattr(self.config, "epochs", 1)) if self.is_iterative else 1

    def fit_epochs(
        self,
        x: np.ndarray,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        bf16: bool = False,
        resume: Mapping[str, Any] | None = None,
    ) -> Iterator[dict[str, float]]:
        """Train on normal samples ``x`` ((N, C, H, W) or (N, D), float32), yielding losses per epoch.

        The input is checked (and the device and bf16 option recorded) at this call; the epochs run as the
        returned iterator is advanced. ``resume``: a ``training_state()`` saved after some epochs of the
        same config, data and seed; the loop continues from there and yields the remaining epochs, exactly
        as an uninterrupted run would.

        Raises:
            DataError: Input of the wrong kind or shape, integer image pixels, or data the model's
                hyperparameters cannot train on (``check_data``, ``check_training_data``).
            ConfigError: A seed outside 0 .. 2**32 - 1, a device torch cannot use, a bf16 not boolean.
            DivergedError: A loss became NaN or infinite (from the iterator).
        """
        # Checked again: ``config`` is a plain dataclass, which a caller may have changed since (set_params
        # is the checked way).
        self.config = self._checked(self.config.to_dict())
        if not is_seed(seed):
            raise ConfigError(f"{self.name}: seed must be {SEEDS}, got {seed!r}")
        before = (self.input_shape, self.device, self.bf16)
        self._set_input(x, device, bf16)
        try:
            checked = self.check_input(x, "training data")
            self.check_data(tuple(checked.shape[1:]))
            self.check_training_data(checked)
        except DataError:
            # Refused data leaves the detector as it was (its networks stay where they are).
            self.input_shape, self.device, self.bf16 = before
            raise
        self._progress = None  # (a previous fit's epoch would read as this one's)
        epochs = self._train(checked, int(seed), resume)
        if not isinstance(epochs, Iterator):
            raise ConfigError(f"{self.name}: _train returned {type(epochs).__name__}; it must be a "
                              "generator that yields a dict of losses per epoch (one yield for a one-step "
                              "detector), see docs/architecture.md")
        return self._counted(epochs, int(resume["epoch"]) if resume is not None else 0)

    def _counted(self, epochs: Iterator[dict[str, float]], done: int) -> Iterator[dict[str, float]]:
        """``epochs`` checked as they come: an iterative detector's loop yields epoch ``done + 1`` next (its
        ``track_progress`` says which), never more than ``n_epochs`` in all. A hand-written ``_train`` that
        ignored ``resume`` would otherwise train again from scratch, its epochs counted after the saved
        ones: a resumed run with more epochs than asked, silently.

        Raises:
            ContractError: The loop yielded another epoch than the next, or one too many.
        """
        resumed = done > 0
        try:
            for losses in epochs:
                done += 1
                progress = self._progress
                if self.is_iterative and progress is not None and progress[0] != done:
                    raise ContractError(
                        f"{self.name}: its training loop yielded epoch {progress[0]} where epoch {done} was "
                        "next" + (" (it was resumed: _train must continue from its resume argument: "
                                  "load_state(resume['state']), then start after "
                                  "self._resume(resume, optimizers, generator); see docs/architecture.md)"
                                  if resumed and progress[0] < done else ""))
                if done > self.n_epochs:
                    raise ContractError(f"{self.name}: its training loop yielded epoch {done} of "
                                        f"{self.n_epochs} (config epochs)")
                yield losses
        finally:
            close = getattr(epochs, "close", None)
            if close is not None:
                close()

    def check_training_data(self, x: np.ndarray) -> None:
        """What a detector's training needs of its checked input ``x`` beyond its kind and shape (e.g. a
        minimum number of samples), refused at ``fit_epochs``' call rather than at its first epoch.

        Raises:
            DataError: Saying what is needed.
        """

    @abstractmethod
    def _train(
        self, x: np.ndarray, seed: int, resume: Mapping[str, Any] | None
    ) -> Iterator[dict[str, float]]:
        """The training of ``fit_epochs`` on checked float32 input ``x``; yields losses per epoch."""

    # ----- continuing an interrupted training -----
    def track_progress(
        self, epoch: int, optimizers: Mapping[str, torch.optim.Optimizer], gen: torch.Generator
    ) -> None:
        """Called by an iterative detector's training loop before it yields ``epoch`` (1-based): what
        ``training_state`` saves (so that a run can be resumed; ``GANDetector``'s loop calls it)."""
        self._progress = (epoch, dict(optimizers), gen)

    def training_state(self) -> dict[str, Any]:
        """Everything ``fit_epochs(..., resume=state)`` needs to continue after the last yielded epoch:
        the epoch, the fitted state, the optimisers and the random generators. Tensors are the live ones:
        save the result (``torch.save``) before the training loop goes on."""
        progress = getattr(self, "_progress", None)
        if progress is None:
            raise DataError(f"{self.name}: no training in progress to save: an iterative detector's training "
                            "loop calls self.track_progress(epoch, optimizers, generator) before each yield "
                            "(GANDetector's loop does; see docs/architecture.md); a detector that fits in "
                            "one step declares is_iterative = False")
        epoch, optimizers, gen = progress
        return {
            "format_version": FORMAT_VERSION,
            "model": self.name,
            "epoch": epoch,
            "state": _to_saveable(self.state()),
            "optimizers": {k: opt.state_dict() for k, opt in optimizers.items()},
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            # Dropout and re-initialisation on a GPU draw from its own generator: saved too, so that a run
            # continued on CUDA goes on exactly as the uninterrupted one.
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        }

    def _resume(
        self,
        resume: Mapping[str, Any],
        optimizers: Mapping[str, torch.optim.Optimizer],
        gen: torch.Generator,
    ) -> int:
        """Restore optimisers and random generators from ``training_state()``; returns the epochs done.
        The loop has already rebuilt the networks with ``load_state(resume["state"])``."""
        for key, opt in optimizers.items():
            opt.load_state_dict(resume["optimizers"][key])
        gen.set_state(resume["generator"])
        torch.set_rng_state(resume["torch_rng"])
        if self.device.type == "cuda" and resume.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(resume["cuda_rng"], self.device)
        return int(resume["epoch"])

    def fit(self: D, x: np.ndarray, **kwargs: Any) -> D:
        """Run every epoch of ``fit_epochs``; returns ``self``."""
        for _ in self.fit_epochs(x, **kwargs):
            pass
        return self

    @abstractmethod
    def score(self, x: np.ndarray) -> np.ndarray:
        """Anomaly scores (N,) float64 for ``x``, higher = more anomalous."""

    # ----- input checks -----
    def check_data(self, input_shape: tuple[int, ...]) -> None:
        """Refuse hyperparameters that cannot work on samples of ``input_shape`` ((D,) or (C, H, W)), with a
        ``DataError`` saying why: called by the fits that need it and by a sweep's driver once it has
        loaded the data (``adgan.sweep.spec.check_configs_on_data``), before any trial. Nothing by default."""

    def _set_input(self, x: np.ndarray, device: str | torch.device, bf16: bool) -> None:
        """Record the input shape on the first fit and the runtime options; refuse or warn about input
        that would train silently on the wrong thing (see ``check_images``, ``_looks_flattened``)."""
        x = np.asarray(x)
        if x.ndim not in (2, 4) or 0 in x.shape:
            raise DataError(
                f"{self.name}: expected a non-empty array of shape (N, C, H, W) or (N, D) (every size >= 1), "
                f"got {x.shape}"
            )
        dev = torch_device(device, f"{self.name}: device")
        if not isinstance(bf16, bool | np.bool_):
            raise ConfigError(f"{self.name}: bf16 must be true or false, got {bf16!r}")
        kind = "image" if x.ndim == 4 else "tabular"
        if kind not in self.input_kinds:
            raise DataError(f"{self.name}: {kind} input is not supported (supports {self.input_kinds})")
        if kind == "image":
            check_images(self.name, x)
        elif self.family == "gan" and _looks_flattened(x):
            warnings.warn(
                f"{self.name}: tabular input of {x.shape[1]} columns, all in [-1, 1]: if these are "
                "flattened images, pass them as (N, C, H, W) so that the image networks are used",
                InputWarning,
                stacklevel=3,
            )
        self.input_shape = tuple(int(s) for s in x.shape[1:])
        self.device = dev
        self.bf16 = bool(bf16)

    def check_input(self, x: np.ndarray, what: str = "input") -> np.ndarray:
        """Validate ``x`` against the fitted input shape; returns it as float32 (N, ...). NaN and infinite
        values are refused for every detector (a GAN would otherwise train to a NaN loss, reported as a
        diverged model, or score NaN)."""
        if self.input_shape is None:
            raise DataError(f"{self.name}: the detector is not fitted; call fit() or load() first")
        x = np.asarray(x)
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise DataError(
                f"{self.name}: expected input of shape (N, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
            )
        if not np.issubdtype(x.dtype, np.number):
            raise DataError(f"{self.name}: expected numeric input, got dtype {x.dtype}")
        if x.ndim == 4:
            check_images(self.name, x)  # (on the dtype given: integer pixels are refused)
        with np.errstate(over="ignore"):
            x32 = x.astype(np.float32, copy=False)
        finite = np.isfinite(x32)  # (one pass over the input when all is well: scoring calls this)
        if not finite.all():
            given = ~np.isfinite(x)  # non-finite as given, or only after the cast to float32
            if given.any():
                raise DataError(f"{self.name}: {what} contains {int(given.sum())} NaN or infinite value(s) "
                                f"(the first in sample {int(np.argwhere(given)[0][0])}, counting from 0)")
            raise DataError(f"{self.name}: {what} holds values beyond float32's range (about 3.4e38; the "
                            f"first in sample {int(np.argwhere(~finite)[0][0])}, counting from 0)")
        return x32

    # ----- persistence -----
    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Everything ``load_state`` needs: tensors, numpy arrays and plain values only."""

    @abstractmethod
    def load_state(self, state: dict[str, Any]) -> None:
        """Rebuild the fitted detector from ``state()``; ``self.input_shape`` is already set."""

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the detector to directory ``path`` atomically (a temporary sibling, then a rename). An
        existing ``path`` is replaced whole when it is a saved detector (or empty); any other folder or
        file there is refused (``DataError``), never deleted."""
        if self.input_shape is None:
            raise DataError(f"{self.name}: cannot save an unfitted detector")
        path = Path(path)
        refuse_foreign_folder(path)
        header = {
            "format_version": FORMAT_VERSION,
            "model": self.name,
            "config": self.config.to_dict(),
            "input_shape": list(self.input_shape),
            "meta": self.meta,
        }
        plugin = _plugin_of(type(self))
        if plugin is not None:  # a detector of one's own: what a process loading it must import first
            header["plugin"] = plugin
            from adgan import plugins

            # Which code it was: the plugin's file may change afterwards (export compares).
            sha = plugins.fingerprints([plugin]).get(plugin)
            if sha:
                header["plugin_sha256"] = sha
        with replacing_dir(path) as tmp:
            (tmp / "detector.json").write_text(json.dumps(header, indent=2, sort_keys=True, default=str))
            torch.save(_to_saveable(self.state()), tmp / "state.pt")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Detector:
        """Load a detector saved by ``save``; works on ``Detector.load`` (any model) or a subclass."""
        path = Path(path)
        header_file = path / "detector.json"
        if not header_file.is_file():
            raise DataError(f"{path}: not a detector checkpoint (no detector.json)")
        try:
            header = json.loads(header_file.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{header_file}: not valid JSON ({exc})") from None
        if not isinstance(header, dict):
            raise DataError(f"{header_file}: expected a JSON object, got {type(header).__name__}")
        version = header.get("format_version")
        if version != FORMAT_VERSION:
            raise DataError(f"{header_file}: format_version {version!r}, this adgan reads {FORMAT_VERSION}")
        missing = [k for k in ("model", "config", "input_shape") if k not in header]
        if missing:
            raise DataError(f"{header_file}: missing field(s) {', '.join(missing)}")
        shape = header["input_shape"]
        if not isinstance(header["config"], dict):
            raise DataError(f"{header_file}: config: expected an object of hyperparameters, got "
                            f"{short(header['config'])}")
        if not (isinstance(shape, list) and len(shape) in (1, 3)
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)):
            raise DataError(f"{header_file}: input_shape: expected [D] or [C, H, W] of positive integers, "
                            f"got {short(shape)}")
        if header["model"] not in DETECTORS:
            plugin = header.get("plugin")
            # An export carries a copy of its plugin file (adgan export): where the recorded one is gone
            # (another machine), that copy is what to load.
            bundled = path / PLUGIN_DIR / Path(plugin).name if isinstance(plugin, str) else None
            if bundled is not None and bundled.is_file() and not Path(plugin).is_file():
                plugin = str(bundled)
            hint = (f"; it was saved from the plugin {plugin}: load that first (ADGAN_PLUGINS={plugin} for "
                    "the adgan command)") if isinstance(plugin, str) else (
                "; a detector of one's own is registered by importing its plugin first "
                "(ADGAN_PLUGINS=<module or .py file> for the adgan command)")
            raise DataError(
                f"{header_file}: model {header['model']!r} is not registered in this adgan "
                f"(expected one of: {', '.join(DETECTORS.names())}){hint}"
            )
        model_cls = DETECTORS.get(header["model"])
        _warn_if_plugin_changed(model_cls, header, header_file)
        if cls is not Detector and not issubclass(model_cls, cls):
            raise DataError(f"{path}: holds a {header['model']!r} detector, not {cls.name!r}")
        try:
            det = model_cls(**header["config"])
        except ConfigError as exc:
            raise DataError(f"{header_file}: config: {exc}") from None
        det.input_shape = tuple(header["input_shape"])
        det.meta = header.get("meta", {})
        det.device = torch_device(device, f"{path}: load on device")
        state_file = path / "state.pt"
        if not state_file.is_file():
            raise DataError(f"{state_file}: missing (the detector's weights and fitted state)")
        what = f"{header['model']} state"
        state = load_tensors(state_file, what, det.device)
        try:
            det.load_state(state)
        except (RuntimeError, KeyError, ValueError) as exc:  # weights of other shapes, missing keys
            raise DataError(f"{state_file}: not a readable {what} ({_first_line(exc)})") from None
        return det


def refuse_foreign_folder(path: Path) -> None:
    """``Detector.save(path)`` replaces ``path`` whole: refuse (never delete) anything there that is not a
    saved detector or an empty folder.

    Raises:
        DataError: Naming ``path``.
    """
    saved = path.is_dir() and ((path / "detector.json").is_file() or not any(path.iterdir()))
    if path.exists() and not saved:
        raise DataError(f"{path}: exists and is not a saved detector (no detector.json): not replaced; "
                        "save to a new or empty folder")


def device_name(device: str | torch.device, who: str = "device") -> str:
    """``device`` (a name or a ``torch.device``) as its name, checked for form only (``auto``, ``cpu``,
    ``cuda`` or ``cuda:N``), not for a GPU here: a sweep's driver checks what its workers will use.
    ``who`` starts the message.

    Raises:
        ConfigError: Another name.
    """
    name = str(device)
    kind, _, index = name.partition(":")
    if name != "auto" and (kind not in ("cpu", "cuda") or (index and not index.isdigit())
                           or (kind == "cpu" and index)):
        raise ConfigError(f"{who} {device!r}: expected auto, cpu, cuda or cuda:N")
    return name


def torch_device(device: str | torch.device, who: str = "device") -> torch.device:
    """``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` (or a ``torch.device``) -> a device torch has; CUDA runs in
    full fp32 (``exact_float32``). ``who`` starts the messages.

    Raises:
        ConfigError: Another name, CUDA asked for where torch sees none, or a ``cuda:N`` beyond the GPUs.
    """
    name = device_name(device, who)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = name.partition(":")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{who} {device!r} was asked for but torch sees no CUDA device")
        if index and int(index) >= torch.cuda.device_count():
            raise ConfigError(f"{who} {device!r}: expected cuda:0..cuda:{torch.cuda.device_count() - 1} (the "
                              "GPUs this process sees)")
    dev = torch.device(name)
    exact_float32(dev)  # no TF32
    return dev


def exact_float32(device: torch.device) -> None:
    """On CUDA, turn TF32 off (for the process): TF32 convolutions and matrix products (cuDNN's default on
    Ampere and later) round inputs to 10-bit mantissas, so scores would depend on batch composition and
    differ from run to run; ``bf16`` is the speed option. Called wherever a detector is placed on a device,
    so that the Python API and ``adgan train`` score alike."""
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def check_images(model: str, x: np.ndarray) -> None:
    """Image input (N, C, H, W) must be float pixels in model space, [-1, 1].

    Raw integer pixels (0..255) are refused: a network fed them trains and scores on a scale it was never
    meant for, silently. Floats outside [-1, 1] get a warning (slightly out-of-range noise is harmless;
    0..255 floats are not).

    Raises:
        DataError: Integer pixels.
    """
    if np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        raise DataError(
            f"{model}: got {x.dtype} image pixels; detectors take float pixels in [-1, 1] (model space): "
            "convert raw pixels with adgan.data.prepare_input(x, info) or (x / 127.5 - 1)"
        )
    if x.size and np.issubdtype(x.dtype, np.floating):
        lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
        # (infinite pixels are refused by check_input, naming the sample: no warning about them first)
        if math.isfinite(lo) and math.isfinite(hi) and (lo < -1.0 - 1e-3 or hi > 1.0 + 1e-3):
            warnings.warn(
                f"{model}: image pixels span {lo:.4g}..{hi:.4g}; detectors expect model space [-1, 1] "
                "(adgan.data.prepare_input converts raw pixels)",
                InputWarning,
                stacklevel=4,
            )


def _looks_flattened(x: np.ndarray) -> bool:
    """(N, D) input whose width is that of flattened 1- or 3-channel 28x28 / 32x32 images, all in [-1, 1]."""
    widths = {c * s * s for c in (1, 3) for s in (28, 32)}
    if x.shape[1] not in widths or not np.issubdtype(x.dtype, np.floating):
        return False
    sample = x[:256]
    return bool(np.nanmin(sample) >= -1.0 and np.nanmax(sample) <= 1.0)


def load_tensors(path: Path, what: str, map_location: str | torch.device) -> Any:
    """``torch.load(path, weights_only=True)``; a file that is not such a file is a ``DataError``
    naming it and ``what`` was expected there."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    # A text file fed to the weights-only unpickler fails on whichever opcode its bytes spell: also with
    # KeyError (an unknown memo index) or IndexError (a pop from its empty stack).
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, IndexError, pickle.UnpicklingError) as exc:
        raise DataError(f"{path}: not a readable {what} ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _to_saveable(obj: Any) -> Any:
    """numpy arrays -> tensors (so ``weights_only`` loading accepts them), recursively."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, dict):
        return {k: _to_saveable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_saveable(v) for v in obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def create_detector(name: str, **hparams: Any) -> Detector:
    """Build the registered detector ``name`` from flat hyperparameters (no work is done yet)."""
    return DETECTORS.get(name)(**hparams)


def list_detectors(family: str | None = None) -> list[str]:
    """Registered detector names, sorted; only those of ``family`` ("gan" / "baseline") when given.

    Raises:
        ConfigError: ``family`` is not one of ``FAMILIES`` (``"GAN"``, ``"baselines"`` would list nothing).
    """
    if family is not None and family not in FAMILIES:
        raise ConfigError(f"unknown detector family {family!r}; expected one of: {', '.join(FAMILIES)}")
    return [n for n in DETECTORS.names() if family is None or DETECTORS.get(n).family == family]


FAMILIES = ("gan", "baseline")


def scores_of(detector: Detector, x: np.ndarray) -> np.ndarray:
    """``detector.score(x)``, its result checked against the contract: a numpy array of N finite-or-NaN
    floats, shape (N,). A detector of one's own that returns (N, 1), a torch tensor or N - 1 scores is
    named here, instead of failing later in the metrics or the output with a message about neither.

    Raises:
        DataError: The scores are not a numeric numpy array of shape (N,).
    """
    scores = detector.score(x)
    n = len(x)
    if not isinstance(scores, np.ndarray) or scores.shape != (n,) \
            or not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)):
        got = (f"a {scores.dtype} array of shape {scores.shape}" if isinstance(scores, np.ndarray)
               else type(scores).__name__)
        raise DataError(f"{detector.name}: score() of {n} samples returned {got}; the detector contract is a "
                        f"numpy float array of shape ({n},), higher = more anomalous")
    return scores.astype(np.float64, copy=False)


def _same_definition(a: type, b: type) -> bool:
    """Whether two classes are one class statement of one source file (imported twice)."""
    import inspect

    try:
        fa, fb = inspect.getsourcefile(a), inspect.getsourcefile(b)
    except TypeError:
        return False
    return a.__qualname__ == b.__qualname__ and fa is not None and fb is not None and \
        os.path.realpath(fa) == os.path.realpath(fb)


def _plugin_of(cls: type) -> str | None:
    """How to import the plugin that defines ``cls``: its ``.py`` file when it was loaded from one
    (``adgan.plugins``), else its module name; None for adgan's own detectors."""
    from adgan import plugins

    module = cls.__module__
    if module == "adgan" or module.startswith("adgan."):
        return None
    if module.startswith(plugins.MODULE_PREFIX):
        origin = getattr(sys.modules.get(module), "__file__", None)
        return str(origin) if origin else None
    return None if module == "__main__" else module


def _warn_if_plugin_changed(model_cls: type, header: Mapping[str, Any], header_file: Path) -> None:
    """Say (``InputWarning``) when the plugin code loaded for a saved detector is not the file it was saved
    with: a changed ``score`` loads without any error and scores otherwise than the detector trained.
    Not refused: the change may be harmless (a comment), which only its author knows."""
    trained_with = header.get("plugin_sha256")
    plugin = _plugin_of(model_cls)
    if not isinstance(trained_with, str) or plugin is None:
        return
    from adgan import plugins

    now = plugins.fingerprints([plugin]).get(plugin)
    if now is not None and now != trained_with:
        warnings.warn(f"{header_file}: the {header['model']!r} detector was saved with other plugin code "
                      f"(sha256 {trained_with[:12]}) than {plugin} loaded now ({now[:12]}): its scores may "
                      "not be those of the detector as trained", InputWarning, stacklevel=3)


def _check_contract(cls: type[Detector]) -> None:
    """What registration can see of the contract a detector's code must keep (docs/architecture.md),
    refused here, naming the class, rather than met as a Python error in the middle of a fit."""
    own = vars(cls.Config).get("__annotations__") or {}
    if own and "__dataclass_fields__" not in vars(cls.Config):
        # (a subclass without the decorator inherits its parent's fields and silently has none of its own)
        raise ConfigError(f"{cls.__qualname__} ({cls.name!r}): its Config {cls.Config.__name__} is not "
                          f"decorated with @dataclasses.dataclass; its fields ({', '.join(own)}) would not "
                          "be hyperparameters")


def register_detector(cls: type[D]) -> type[D]:
    """Class decorator: register ``cls`` under ``cls.name``; it must declare its ``family``."""
    if not cls.name:
        raise ConfigError(f"{cls.__qualname__} has no name")
    if cls.family not in FAMILIES:
        raise ConfigError(f"{cls.__qualname__}: family must be one of {FAMILIES}, got {cls.family!r}")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:  # (else the first create_detector would fail with Python's own TypeError)
        raise ConfigError(f"{cls.__qualname__} ({cls.name!r}) does not define {', '.join(missing)}, which "
                          "every detector must")
    _check_contract(cls)
    if cls.name in DETECTORS and _same_definition(DETECTORS.get(cls.name), cls):
        # The same plugin file imported a second way (as a module and by its path): one detector, kept.
        return DETECTORS.get(cls.name)  # type: ignore[return-value]
    clash = sorted(f.name for f in dataclasses.fields(cls.Config) if f.name in RUN_DEFAULTS)
    if clash:  # (a run's config is flat: such a hyperparameter would silently take the run key's value)
        raise ConfigError(f"{cls.__qualname__} ({cls.name!r}): hyperparameter(s) {', '.join(clash)} named "
                          f"like run keys of adgan.train ({', '.join(RUN_DEFAULTS)}); rename them")
    DETECTORS.register(cls.name)(cls)
    return cls
