"""Deletion / insertion (RISE) and its options on a model whose score is a known masked sum,
so that the perfect map is known: it must beat a random map on every measure and option."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import cnn_widgets as cw
from cnn_widgets.attribution import deletion_insertion
from cnn_widgets.attribution.faithfulness import FILLS, blurred

torch = pytest.importorskip("torch")

SIDE = 32
REGION = (slice(4, 16), slice(16, 28))  # off-centre, on even (and 4-aligned) coordinates


def scene() -> tuple[cw.Adapter, np.ndarray, np.ndarray]:
    """A linear model whose class-0 logit is a weighted sum of the pixels set in a
    checkerboard inside REGION, the image (that checkerboard there, grey elsewhere) and the
    weight mask. Black or blurred (grey: the 2x2 mean of a checkerboard), a pixel loses the
    same share of its weight, so the mask is the perfect map for every fill."""
    x = np.full((3, SIDE, SIDE), 0.5, np.float32)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    board = ((yy + xx) % 2 == 0).astype(np.float32)
    inside = np.zeros((SIDE, SIDE), bool)
    inside[REGION] = True
    x[:, inside] = board[inside]
    weights = np.where(inside, board, 0).astype(np.float32)
    linear = torch.nn.Linear(3 * SIDE * SIDE, 2)
    with torch.no_grad():
        scale = 8 / (3 * weights.sum())  # logit +4 on the image, -4 on black
        linear.weight.zero_()
        linear.weight[0] = torch.from_numpy(np.broadcast_to(weights, x.shape).ravel() * scale)
        linear.bias.copy_(torch.tensor([-4.0, 0.0]))
    model = torch.nn.Sequential(torch.nn.Flatten(), linear).eval()
    return cw.adapt(model, input_shape=(3, SIDE, SIDE)), x, weights


def prob(adapter: cw.Adapter, x: np.ndarray) -> float:
    logits = adapter.gradients(x[None], (), 0, backward=False).logits[0].astype(float)
    return float(np.exp(logits[0] - logits.max()) / np.exp(logits - logits.max()).sum())


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("patch", [1, 4])
@pytest.mark.parametrize("least_first", [False, True])
def test_the_perfect_map_beats_a_random_map_on_every_measure(fill, patch, least_first) -> None:
    adapter, x, perfect = scene()
    options: dict[str, Any] = {"fill": fill, "patch": patch, "least_first": least_first}
    good = deletion_insertion(adapter, x, perfect, 0, steps=16, **options)
    gains, worse = [], []
    for seed in range(3):
        noise = np.random.default_rng(seed).random(perfect.shape)
        other = deletion_insertion(adapter, x, noise, 0, steps=16, **options)
        gains.append(other.deletion_gain)
        if least_first:  # the reverse order: removing the important pixels last
            worse.append(good.deletion > other.deletion and good.insertion < other.insertion)
        else:
            worse.append(good.deletion < other.deletion and good.insertion > other.insertion)
    assert all(worse), (good, fill, patch)
    # the score falls at once one way, at the very end the other (to 1/2 for the blur)
    assert good.deletion_gain > 0.3
    assert good.deletion_gain > max(gains) + 0.25


def test_least_first_deletes_in_the_reverse_order() -> None:
    adapter, x, perfect = scene()
    heat = perfect + np.random.default_rng(1).random(perfect.shape) * 0.1  # no ties
    most = deletion_insertion(adapter, x, heat, 0, steps=8)
    least = deletion_insertion(adapter, x, heat, 0, steps=8, least_first=True)
    assert np.allclose(least.deletion_curve, most.reverse_deletion_curve)
    assert np.allclose(most.deletion_curve, least.reverse_deletion_curve)
    assert least.deletion_gain == pytest.approx(most.deletion_gain)
    assert most.deletion_gain == pytest.approx(most.reverse_deletion - most.deletion)
    # the first eighth removed least-first: the pixels with the smallest heat
    first = x.reshape(3, -1).copy()
    first[:, np.argsort(heat.ravel(), kind="stable")[: SIDE * SIDE // 8]] = 0
    assert least.deletion_curve[1] == pytest.approx(prob(adapter, first.reshape(x.shape)))


@pytest.mark.parametrize("fill", FILLS)
def test_fill_sets_what_removed_pixels_become_and_where_insertion_starts(fill) -> None:
    adapter, x, perfect = scene()
    result = deletion_insertion(adapter, x, perfect, 0, steps=4, fill=fill)
    empty = blurred(x) if fill == "blur" else np.zeros_like(x)
    start = np.zeros_like(x) if fill == "black" else blurred(x)
    assert result.deletion_curve[0] == pytest.approx(prob(adapter, x), rel=1e-5)
    assert result.deletion_curve[-1] == pytest.approx(prob(adapter, empty), rel=1e-5)
    assert result.reverse_deletion_curve[-1] == pytest.approx(prob(adapter, empty), rel=1e-5)
    assert result.insertion_curve[0] == pytest.approx(prob(adapter, start), rel=1e-5)
    assert result.insertion_curve[-1] == pytest.approx(prob(adapter, x), rel=1e-5)
    assert prob(adapter, empty) < 0.6 < prob(adapter, x)  # the fills differ for this model


def test_patches_rank_and_remove_whole_squares_by_their_mean() -> None:
    adapter, x, _ = scene()
    heat = np.zeros((SIDE, SIDE))
    heat[16:24, 8:16] = 1.0  # exactly one 8x8 patch: mean 1
    heat[0, 0] = 8.0  # one hot pixel: its patch's mean is 8/64, below 1
    result = deletion_insertion(adapter, x, heat, 0, steps=16, patch=8)
    assert np.allclose(result.fractions, np.arange(17) / 16)  # one patch of 16 a step
    first = x.copy()
    first[:, 16:24, 8:16] = 0
    assert result.deletion_curve[1] == pytest.approx(prob(adapter, first), rel=1e-5)
    second = first.copy()
    second[:, 0:8, 0:8] = 0
    assert result.deletion_curve[2] == pytest.approx(prob(adapter, second), rel=1e-5)
    # 12-pixel patches on 32 pixels: the last row and column of patches are 8 wide
    corner = np.zeros((SIDE, SIDE))
    corner[24:, 24:] = 1.0
    odd = deletion_insertion(adapter, x, corner, 0, steps=9, patch=12)
    assert odd.fractions[1] == 64 / 1024 and odd.fractions[-1] == 1.0
    assert np.all(np.diff(odd.fractions) > 0)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"fill": "grey"}, r"fill must be one of 'rise', 'black', 'blur'; got 'grey'"),
        ({"patch": 0}, r"patch must be an int >= 1"),
        ({"patch": 2.5}, r"patch must be an int >= 1"),
        ({"steps": 0}, r"steps must be an int >= 1"),
        ({"batch_size": 0}, r"batch_size must be an int >= 1"),
    ],
)
def test_bad_options_name_the_valid_choices(option, message) -> None:
    adapter, x, perfect = scene()
    with pytest.raises(ValueError, match=message):
        deletion_insertion(adapter, x, perfect, 0, **option)
    with pytest.raises(TypeError, match="least_first must be True or False"):
        deletion_insertion(adapter, x, perfect, 0, least_first="yes")


def test_the_curves_do_not_depend_on_the_batching() -> None:
    """The three curves' images travel together in near-equal batches: any batch size gives
    the same curves (a linear model: float32 sums in another order at most)."""
    adapter, x, perfect = scene()
    random_map = np.random.default_rng(4).random(perfect.shape)
    for heat in (perfect, random_map):
        runs = [
            deletion_insertion(adapter, x, heat, 0, steps=8, patch=4, batch_size=b)
            for b in (1, 4, 6, 100)
        ]
        for run in runs[1:]:
            for name in ("deletion_curve", "insertion_curve", "reverse_deletion_curve"):
                np.testing.assert_allclose(
                    getattr(run, name), getattr(runs[0], name), rtol=1e-6, atol=1e-7
                )
