"""Detectors: GANs (AnoGAN, EGBAD/BiGAN, GANomaly) and classical baselines, named by strings."""

from adgan.models.base import (
    DETECTORS,
    Detector,
    DetectorConfig,
    create_detector,
    list_detectors,
    register_detector,
)

# Importing the modules registers their detectors.
# TODO(lead): make this a plain import once all four modules exist.
import importlib as _importlib

for _mod in ("ganomaly", "egbad", "anogan", "baselines"):
    try:
        _importlib.import_module(f"adgan.models.{_mod}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"adgan.models.{_mod}":
            raise

load_detector = Detector.load

__all__ = [
    "DETECTORS", "Detector", "DetectorConfig", "create_detector", "list_detectors", "load_detector",
    "register_detector",
]
