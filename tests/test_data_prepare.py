"""prepare_input / prepare_file: raw user input -> model space, exactly like the training data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from adgan.data import (
    DATASETS,
    UnseenCategoryWarning,
    load_dataset,
    prepare_file,
    prepare_image_folder,
    prepare_input,
    read_kdd_csv_rows,
    split_indices,
)
from adgan.data.folders import resize_pixels
from adgan.data.images import to_model_space
from adgan.errors import DataError


def _saved_info(splits) -> dict:  # noqa: ANN001
    """DatasetInfo as a checkpoint stores it: through JSON and back."""
    return json.loads(json.dumps(splits.info.to_dict()))


@pytest.mark.parametrize("size", [28, 32])
def test_images_match_training_preparation(size: int) -> None:
    s = load_dataset("synthetic-images", 2, seed=1, image_size=size, verbose=False)
    info = _saved_info(s)
    raw = DATASETS.get("synthetic-images").load(None).images[split_indices("synthetic-images", 2, 1).test]
    assert raw.dtype == np.uint8 and raw.shape[1:] == (1, 28, 28)
    expected = s.test.x
    assert np.array_equal(prepare_input(raw, info), expected)  # (N, C, H, W)
    assert np.array_equal(prepare_input(raw[:, 0], info), expected)  # (N, H, W)
    assert np.array_equal(prepare_input(np.moveaxis(raw, 1, 3), info), expected)  # (N, H, W, C)
    assert np.array_equal(prepare_input(raw.astype(np.int64), info), expected)  # any integer dtype
    out = prepare_input(expected, info)  # already model space
    assert out.dtype == np.float32 and np.array_equal(out, expected)


def test_colour_images_and_layouts(fake_data_dir: Path) -> None:
    s = load_dataset("cifar10", 0, seed=0, data_dir=fake_data_dir, image_size=28, verbose=False)
    info = _saved_info(s)
    raw = DATASETS.get("cifar10").load(fake_data_dir).images
    idx = split_indices("cifar10", 0, 0, data_dir=fake_data_dir).val
    assert np.array_equal(prepare_input(np.moveaxis(raw[idx], 1, 3), info), s.val.x)
    floats32 = raw[idx].astype(np.float32) / 127.5 - 1  # native-size floats are resized to 28
    assert np.allclose(prepare_input(floats32, info), s.val.x, atol=1e-6)


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.zeros((2, 3, 28, 28), np.uint8),
         r"expected 1-channel images \(N, 1, H, W\) or \(N, H, W, 1\) or \(N, H, W\) with H == W "
         r"for this .* "
         r"got shape \(2, 3, 28, 28\)"),
        (np.zeros((2, 1, 30, 28), np.uint8), r"got shape \(2, 1, 30, 28\)"),  # not square
        (np.zeros((2, 30, 28, 1), np.uint8), r"got shape \(2, 30, 28, 1\)"),  # as given, channels last
        (np.zeros((2, 784), np.uint8), r"got shape \(2, 784\)"),
        (np.full((1, 28, 28), 300), r"integer pixels must be in 0..255, got 300..300"),
        (np.full((1, 28, 28), 2.0), r"float pixels must lie in \[-1, 1\] \(model space\), got 2..2; .*"
                                    r"--pixel-range BLACK WHITE"),
        (np.full((1, 28, 28), np.nan), r"image 0 \(counting from 0\) holds nan; expected finite"),
        (np.full((1, 28, 28), "a"), r"expected integer pixels 0..255 or float pixels in \[-1, 1\], got"),
    ],
)
def test_bad_image_input(x: np.ndarray, message: str) -> None:
    info = _saved_info(load_dataset("synthetic-images", 0, image_size=32, verbose=False))
    with pytest.raises(DataError, match=message):
        prepare_input(x, info)


def test_float_pixels_in_a_given_range_and_other_sizes(tmp_path: Path) -> None:
    s = load_dataset("synthetic-images", 2, seed=1, image_size=32, verbose=False)
    info = _saved_info(s)
    raw = DATASETS.get("synthetic-images").load(None).images[split_indices("synthetic-images", 2, 1).test]
    for lo, hi in ((0.0, 1.0), (0.0, 255.0), (-1.0, 1.0)):
        floats = (raw.astype(np.float64) * ((hi - lo) / 255.0) + lo).astype(np.float32)
        got = prepare_input(floats, info, pixel_range=(lo, hi))
        np.testing.assert_allclose(got, s.test.x, atol=2e-6)
    with pytest.raises(DataError, match=r"float pixels must lie in \[0, 1\], got 0..255"):
        prepare_input(raw.astype(np.float32), info, pixel_range=(0, 1))
    with pytest.raises(DataError, match=r"pixel range: expected black < white"):
        prepare_input(raw.astype(np.float32), info, pixel_range=(1, 0))
    # Another size: to the native 28 first (as image files are read), then as the training data.
    big = np.repeat(np.repeat(raw, 2, axis=2), 2, axis=3)  # (N, 1, 56, 56)
    expected = to_model_space(resize_pixels(big, 28), 32)
    assert np.array_equal(prepare_input(big, info), expected)
    for k, image in enumerate(big[:5]):  # as image files of that size: the same input
        Image.fromarray(image[0]).save(tmp_path / f"{k}.png")
    assert np.array_equal(prepare_image_folder(tmp_path, info)[0], expected[:5])
    # The same images as model-space floats take the same way (only the uint8 rounding differs).
    floats = big.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    np.testing.assert_allclose(prepare_input(floats, info), expected, atol=1.01 / 127.5)
    # Pixels at the model's own size (32, where the native size is 28) too: an array and image files of
    # the same pixels gave different model input (the array was taken as is, the files went through 28).
    at_model = resize_pixels(raw[:5], 32)
    assert at_model.shape[2:] == (32, 32)
    expected = to_model_space(resize_pixels(at_model, 28), 32)
    assert np.array_equal(prepare_input(at_model, info), expected)
    folder = tmp_path / "at-model-size"
    folder.mkdir()
    for k, image in enumerate(at_model):
        Image.fromarray(image[0]).save(folder / f"{k}.png")
    assert np.array_equal(prepare_image_folder(folder, info)[0], expected)


@pytest.mark.parametrize("scale", [False, True])
def test_kdd_raw_rows_match_training_preparation(fake_data_dir: Path, tmp_path: Path, scale: bool) -> None:
    s = load_dataset("kdd99", 0, seed=2, data_dir=fake_data_dir, scale=scale, verbose=False)
    info = _saved_info(s)
    path = fake_data_dir / "kdd99" / "kddcup.data_10_percent.gz"
    rows = read_kdd_csv_rows(path)
    assert rows.shape[1] == 42 and rows.dtype == object and isinstance(rows[0, 1], str)
    test_idx = split_indices("kdd99", 0, 2, data_dir=fake_data_dir).test
    np.testing.assert_allclose(prepare_input(rows[test_idx], info), s.test.x, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(prepare_input(rows[test_idx, :41], info), s.test.x, rtol=1e-6, atol=1e-6)
    # Straight from the file (fast path) gives the rows in file order.
    from_file = prepare_file(path, info)
    np.testing.assert_allclose(from_file[test_idx], s.test.x, rtol=1e-6, atol=1e-6)
    # 121 numeric columns are model space already.
    assert np.array_equal(prepare_input(s.test.x, info), s.test.x)
    np.save(tmp_path / "x.npy", s.val.x)
    assert np.array_equal(prepare_file(tmp_path / "x.npy", info), s.val.x)
    # Encoded but unscaled rows given to a model trained on scaled ones: taken as given, with a warning.
    from adgan.data import kdd
    from adgan.errors import InputWarning

    raw_encoded = kdd.encode(kdd.read_kdd_file(path))[test_idx]
    if scale and raw_encoded.max() > 2.0:
        with pytest.warns(InputWarning, match=r"numeric rows taken as encoded and scaled .* if these are raw "
                                              r"values, pass the raw table"):
            prepare_input(raw_encoded, info)


def test_kdd_bad_rows(fake_data_dir: Path) -> None:
    info = _saved_info(load_dataset("kdd99", 0, data_dir=fake_data_dir, verbose=False))
    rows = read_kdd_csv_rows(fake_data_dir / "kdd99" / "kddcup.data_10_percent.gz")[:5, :41].copy()
    with pytest.raises(DataError, match=r"expected raw KDD99 rows of shape \(N, 41\) .* got \(5, 40\)"):
        prepare_input(rows[:, :40], info)
    bad = rows.copy()
    bad[3, 4] = "lots"
    with pytest.raises(DataError, match=r"row 4: column 'src_bytes' must be a number, got 'lots'"):
        prepare_input(bad, info)
    bad = rows.copy()
    bad[1, 1] = "sctp"
    with pytest.raises(DataError, match=r"row 2: column 'protocol_type' has value 'sctp', outside .* icmp"):
        prepare_input(bad, info, strict=True)
    with pytest.warns(UnseenCategoryWarning, match=r"'protocol_type': 1 row holds .* 'sctp' \(1 row\)"):
        out = prepare_input(bad, info)  # not strict: none of the known protocols
    assert out[1, 34:37].tolist() == [0.0, 0.0, 0.0] and out[0, 34:37].sum() == 1.0
    numeric = rows.copy()
    numeric[:, 6] = 1.0  # land given as a float: matched numerically
    land1 = info["preprocessing"]["columns"].index("land-1")
    assert land1 == 115 and prepare_input(numeric, info)[:, land1].tolist() == [1.0] * 5


def test_plain_tabular(tmp_path: Path) -> None:
    s = load_dataset("synthetic-tabular", 0, seed=0, scale=True, verbose=False)
    info = _saved_info(s)
    raw = DATASETS.get("synthetic-tabular").load(None).features(split_indices("synthetic-tabular", 0, 0).test)
    np.testing.assert_allclose(prepare_input(raw, info), s.test.x, rtol=1e-6, atol=1e-6)
    np.savetxt(tmp_path / "rows.csv", raw, delimiter=",")
    np.testing.assert_allclose(prepare_file(tmp_path / "rows.csv", info), s.test.x, rtol=1e-5, atol=1e-5)
    # The same rows as a Parquet file of numeric columns (any names), read as Parquet, not as CSV text.
    pq.write_table(pa.table({f"f{j}": raw[:, j] for j in range(raw.shape[1])}), tmp_path / "rows.parquet")
    np.testing.assert_allclose(prepare_file(tmp_path / "rows.parquet", info), s.test.x, rtol=1e-6, atol=1e-6)
    pq.write_table(pa.table({"f0": ["a"] * 3}), tmp_path / "text.parquet")
    with pytest.raises(DataError, match=r"text.parquet: column 'f0' is string; this model takes numeric"):
        prepare_file(tmp_path / "text.parquet", info)
    with pytest.raises(DataError, match=r"expected rows of shape \(N, 8\), got \(3, 7\)"):
        prepare_input(np.zeros((3, 7)), info)
    with pytest.raises(DataError, match=r"x\[1, 0\] \(row 2, column 1\) is not finite \(nan\)"):
        prepare_input(np.array([[0.0] * 8, [np.nan] + [0.0] * 7]), info)
    with pytest.raises(DataError, match="image input must be a .npy array"):
        prepare_file(tmp_path / "rows.csv", _saved_info(load_dataset("synthetic-images", 0, verbose=False)))


def test_numpy_files_that_are_not_what_scoring_needs_are_named(tmp_path: Path) -> None:
    info = load_dataset("synthetic-images", 0, verbose=False).info.to_dict()
    np.savez(tmp_path / "other.npz", a=np.zeros((2, 3)))
    with pytest.raises(DataError, match=r"other.npz: expected an array 'x' in the .npz file; it holds a$"):
        prepare_file(tmp_path / "other.npz", info)
    (tmp_path / "text.npy").write_text("1,2,3\n")
    with pytest.raises(DataError, match=r"text.npy: not a numeric .npy array written by numpy.save"):
        prepare_file(tmp_path / "text.npy", info)
    np.save(tmp_path / "empty.npy", np.zeros((0, 1, 32, 32), np.float32))
    with pytest.raises(DataError, match=r"empty.npy: holds no samples \(shape \(0, 1, 32, 32\)\)"):
        prepare_file(tmp_path / "empty.npy", info)
