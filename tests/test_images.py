"""Images in: every accepted form becomes one (C, H, W) float32 image; misfits are refused
with a message that names what was expected."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cnn_widgets.images import load_image


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_uint8_is_scaled_to_unit_range_and_floats_are_taken_as_they_are() -> None:
    assert load_image(np.full((4, 5, 3), 255, np.uint8), 3).max() == 1.0
    floats = np.full((4, 5, 3), 0.25, np.float64)
    out = load_image(floats, 3)
    assert out.dtype == np.float32 and out.shape == (3, 4, 5) and np.all(out == 0.25)


def test_hw_hwc_and_chw_arrays_give_the_same_image() -> None:
    hwc = np.random.default_rng(0).random((6, 7, 3), dtype=np.float32)
    np.testing.assert_array_equal(load_image(hwc, 3), load_image(np.moveaxis(hwc, -1, 0), 3))
    gray = hwc[..., 0]
    np.testing.assert_array_equal(load_image(gray, 1), load_image(gray[None], 1))
    np.testing.assert_array_equal(load_image(gray, 1), load_image(gray[..., None], 1))


def test_a_batch_of_one_is_accepted() -> None:
    assert load_image(np.zeros((1, 3, 8, 8), np.float32), 3).shape == (3, 8, 8)


def test_gray_becomes_rgb_and_rgb_becomes_luma() -> None:
    gray = np.full((4, 4), 100, np.uint8)
    assert np.allclose(load_image(gray, 3), 100 / 255)
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 1] = 255
    assert np.allclose(load_image(rgb, 1), 0.587, atol=1e-6)


def test_rgba_is_composited_over_white() -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red stays red
    out = load_image(rgba, 3)  # the other pixels are fully transparent: white
    np.testing.assert_allclose(out[:, 0, 0], [1, 0, 0])
    np.testing.assert_allclose(out[:, 1, 1], [1, 1, 1])


def test_pil_images_paths_and_bytes_are_read(tmp_path) -> None:
    array = (np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5)
    path = tmp_path / "x.png"
    path.write_bytes(png_bytes(array))
    expected = load_image(array, 3)
    np.testing.assert_array_equal(load_image(str(path), 3), expected)
    np.testing.assert_array_equal(load_image(path, 3), expected)
    np.testing.assert_array_equal(load_image(path.read_bytes(), 3), expected)
    np.testing.assert_array_equal(load_image(Image.fromarray(array), 3), expected)
    palette = Image.fromarray(array).convert("P")
    assert load_image(palette, 3).shape == (3, 4, 4)


def test_a_16_bit_png_is_scaled_by_its_own_range() -> None:
    img = Image.fromarray(np.full((3, 3), 65535, np.uint16))
    assert np.allclose(load_image(img, 1), 1.0)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((8, 8, 5)), r"expected an image shaped .*got shape \(8, 8, 5\)"),
        (np.zeros((2, 3, 8, 8)), r"expected one image .*shape \(2, 3, 8, 8\)"),
        (np.zeros(8), r"expected one image"),
        (np.zeros((3, 8, 3)), r"ambiguous"),
        (np.full((4, 4), 300, np.int64), r"0\.\.255"),
        (np.zeros((4, 4, 3), complex), r"must be numeric|complex"),
        (b"this is not an image", r"cannot read the given 20 bytes as an image"),
        (object(), r"numpy array, a PIL image, a file path"),
    ],
)
def test_misfits_are_refused_with_what_was_expected(image, message) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        load_image(image, 3)


def test_channel_counts_that_do_not_convert_are_refused() -> None:
    with pytest.raises(ValueError, match="expects 2-channel images; got an image with 3"):
        load_image(np.zeros((4, 4, 3), np.uint8), 2)


def test_a_model_with_an_unusual_channel_count_takes_its_own_images() -> None:
    multispectral = np.zeros((6, 16, 16), np.float32)
    assert load_image(multispectral, 6).shape == (6, 16, 16)
    assert load_image(np.moveaxis(multispectral, 0, -1), 6).shape == (6, 16, 16)


def test_missing_and_corrupt_files_say_which_file(tmp_path) -> None:
    with pytest.raises(ValueError, match="no image file at"):
        load_image(tmp_path / "missing.png", 3)
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt"):
        load_image(bad, 3)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(png_bytes(np.zeros((64, 64, 3), np.uint8))[:60])
    with pytest.raises(ValueError, match=r"cut\.png"):
        load_image(truncated, 3)


def test_resizing_keeps_the_aspect_ratio_by_centre_cropping() -> None:
    wide = np.zeros((10, 40), np.float32)
    wide[:, 18:22] = 1.0  # a narrow bright band in the middle
    out = load_image(wide, 1, size=(10, 10))
    assert out.shape == (1, 10, 10)
    assert out[0, :, 3:7].mean() > 0.9 and out[0, :, 0].max() < 0.1


def test_non_square_sizes_are_honoured() -> None:
    assert load_image(np.zeros((100, 100, 3), np.uint8), 3, size=(24, 40)).shape == (3, 24, 40)
