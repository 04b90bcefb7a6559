"""Exceptions with messages meant for users."""

from __future__ import annotations


class AdganError(Exception):
    """Base class: the message names the file, field or value and what was expected."""


class DataError(AdganError, ValueError):
    """A data file or array is missing, malformed or of the wrong shape."""


class ConfigError(AdganError, ValueError):
    """A configuration or sweep spec is wrong (unknown key, bad value)."""


class DivergedError(AdganError, RuntimeError):
    """Training produced a NaN or infinite loss."""
