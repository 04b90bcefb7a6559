"""JSON text every reader can parse: NaN and infinities written as ``null``.

Python's ``json`` writes a non-finite float as the bare token ``NaN`` / ``Infinity``, which is not JSON:
jq, JavaScript and most tools outside Python refuse the whole file. A run that diverged (no validation
score, so no best AUPRC) or a result row with an empty threshold column would otherwise make its
``summary.json`` or ``sweep_result.json`` unreadable to them.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any


def finite_or_null(obj: Any) -> Any:
    """``obj`` with every non-finite real number (Python, NumPy) inside dicts, lists and tuples as None."""
    if isinstance(obj, numbers.Real) and not isinstance(obj, numbers.Integral):
        return obj if math.isfinite(float(obj)) else None
    if isinstance(obj, Mapping):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    return obj


def json_text(obj: Any, *, default: Callable[[Any], Any] | None = None, **dumps: Any) -> str:
    """``json.dumps(obj, default=default, **dumps)`` with NaN and infinities as ``null`` (never written
    bare), those of what ``default`` makes of an object too."""
    cleaned = None if default is None else (lambda o: finite_or_null(default(o)))
    return json.dumps(finite_or_null(obj), allow_nan=False, default=cleaned, **dumps)


def nulls_as_nan(record: Mapping[str, Any]) -> dict[str, Any]:
    """A numeric record read back: the ``null`` that ``json_text`` wrote for a non-finite number as NaN."""
    return {k: math.nan if v is None else v for k, v in record.items()}
