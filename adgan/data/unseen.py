"""Category values at score time that training never saw: counted and warned about, or refused.

A one-hot block has no column for a value outside its category list. Such a value is encoded as "none of
the known" (all zeros in that block) and reported with ``warnings.warn(..., UnseenCategoryWarning)``: one
warning per column, naming the column, the values and how many rows hold each. With ``strict=True``
(``adgan score --strict``) the input is refused instead, with a ``DataError`` naming the first such row,
its column and value. Training data is never encoded this way: KDD99's training file is read strictly.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from adgan.errors import DataError, InputWarning

SHOWN_VALUES = 5  # values listed per column in a warning; the rest are counted


class UnseenCategoryWarning(InputWarning):
    """Rows held category values absent from training; they were encoded as none of the known values."""


@dataclass(frozen=True)
class UnseenValues:
    """The unseen values of one categorical column.

    Attributes:
        column: Column name.
        counts: value -> number of rows holding it, most frequent first.
        first_row: 0-based index of the first row holding an unseen value.
        first_value: That row's value.
        known: The column's category list from training.
        of_rows: The number of rows of the input (0: not known).
    """

    column: str
    counts: dict[Any, int]
    first_row: int
    first_value: Any
    known: tuple[Any, ...]
    of_rows: int = 0

    @property
    def n_rows(self) -> int:
        return sum(self.counts.values())


def _plain(value: Any) -> Any:
    """A value as users wrote it: ``1`` rather than ``1.0`` for integer-valued numbers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _near(value: Any, known: Sequence[Any]) -> str:
    """``; the known 'x' but for letter case or spaces`` where ``value`` is a known category written
    otherwise (a feed that upper-cases or pads its values), else ""."""
    if not isinstance(value, str):
        return ""
    key = value.strip().casefold()
    same = [k for k in known if isinstance(k, str) and k.strip().casefold() == key]
    return f"; the known {same[0]!r} but for letter case or spaces" if same else ""


def handle_unseen(where: str, found: Sequence[UnseenValues], strict: bool, outside: str) -> None:
    """Warn about (``strict=False``) or refuse (``strict=True``) unseen category values.

    Args:
        where: The input's name (a file path, or ``"input"``) that starts every message.
        found: One entry per column holding unseen values, in column order.
        strict: Refuse instead of warning.
        outside: What the values fall outside of, e.g. ``"the KDD99 schema"``.

    Raises:
        DataError: ``strict`` and ``found`` is not empty; names the first such row (its first such column).
    """
    if not found:
        return
    if strict:
        u = min(found, key=lambda f: f.first_row)  # (min keeps the first column of a row's)
        raise DataError(f"{where}: row {u.first_row + 1}: column {u.column!r} has value "
                        f"{_plain(u.first_value)!r}, outside {outside} "
                        f"(known: {', '.join(map(str, u.known))}{_near(u.first_value, u.known)})")
    for u in found:
        items = list(u.counts.items())
        shown = ", ".join(f"{_plain(v)!r} ({n} row{'s' if n != 1 else ''}{_near(v, u.known)})"
                          for v, n in items[:SHOWN_VALUES])
        if len(items) > SHOWN_VALUES:
            more = len(items) - SHOWN_VALUES
            shown += f" and {more} more value{'s' if more != 1 else ''}"
        rows = f"{u.n_rows} {'rows hold' if u.n_rows != 1 else 'row holds'}"
        if u.of_rows > 1 and u.n_rows == u.of_rows:  # no known value at all: another column, or coding?
            rows = f"every row ({u.n_rows}) holds"
        warnings.warn(
            f"{where}: column {u.column!r}: {rows} values outside {outside}, encoded as none of the known "
            f"categories: {shown}; "
            + ("is it the column the model was trained on? " if rows.startswith("every") else "")
            + "strict=True (adgan score --strict) refuses them instead",
            UnseenCategoryWarning, stacklevel=3,
        )


def count_unseen(column: str, values: Sequence[Any], rows: Sequence[int],
                 known: Sequence[Any], of_rows: int = 0) -> UnseenValues:
    """The ``UnseenValues`` of ``column`` from its unseen ``values`` at row indices ``rows`` (same order).

    Args:
        column: Column name.
        values: The unseen values, one per offending row, in row order.
        rows: The offending rows' 0-based indices, increasing.
        known: The column's category list.
        of_rows: The number of rows of the input (0: not known).
    """
    counts: dict[Any, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    ordered = dict(sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0]))))
    return UnseenValues(column, ordered, int(rows[0]), values[0], tuple(known), of_rows)
