"""Exceptions with messages meant for users."""

from __future__ import annotations

import difflib
import re
import reprlib
from collections.abc import Iterable
from typing import Any

SHORT_LIMIT = 120  # characters of a value shown in a message

_repr = reprlib.Repr()
_repr.maxstring, _repr.maxother, _repr.maxlist, _repr.maxdict, _repr.maxlevel = 60, 60, 6, 6, 3


def short(value: Any, limit: int = SHORT_LIMIT) -> str:
    """``repr(value)`` bounded in size whatever the value holds: reprlib shows a few items per level and a
    few levels (so a huge or deeply nested value costs no more than a small one to format), then the text
    is cut at ``limit`` characters."""
    text = _repr.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def did_you_mean(name: Any, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` naming the choice closest to a misspelt ``name``, or ``""`` when none is
    close (difflib's ratio): the hint of every "unknown name" message."""
    close = difflib.get_close_matches(str(name), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def clip(message: str, limit: int) -> str:
    """A message (an exception's text) kept whole up to ``limit`` characters, then cut: unlike ``short``,
    not quoted and not shortened in the middle, so what it says (a line number, an expected value) stays."""
    return message if len(message) <= limit else message[: limit - 3] + "..."


class AdganError(Exception):
    """Base class: the message names the file, field or value and what was expected."""


class DataError(AdganError, ValueError):
    """A data file or array is missing, malformed or of the wrong shape."""


class ConfigError(AdganError, ValueError):
    """A configuration or sweep spec is wrong (unknown key, bad value)."""


class ContractError(AdganError, TypeError):
    """A detector (usually a plugin's) breaks the detector contract: what it did, and what is expected."""


class DivergedError(AdganError, RuntimeError):
    """Training produced a NaN or infinite loss."""


class InputWarning(UserWarning):
    """Input taken as asked but likely not what was meant (unseen categories, [0, 1] floats taken as model
    space); ``adgan score`` prints each as one ``adgan: warning:`` line."""


class UnknownNameError(ConfigError, KeyError):
    """A name that no registry holds (a detector, a dataset); a ``KeyError`` too, as a registry lookup."""

    def __str__(self) -> str:  # (KeyError's own would quote the message)
        return str(self.args[0]) if self.args else ""


def with_store_hint(message: str) -> str:
    """``message`` with what to check added when it is an object store's error: pyarrow's S3 messages name
    a bucket and key (or neither) and no remedy, or one adgan cannot take (a filesystem option)."""
    where = re.search(r"key '([^']*)' in bucket '([^']+)'", message)
    uri = f" s3://{where.group(2)}/{where.group(1)}" if where else ""
    missing = re.search(r"[Bb]ucket '([^']+)' not found", message)
    if missing:
        message = message.replace(" To create buckets, enable the allow_bucket_creation option.", "")
        return (f"{message} (no bucket {missing.group(1)!r} on this store: create it first, adgan creates "
                "none; AWS_ENDPOINT_URL names the store)")
    if "NETWORK_CONNECTION" in message or "connect to endpoint" in message.lower():
        return (f"{message} (the object store does not answer{' for' + uri if uri else ''}: is it up, and is "
                "AWS_ENDPOINT_URL its address?)")
    if any(code in message for code in ("ACCESS_DENIED", "AccessDenied", "InvalidAccessKeyId",
                                        "SignatureDoesNotMatch", "INVALID_ACCESS_KEY_ID")):
        return (f"{message} (the store refused these credentials{' for' + uri if uri else ''}: check "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or this machine's role, and that "
                "it may read and write the bucket)")
    return message

