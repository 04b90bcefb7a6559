"""Packaging beside pyproject.toml, for one thing pyproject cannot say together with package discovery:
the example sweep specs live once, in the top-level ``sweeps/`` directory where users and the cluster
configs expect them, and ship in the wheel as the package ``adgan.specs`` (``adgan/specs/*.yaml``), so that
an installed ``adgan sweep mnist`` and ``adgan specs`` find them (``adgan.sweep.spec.spec_dirs``). An
editable install maps ``adgan.specs`` to ``sweeps/`` the same way."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["adgan", "adgan.*"]), "adgan.specs"],
    package_dir={"adgan.specs": "sweeps"},
)
