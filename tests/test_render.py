"""Rendering: normalization, colormaps, tiling, encoding and the views built on them."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from cnn_widgets.render import (
    COLORMAPS,
    NONFINITE_COLOR,
    Rendered,
    activation_grid,
    activation_single,
    activation_sum,
    apply_colormap,
    dense_plot,
    encode_jpeg,
    encode_png,
    encode_wire,
    filter_grid,
    filter_single,
    lut,
    normalize,
    tile,
    tile_layout,
    topk_bars,
)
from cnn_widgets.render.colormaps import GAP_INDEX, LEVELS, NONFINITE_INDEX, indexed_palette

MAGENTA = np.array(NONFINITE_COLOR, np.uint8)
WHITE = np.array([255, 255, 255], np.uint8)


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def crop(rendered: Rendered, i: int) -> np.ndarray:
    assert rendered.layout is not None
    x, y, w, h = rendered.layout.box(i)
    return rendered.pixels[y : y + h, x : x + w]


# --------------------------------------------------------------------------- normalize


def test_layer_normalization_uses_one_min_max_for_the_stack() -> None:
    stack = np.array([[[0.0, 2.0]], [[4.0, 8.0]]])
    np.testing.assert_allclose(normalize(stack, "layer"), [[[0, 0.25]], [[0.5, 1]]])


def test_channel_normalization_stretches_each_item() -> None:
    stack = np.array([[[0.0, 2.0]], [[4.0, 8.0]]])
    np.testing.assert_allclose(normalize(stack, "channel"), [[[0, 1]], [[0, 1]]])


def test_symmetric_normalization_maps_zero_to_half() -> None:
    stack = np.array([[[-2.0, 1.0], [0.0, 4.0]]])
    np.testing.assert_allclose(normalize(stack, "symmetric"), [[[0.25, 0.625], [0.5, 1.0]]])


def test_std_normalization_is_deprocess_image_per_item() -> None:
    stack = np.array([[[0.0, 2.0]], [[10.0, 10.0]]])  # mean 1, std 1; then a constant item
    step = 0.1 / (1.0 + 1e-5)
    np.testing.assert_allclose(
        normalize(stack, "std"), [[[0.5 - step, 0.5 + step]], [[0.5, 0.5]]], rtol=1e-6
    )


def test_none_normalization_only_clips() -> None:
    np.testing.assert_allclose(normalize(np.array([[-0.5, 0.3, 2.0]]), "none"), [[0, 0.3, 1]])


def test_constant_inputs_map_to_documented_values() -> None:
    ones = np.full((2, 2, 2), 3.0)
    assert np.all(normalize(ones, "layer") == 0)
    assert np.all(normalize(ones, "channel") == 0)
    assert np.all(normalize(ones, "std") == 0.5)
    assert np.all(normalize(np.zeros((1, 2, 2)), "symmetric") == 0.5)
    assert np.all(normalize(ones, "symmetric") == 1.0)  # positive stays positive
    assert np.all(normalize(-ones, "symmetric") == 0.0)


def test_channel_normalization_leaves_constant_item_dark_and_others_stretched() -> None:
    stack = np.array([[[5.0, 5.0]], [[1.0, 3.0]]])
    np.testing.assert_allclose(normalize(stack, "channel"), [[[0, 0]], [[0, 1]]])


def test_normalize_returns_float32_for_any_real_input_and_leaves_input_alone() -> None:
    for source in (np.arange(4, dtype=np.uint8), np.arange(4.0), np.arange(4, dtype=np.float16)):
        original = source.copy()
        out = normalize(source.reshape(1, 2, 2), "layer")
        assert out.dtype == np.float32
        np.testing.assert_allclose(out.ravel(), [0, 1 / 3, 2 / 3, 1], rtol=1e-3)
        np.testing.assert_array_equal(source, original)


def test_normalization_ignores_nan_and_inf_and_gives_them_0() -> None:
    stack = np.array([[[0.0, np.nan], [np.inf, 4.0], [-np.inf, 2.0]]])
    np.testing.assert_allclose(normalize(stack, "layer"), [[[0, 0], [0, 1], [0, 0.5]]])


@pytest.mark.parametrize("mode", ["layer", "channel", "symmetric", "std", "none"])
def test_every_mode_survives_an_all_nan_item(mode: str) -> None:
    stack = np.array([[[np.nan, np.nan]], [[-1.0, 1.0]]])
    values = normalize(stack, mode)
    assert np.isfinite(values).all()
    assert values.min() >= 0 and values.max() <= 1
    assert values[1, 0, 1] > values[1, 0, 0]
    grid = activation_grid(stack, normalization=mode, colormap="gray")
    assert grid.meta["nonfinite"] == 2
    assert (crop(grid, 0) == MAGENTA).all()
    assert not (crop(grid, 1) == MAGENTA).all(axis=-1).any()


def test_a_colour_pixel_with_one_nan_component_is_one_marked_pixel() -> None:
    stack = np.zeros((1, 3, 1, 2))  # one RGB kernel of 1x2, channels-first
    stack[0, :, 0, 0] = [0.0, 1.0, 2.0]
    stack[0, 2, 0, 1] = np.nan
    grid = filter_grid(stack, input_channel="rgb", normalization="channel")
    assert grid.meta["nonfinite"] == 1
    np.testing.assert_array_equal(grid.pixels[0], [[0, 128, 255], MAGENTA])


def test_reference_keeps_a_page_on_the_scale_of_the_whole_layer() -> None:
    layer = np.array([[[0.0, 10.0]], [[2.0, 4.0]]])
    np.testing.assert_allclose(normalize(layer[1:], "layer", reference=layer), [[[0.2, 0.4]]])
    np.testing.assert_allclose(normalize(layer[1:], "symmetric", reference=layer), [[[0.6, 0.7]]])


def test_axis_channels_false_treats_the_array_as_one_picture() -> None:
    picture = np.array([[0.0, 2.0], [4.0, 8.0]])
    np.testing.assert_allclose(
        normalize(picture, "channel", axis_channels=False), [[0, 0.25], [0.5, 1]]
    )


def test_unknown_normalization_names_the_modes() -> None:
    with pytest.raises(ValueError, match="symmetric"):
        normalize(np.zeros((1, 2, 2)), "minmax")


# --------------------------------------------------------------------------- colormaps


def test_colormap_endpoints() -> None:
    np.testing.assert_array_equal(lut("gray")[[0, 255]], [[0, 0, 0], [255, 255, 255]])
    np.testing.assert_array_equal(lut("viridis")[[0, 255]], [[68, 1, 84], [253, 231, 37]])
    blue, middle, red = lut("diverging")[[0, 128, 255]]
    assert blue[2] > blue[0] and red[0] > red[2]
    assert middle.min() >= 240  # near white at 0.5
    np.testing.assert_array_equal(
        apply_colormap(np.array([0.0, 1.0]), "viridis"), lut("viridis")[[0, 255]]
    )


def test_viridis_is_within_a_few_levels_of_matplotlib() -> None:
    import matplotlib
    reference = np.rint(matplotlib.colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255)
    assert np.abs(lut("viridis").astype(int) - reference).max() <= 3


def test_apply_colormap_uses_the_nearest_of_256_levels() -> None:
    x = np.array([[0.0, 0.5, 1.0]])
    np.testing.assert_array_equal(apply_colormap(x, "gray")[0, :, 0], [0, 128, 255])


def test_apply_colormap_tolerates_nan_and_out_of_range_values() -> None:
    x = np.array([np.nan, np.inf, -np.inf, -1.0, 2.0])
    np.testing.assert_array_equal(apply_colormap(x, "gray")[:, 0], [0, 255, 0, 0, 255])


def test_unknown_colormap_names_the_choices() -> None:
    with pytest.raises(ValueError, match="viridis"):
        lut("jet")


def test_indexed_palette_has_levels_then_gap_then_marker() -> None:
    palette = indexed_palette("gray", gap_color=(1, 2, 3))
    np.testing.assert_array_equal(palette[[0, LEVELS - 1]], [[0, 0, 0], [255, 255, 255]])
    np.testing.assert_array_equal(palette[GAP_INDEX], [1, 2, 3])
    np.testing.assert_array_equal(palette[NONFINITE_INDEX], MAGENTA)
    for name in COLORMAPS:  # the marker must not be a colour a value can take
        assert not (indexed_palette(name)[:LEVELS] == MAGENTA).all(axis=1).any()


# --------------------------------------------------------------------------- tile


def reference_tile(images: np.ndarray, pad: int, fill: float, ncols: int) -> np.ndarray:
    """A plain loop over tiles: what tile() must equal."""
    n, h, w = images.shape[:3]
    nrows = -(-n // ncols)
    canvas = np.full(
        (nrows * (h + pad) - pad, ncols * (w + pad) - pad, *images.shape[3:]), fill, images.dtype
    )
    for i in range(n):
        row, col = divmod(i, ncols)
        canvas[row * (h + pad) : row * (h + pad) + h, col * (w + pad) : col * (w + pad) + w] = (
            images[i]
        )
    return canvas


@pytest.mark.parametrize(
    ("n", "ncols", "nrows"), [(1, 1, 1), (7, 3, 3), (64, 8, 8), (96, 10, 10), (512, 23, 23)]
)
def test_tile_layout_is_near_square(n: int, ncols: int, nrows: int) -> None:
    layout = tile_layout(n, 5, 4, pad=1)
    assert (layout.ncols, layout.nrows) == (ncols, nrows)
    assert layout.width == ncols * 5 - 1 and layout.height == nrows * 6 - 1
    canvas = tile(np.zeros((n, 5, 4), np.uint8))
    assert canvas.shape == (layout.height, layout.width)


@pytest.mark.parametrize("n", [1, 7, 64, 96])
@pytest.mark.parametrize("pad", [0, 1, 2])
def test_tile_matches_a_plain_loop(n: int, pad: int) -> None:
    images = np.random.default_rng(n).integers(0, 250, (n, 3, 2), dtype=np.uint8)
    ncols = tile_layout(n, 3, 2).ncols
    np.testing.assert_array_equal(tile(images, pad=pad), reference_tile(images, pad, 255, ncols))


def test_tile_puts_each_image_in_its_box_and_pad_value_in_gaps_and_empty_slots() -> None:
    images = np.arange(1, 8, dtype=np.float32)[:, None, None] * np.ones((7, 2, 3), np.float32)
    canvas = tile(images, pad=1, pad_value=-1.0)
    layout = tile_layout(7, 2, 3, pad=1)
    assert canvas.shape == (8, 11) and canvas.dtype == np.float32
    for i in range(7):
        x, y, w, h = layout.box(i)
        assert (x, y) == ((i % 3) * 4, (i // 3) * 3)
        assert np.all(canvas[y : y + h, x : x + w] == i + 1)
    assert np.all(canvas[2, :] == -1) and np.all(canvas[:, 3] == -1)  # gaps
    assert np.all(canvas[6:, 4:] == -1)  # slots 7 and 8 are empty


def test_tile_default_pad_value_is_white_for_the_dtype() -> None:
    assert tile(np.zeros((2, 1, 1), np.uint8))[0, 1] == 255
    assert tile(np.zeros((2, 1, 1), np.int16))[0, 1] == np.iinfo(np.int16).max
    assert tile(np.zeros((2, 1, 1), np.float64))[0, 1] == 1.0


def test_tile_keeps_rgb_and_takes_a_colour_pad_value() -> None:
    images = np.zeros((3, 2, 2, 3), np.uint8)
    canvas = tile(images, pad=1, pad_value=(10, 20, 30))
    assert canvas.shape == (5, 5, 3) and canvas.dtype == np.uint8
    np.testing.assert_array_equal(canvas[0, 2], [10, 20, 30])
    np.testing.assert_array_equal(canvas[4, 4], [10, 20, 30])  # empty slot
    assert not canvas[:2, :2].any()


def test_tile_honours_ncols() -> None:
    canvas = tile(np.zeros((6, 1, 1), np.uint8), pad=0, ncols=6)
    assert canvas.shape == (1, 6)


def test_layout_boxes_leave_gaps_between_tiles_and_empty_slots_after_them() -> None:
    layout = tile_layout(7, 2, 3, pad=1)
    assert [layout.box(i) for i in (0, 1, 3, 6)] == [
        (0, 0, 3, 2), (4, 0, 3, 2), (0, 3, 3, 2), (0, 6, 3, 2)
    ]
    assert (layout.width, layout.height) == (11, 8)  # slots 7 and 8 stay empty
    with pytest.raises(IndexError, match="tile 7 out of range for 7 tiles"):
        layout.box(7)


def test_layout_names_each_tiles_channel_and_serializes_to_json() -> None:
    layout = tile_layout(3, 2, 2, channels=(64, 65, 66))
    data = json.loads(json.dumps(layout.to_dict()))
    assert data["channels"] == [64, 65, 66] and data["width"] == layout.width


def test_tile_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one tile"):
        tile(np.zeros((0, 2, 2)))
    with pytest.raises(ValueError, match="shape"):
        tile(np.zeros((2, 2)))


# --------------------------------------------------------------------------- encode


def test_png_round_trips_pixels_exactly() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (7, 5), dtype=np.uint8)
    np.testing.assert_array_equal(decode(encode_png(rgb)), rgb)
    np.testing.assert_array_equal(decode(encode_png(gray))[..., 0], gray)
    assert encode_wire(gray)[0] == "png"
    np.testing.assert_array_equal(decode(encode_wire(gray)[1])[..., 0], gray)
    np.testing.assert_array_equal(decode(encode_wire(rgb)[1]), rgb)
    palette = indexed_palette("viridis")
    data = encode_wire(gray, palette=palette)[1]
    np.testing.assert_array_equal(decode(data), palette[gray])
    np.testing.assert_array_equal(decode(encode_png(gray, palette=palette)), palette[gray])


def test_wire_png_of_rgb_is_lossless() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (9, 4, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode(encode_wire(rgb)[1]), rgb)


def test_jpeg_is_the_right_size_and_close() -> None:
    rgb = np.full((16, 24, 3), 120, np.uint8)
    data = encode_jpeg(rgb)
    assert decode(data).shape == (16, 24, 3)
    assert np.abs(decode(data).astype(int) - 120).max() <= 2
    assert encode_wire(rgb, fmt="jpeg")[0] == "jpeg"
    with pytest.raises(ValueError, match="png"):
        encode_wire(rgb, fmt="webp")


# --------------------------------------------------------------------------- views

# Three 1x1 filters over three input channels: their RGB, mean and per-channel pictures
# differ, and with symmetric scaling (max |w| = 1) the expected pixels are exact.
FILTERS = np.array([[1.0, 1.0, 1.0], [1.0, -1.0, 0.0], [-1.0, -1.0, -1.0]])[:, :, None, None]


def test_filter_grid_draws_rgb_tiles_for_three_input_channels() -> None:
    grid = filter_grid(FILTERS)
    assert grid.meta["input_channel"] == "rgb" and grid.indices is None
    assert grid.pixels.shape == (3, 3, 3)
    np.testing.assert_array_equal(grid.pixels[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(grid.pixels[0, 2], [255, 0, 128])
    np.testing.assert_array_equal(grid.pixels[2, 0], [0, 0, 0])
    np.testing.assert_array_equal(grid.pixels[1, 1], WHITE)  # gap
    np.testing.assert_array_equal(grid.pixels[2, 2], WHITE)  # empty slot


def test_filter_grid_mean_and_single_input_channel() -> None:
    mean = filter_grid(FILTERS, input_channel="mean")
    assert mean.meta["input_channel"] == "mean"
    assert [mean.pixels[0, 0, 0], mean.pixels[0, 2, 0], mean.pixels[2, 0, 0]] == [255, 128, 0]
    second = filter_grid(FILTERS, input_channel=1)
    assert [second.pixels[0, 0, 0], second.pixels[0, 2, 0], second.pixels[2, 0, 0]] == [255, 0, 0]
    np.testing.assert_array_equal(mean.pixels, mean.palette[mean.indices])


def test_filter_grid_auto_choice_follows_input_channels() -> None:
    weights = np.random.default_rng(0).standard_normal((4, 16, 3, 3))
    assert filter_grid(weights).meta["input_channel"] == "mean"
    assert filter_grid(weights[:, :1]).meta["input_channel"] == 0


@pytest.mark.parametrize("choice", ["rgb", "red", 16, -1, True, 1.5])
def test_bad_input_channel_error_names_the_choices(choice: object) -> None:
    weights = np.zeros((4, 16, 3, 3))
    with pytest.raises(ValueError, match=r"'auto', 'rgb'.*'mean'.*\[0, 16\)"):
        filter_grid(weights, input_channel=choice)  # type: ignore[arg-type]


def test_filter_grid_of_small_kernels_is_not_upscaled() -> None:
    grid = filter_grid(np.random.default_rng(0).standard_normal((8, 16, 5, 5)))
    assert grid.pixels.shape == (17, 17, 3)
    assert (grid.width, grid.height) == (17, 17)


def test_filter_single_is_one_kernel_with_its_grid_colours() -> None:
    weights = np.random.default_rng(0).standard_normal((6, 3, 3, 3))
    single = filter_single(weights, 4)
    assert single.pixels.shape == (3, 3, 3) and single.layout is None
    assert single.meta["index"] == 4
    np.testing.assert_array_equal(single.pixels, crop(filter_grid(weights), 4))


def test_activation_grid_pages_channels_on_the_layer_scale() -> None:
    acts = np.random.default_rng(0).random((10, 4, 5), dtype=np.float32)
    full = activation_grid(acts)
    page = activation_grid(acts, channels=range(4, 8))
    assert (page.meta["shown"], page.meta["total"], page.meta["channels"]) == (4, 10, [4, 5, 6, 7])
    assert page.layout is not None and page.layout.channels == (4, 5, 6, 7)
    for i in range(4):
        np.testing.assert_array_equal(crop(page, i), crop(full, i + 4))
    picked = activation_grid(acts, channels=[9, 0])
    np.testing.assert_array_equal(crop(picked, 0), crop(full, 9))


def test_activation_grid_rejects_bad_channels_and_shapes() -> None:
    acts = np.zeros((4, 2, 2))
    with pytest.raises(ValueError, match=r"4 channels \(valid 0\.\.3\)"):
        activation_grid(acts, channels=[4])
    with pytest.raises(ValueError, match="no channels"):
        activation_grid(acts, channels=[])
    with pytest.raises(ValueError, match="dense_plot"):
        activation_grid(np.zeros(10))


def test_nan_and_inf_are_painted_magenta_and_counted() -> None:
    acts = np.random.default_rng(0).random((3, 4, 5), dtype=np.float32)
    acts[1, 2, 3] = np.nan
    acts[0, 0, 0] = np.inf
    acts[2, 3, 4] = -np.inf
    grid = activation_grid(acts)
    assert grid.meta["nonfinite"] == 3
    np.testing.assert_array_equal(crop(grid, 1)[2, 3], MAGENTA)
    np.testing.assert_array_equal(crop(grid, 0)[0, 0], MAGENTA)
    assert (grid.pixels == MAGENTA).all(axis=-1).sum() == 3
    single = activation_single(acts, 1)
    np.testing.assert_array_equal(single.pixels[2, 3], MAGENTA)
    assert single.meta["nonfinite"] == 1


def test_nan_in_rgb_filters_is_magenta() -> None:
    weights = FILTERS.copy()
    weights[1, 2, 0, 0] = np.nan
    grid = filter_grid(weights)
    assert grid.meta["nonfinite"] == 1
    np.testing.assert_array_equal(grid.pixels[0, 2], MAGENTA)


def test_activation_sum_reduces_channels_to_one_picture() -> None:
    ramp = np.array([[0.0, 1.0], [2.0, 3.0]])
    acts = np.stack([ramp, ramp, ramp])
    total = activation_sum(acts, colormap="gray")
    assert total.pixels.shape == (2, 2, 3) and total.layout is None
    assert total.pixels[0, 0, 0] == 0 and total.pixels[1, 1, 0] == 255
    np.testing.assert_array_equal(
        activation_sum(acts, "mean", colormap="gray").pixels, total.pixels
    )
    with pytest.raises(ValueError, match="sum"):
        activation_sum(acts, "max")


def test_rendered_png_and_wire_decode_to_its_pixels() -> None:
    acts = np.random.default_rng(0).standard_normal((20, 6, 7)).astype(np.float32)
    acts[3, 1, 1] = np.nan
    views = (activation_grid(acts), filter_grid(np.ones((5, 3, 2, 2))), dense_plot(acts[0]))
    for rendered in views:
        np.testing.assert_array_equal(decode(rendered.png()), rendered.pixels)
        fmt, data = rendered.wire()
        assert fmt == "png"
        np.testing.assert_array_equal(decode(data), rendered.pixels)
        assert rendered._repr_png_().startswith(b"\x89PNG")


def test_dense_plot_has_the_promised_size_and_draws_something() -> None:
    vector = np.random.default_rng(0).standard_normal(4096)
    plot = dense_plot(vector, width=400, height=200)
    assert plot.pixels.shape == (200, 400, 3)
    assert (plot.pixels != 255).any(axis=-1).sum() > 1000
    assert plot.meta["positive"] == int((vector > 0).sum())
    assert plot.meta["nonfinite"] == 0


def test_dense_plot_marks_nonfinite_values() -> None:
    vector = np.linspace(-1, 1, 50)
    vector[10] = np.nan
    plot = dense_plot(vector)
    assert plot.meta["nonfinite"] == 1
    assert (plot.pixels == MAGENTA).all(axis=-1).any()


def test_dense_plot_survives_degenerate_vectors() -> None:
    for vector in (np.zeros(10), np.full(3, np.nan), np.array([-1.0, -2.0]), np.ones(1)):
        plot = dense_plot(vector)
        assert plot.pixels.shape == (240, 480, 3)


def test_topk_bars_lists_the_best_classes_with_labels() -> None:
    probs = np.array([0.05, 0.6, np.nan, 0.25, 0.1])
    bars = topk_bars(probs, labels=["cat", "dog", "eel", "fox", "gnu"], k=3, width=300)
    assert bars.meta["topk"] == [(1, "dog", 0.6), (3, "fox", 0.25), (4, "gnu", 0.1)]
    assert bars.meta["nonfinite"] == 1
    assert bars.pixels.shape[1] == 300 and bars.pixels.dtype == np.uint8
    assert (bars.pixels != 255).any(axis=-1).sum() > 200
    assert (bars.pixels == MAGENTA).all(axis=-1).any()  # the "left out" note


def test_topk_bars_takes_a_label_mapping_and_falls_back_to_indices() -> None:
    bars = topk_bars(np.array([0.1, 0.9]), labels={1: "dog"}, k=5)
    assert bars.meta["topk"] == [(1, "dog", 0.9), (0, "0", 0.1)]
    assert bars.pixels.shape[0] > 2 * 16


def test_wire_pngs_make_tile_gaps_transparent_but_saved_files_keep_them_white() -> None:
    """In a dark notebook theme the gaps show the page background, not white bars."""
    from cnn_widgets.render import views

    rendered = views.activation_grid(np.random.default_rng(0).random((4, 3, 3), np.float32))
    _, wire = rendered.wire()
    on_wire = np.asarray(Image.open(io.BytesIO(wire)).convert("RGBA"))
    saved = np.asarray(Image.open(io.BytesIO(rendered.png())).convert("RGBA"))
    gap = (3, 0)  # row 3 is the 1-px gap between the two rows of 3x3 tiles
    assert on_wire[gap][3] == 0 and saved[gap][3] == 255
    assert (on_wire[0, 0, :3] == saved[0, 0, :3]).all() and on_wire[0, 0, 3] == 255


def test_rgb_filter_grids_travel_with_transparent_gaps_too() -> None:
    from cnn_widgets.render import views

    rendered = views.filter_grid(np.random.default_rng(0).normal(size=(4, 3, 3, 3)))
    _, wire = rendered.wire()
    on_wire = np.asarray(Image.open(io.BytesIO(wire)).convert("RGBA"))
    assert on_wire[3, 0, 3] == 0 and on_wire[0, 0, 3] == 255
    np.testing.assert_array_equal(on_wire[0, 0, :3], rendered.pixels[0, 0])
