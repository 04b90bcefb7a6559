"""adgan: GAN-based anomaly detection (AnoGAN, EGBAD/BiGAN, GANomaly, classical baselines) with
per-class hyperparameter sweeps on Ray Tune.

Quick use::

    from adgan.data import load_dataset
    from adgan.models import create_detector
    splits = load_dataset("mnist-5k", anomaly_class=3, seed=0, image_size=32)
    det = create_detector("ganomaly", epochs=5).fit(splits.train.x)
    scores = det.score(splits.test.x)  # higher = more anomalous
"""

from adgan.version import __version__, code_version

__all__ = ["__version__", "code_version"]
