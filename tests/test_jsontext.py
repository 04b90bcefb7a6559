"""JSON files adgan writes parse outside Python: non-finite numbers as null, read back as NaN."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from adgan.jsontext import json_text, nulls_as_nan


def _strict(text: str) -> object:
    def refuse(token: str) -> None:
        raise AssertionError(f"non-JSON token {token} in {text}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_of_every_kind_are_null_where_they_sit() -> None:
    obj = {"a": math.nan, "b": [1.5, np.float32("inf"), (np.float64("-inf"), 2)], "c": {"d": np.nan},
           "n": 3, "t": True, "s": "NaN", "f": np.float32(0.25)}
    assert _strict(json_text(obj, default=lambda o: o.item())) == {
        "a": None, "b": [1.5, None, [None, 2]], "c": {"d": None}, "n": 3, "t": True, "s": "NaN", "f": 0.25}


def test_an_epoch_record_reads_back_with_nan_where_it_had_nan() -> None:
    record = {"kind": "epoch", "epoch": 2, "loss_d": math.nan, "val_auprc": 0.5}
    back = nulls_as_nan(_strict(json_text(record)))
    assert back["epoch"] == 2 and back["val_auprc"] == 0.5 and math.isnan(back["loss_d"])


def test_what_the_default_makes_of_an_object_is_cleaned_too() -> None:
    text = json_text({"x": np.array([1.0, np.nan])}, default=lambda o: o.tolist())
    assert _strict(text) == {"x": [1.0, None]}


def test_a_value_the_default_cannot_make_json_is_still_refused() -> None:
    with pytest.raises(TypeError):
        json_text({"x": object()})
