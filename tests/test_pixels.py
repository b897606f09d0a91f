"""Pixels: floats to bytes in one place, transparent tile gaps, and pictures enlarged by a whole
number so people can see them (saved files, notebook outputs) while the wire stays natural."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cnn_widgets.render import (
    READABLE_SIDE,
    activation_grid,
    dense_plot,
    filter_grid,
    readable_png,
    readable_scale,
    tile,
    tile_layout,
    tile_rgba,
    to_uint8,
    transparent_gaps,
    upscale,
)
from cnn_widgets.render.pixels import MAX_SIDE, quantize


def open_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


def kernels(count: int = 32, size: int = 3) -> np.ndarray:
    """RGB kernels like EfficientNet-Lite0's stem: 32 of 3x3 tile to a 23x23 grid."""
    return np.random.default_rng(0).standard_normal((count, 3, size, size)).astype(np.float32)


# --------------------------------------------------------------------------- floats to bytes


def test_to_uint8_rounds_to_the_nearest_level_and_clips() -> None:
    values = np.array([0.0, 0.5, 1.0, 1 / 255 * 0.49, 1 / 255 * 0.51, -0.3, 1.7])
    np.testing.assert_array_equal(to_uint8(values), [0, 128, 255, 0, 1, 0, 255])
    assert to_uint8(values).dtype == np.uint8


def test_to_uint8_shows_nan_and_minus_inf_as_0_and_plus_inf_as_255() -> None:
    values = np.array([np.nan, np.inf, -np.inf], np.float16)
    with np.errstate(all="raise"):  # no "invalid value in cast" on the way
        np.testing.assert_array_equal(to_uint8(values), [0, 255, 0])


def test_to_uint8_folds_a_colour_axis_into_gray_rgb_or_a_mean() -> None:
    chw = np.random.default_rng(0).random((3, 4, 5), dtype=np.float32)
    rgb = to_uint8(chw, channel_axis=0)
    assert rgb.shape == (4, 5, 3)
    np.testing.assert_array_equal(rgb, to_uint8(np.moveaxis(chw, 0, -1)))
    assert to_uint8(chw[:1], channel_axis=0).shape == (4, 5)
    stack = np.zeros((2, 4, 5, 4), np.float32)
    stack[..., 0] = np.nan  # a NaN channel counts as 0, it does not blank the pixel
    stack[..., 1:] = 1.0
    np.testing.assert_array_equal(to_uint8(stack, channel_axis=-1), np.full((2, 4, 5), 191))


def test_to_uint8_refuses_what_is_not_a_real_picture() -> None:
    with pytest.raises(TypeError, match="real-valued"):
        to_uint8(np.array([1 + 2j]))
    with pytest.raises(ValueError, match="channel_axis 3 is out of range"):
        to_uint8(np.zeros((2, 2, 3)), channel_axis=3)


def test_quantize_rounds_prescaled_levels() -> None:
    levels = quantize(np.array([0.0, 0.49, 0.5, 252.6, 255.0], np.float32))
    np.testing.assert_array_equal(levels, [0, 0, 1, 253, 255])


# --------------------------------------------------------------------------- tile gaps


def test_tile_rgba_makes_gaps_and_empty_slots_transparent() -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 2, 3, 3), dtype=np.uint8)
    rgba = tile_rgba(images, pad=1)
    layout = tile_layout(5, 2, 3, pad=1)
    assert rgba.shape == (layout.height, layout.width, 4)
    np.testing.assert_array_equal(rgba[..., :3], tile(images, pad=1, pad_value=0))
    opaque = np.zeros(rgba.shape[:2], bool)
    for i in range(layout.count):
        x, y, w, h = layout.box(i)
        opaque[y : y + h, x : x + w] = True
    np.testing.assert_array_equal(rgba[..., 3], np.where(opaque, 255, 0))


def test_tile_rgba_takes_gray_tiles_and_a_column_count() -> None:
    gray = np.full((3, 2, 2), 7, np.uint8)
    strip = tile_rgba(gray, pad=2, ncols=3)
    assert strip.shape == (2, 10, 4)
    np.testing.assert_array_equal(strip[0, :, 0], [7, 7, 0, 0, 7, 7, 0, 0, 7, 7])
    np.testing.assert_array_equal(strip[0, :, 3], [255, 255, 0, 0, 255, 255, 0, 0, 255, 255])
    with pytest.raises(ValueError, match=r"\(n, h, w, 3\)"):
        tile_rgba(np.zeros((2, 2, 2, 4), np.uint8))


def test_transparent_gaps_checks_the_canvas_against_its_layout() -> None:
    layout = tile_layout(4, 2, 2, pad=1)
    with pytest.raises(ValueError, match="5x5"):
        transparent_gaps(np.zeros((4, 4, 3), np.uint8), layout)
    with pytest.raises(TypeError, match="uint8"):
        transparent_gaps(np.zeros((5, 5, 3)), layout)


# --------------------------------------------------------------------------- readable pictures


@pytest.mark.parametrize(
    ("height", "width", "factor"),
    [(23, 23, 22), (28, 28, 18), (1, 1, 512), (5, 341, 2), (342, 10, 1), (240, 480, 1),
     (700, 700, 1), (256, 100, 2)],
)
def test_readable_scale_brings_the_long_side_nearest_512(height, width, factor) -> None:
    assert readable_scale(height, width) == factor
    assert READABLE_SIDE == 512


def test_upscale_turns_each_pixel_into_an_exact_block() -> None:
    pixels = np.arange(6, dtype=np.uint8).reshape(2, 3)
    big = upscale(pixels, 3)
    assert big.shape == (6, 9)
    np.testing.assert_array_equal(big, np.kron(pixels, np.ones((3, 3), np.uint8)))
    rgb = np.random.default_rng(0).integers(0, 256, (2, 3, 3), dtype=np.uint8)
    np.testing.assert_array_equal(upscale(rgb, 4)[::4, ::4], rgb)
    assert upscale(rgb, 1) is rgb


@pytest.mark.parametrize(
    ("scale", "error", "match"),
    [(0, ValueError, "got 0"), (-2, ValueError, "got -2"), (2.5, TypeError, "float 2.5"),
     ("2", TypeError, "str '2'"), (True, TypeError, "got True"), (None, TypeError, "NoneType")],
)
def test_bad_scales_say_what_is_valid(scale, error, match) -> None:
    with pytest.raises(error, match=match) as info:
        upscale(np.zeros((2, 2), np.uint8), scale)
    assert "int >= 1" in str(info.value)


def test_upscale_refuses_pictures_past_the_size_limit() -> None:
    limit = rf"limit {MAX_SIDE}.*valid for this 23x23 picture: 1\.\.356"
    with pytest.raises(ValueError, match=limit):
        upscale(np.zeros((23, 23, 3), np.uint8), 1000)
    assert upscale(np.zeros((23, 1), np.uint8), np.int64(356)).shape == (8188, 356)


def test_saved_files_are_enlarged_to_a_readable_size_by_default(tmp_path) -> None:
    rendered = filter_grid(kernels())
    assert (rendered.width, rendered.height) == (23, 23)  # natural: one pixel per weight
    rendered.save(tmp_path / "filters.png")
    with open_png((tmp_path / "filters.png").read_bytes()) as saved:
        assert saved.size == (506, 506)  # 22x, nearest 512
        pixels = np.asarray(saved.convert("RGB"))
    np.testing.assert_array_equal(pixels[::22, ::22], rendered.pixels)
    np.testing.assert_array_equal(pixels, upscale(rendered.pixels, 22))  # no smoothing


def test_scale_chooses_the_factor_and_1_keeps_the_natural_size(tmp_path) -> None:
    rendered = activation_grid(np.random.default_rng(0).random((16, 5, 5), dtype=np.float32))
    rendered.save(tmp_path / "natural.png", scale=1)
    rendered.save(tmp_path / "x3.png", scale=3)
    with open_png((tmp_path / "natural.png").read_bytes()) as natural:
        assert natural.size == (rendered.width, rendered.height)
        assert natural.mode == "P"  # indexed pictures stay indexed: small files
        np.testing.assert_array_equal(np.asarray(natural.convert("RGB")), rendered.pixels)
    assert (tmp_path / "natural.png").read_bytes() == rendered.png()
    with open_png((tmp_path / "x3.png").read_bytes()) as big:
        assert big.size == (3 * rendered.width, 3 * rendered.height)


def test_a_bad_scale_writes_no_file(tmp_path) -> None:
    rendered = filter_grid(kernels(4))
    for scale in (0, 1.5):
        with pytest.raises((TypeError, ValueError), match="int >= 1"):
            rendered.save(tmp_path / "bad.png", scale=scale)
    assert not (tmp_path / "bad.png").exists()


def test_plots_drawn_for_reading_are_saved_as_drawn(tmp_path) -> None:
    plot = dense_plot(np.random.default_rng(0).standard_normal(100))
    plot.save(tmp_path / "dense.png")
    with open_png((tmp_path / "dense.png").read_bytes()) as saved:
        assert saved.size == (480, 240)


def test_notebook_output_is_readable_while_the_wire_stays_natural() -> None:
    rendered = filter_grid(kernels())
    with open_png(rendered._repr_png_()) as shown:
        assert shown.size == (506, 506)
    fmt, wire = rendered.wire()
    with open_png(wire) as sent:
        assert fmt == "png" and sent.size == (23, 23)
    assert "23x23" in repr(rendered)


def test_readable_png_takes_plain_pixels_too() -> None:
    gray = np.random.default_rng(0).integers(0, 256, (28, 20), dtype=np.uint8)
    with open_png(readable_png(gray)) as image:
        assert image.size == (20 * 18, 28 * 18) and image.mode == "L"
    rgba = np.zeros((4, 4, 4), np.uint8)
    with open_png(readable_png(rgba, scale=2)) as image:
        assert image.size == (8, 8) and image.mode == "RGBA"
    with pytest.raises(TypeError, match="Rendered or a uint8 numpy array, got list"):
        readable_png([[0, 1]])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="uint8"):
        readable_png(np.zeros((4, 4)))
