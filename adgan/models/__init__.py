"""Detectors: GANs (AnoGAN, EGBAD/BiGAN, GANomaly) and classical baselines, named by strings."""

from adgan.models.base import (
    DETECTORS,
    Detector,
    DetectorConfig,
    create_detector,
    list_detectors,
    register_detector,
)
from adgan.models.gan import GANConfig, GANDetector

# Importing the modules registers their detectors.
from adgan.models import anogan, baselines, egbad, ganomaly  # noqa: E402,F401  isort: skip

load_detector = Detector.load

__all__ = [
    "DETECTORS", "Detector", "DetectorConfig", "GANConfig", "GANDetector", "create_detector",
    "list_detectors", "load_detector", "register_detector",
]
