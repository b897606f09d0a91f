"""Random views of the image, drawn in numpy and applied by each backend as one affine warp.

Every step the model sees a randomly moved copy of the image, so that the optimizer cannot
win with a pattern that only works at one exact pixel alignment (Distill 2017,
"Transformation robustness"). The draws are Lucid's: jitter by up to 8 px, scale by one of
0.90..1.10, rotate by one of -10..10 degrees, jitter by up to 4 px, with the constant 0.5
wherever the view leaves the image (Lucid pads with 0.5 for that). Here the four are composed
into a single affine map per image and step, applied with one bilinear resampling, because

* one resampling blurs less than several, and costs one op;
* the view keeps the image's size, so a batch of images, each with its own draw, is one
  tensor, and a model with a fixed input size still runs;
* sampling outside the image gives the 0.5 frame without a padded copy.

The map, from a view pixel ``u`` to an image pixel ``p`` (both in pixels from the centre)::

    p = d1 + R(-angle) @ (u + d2) / scale

``d1`` and ``d2`` are the two jitters, integers uniform in ``[-j/2, j/2]`` per axis. At
``scale = 1`` the image appears at its own size, as in Lucid (whose view is the padded canvas
at scale 1). A first version zoomed the view out to show Lucid's whole 12-pixel frame; the
final images then reached ~7 % less activation (EfficientNet-Lite0, 4 channels of
``_blocks.6._project_conv``, 128 steps: 4.88 against 5.23), being optimized at ~0.91 of the
scale they are looked at.

The matrices are returned in the normalized coordinates of ``torch.nn.functional.affine_grid``
with ``align_corners=False`` (the image spans [-1, 1], pixel centres at ``(2i + 1) / n - 1``);
the Keras backend samples with the same convention.

Draws come from one generator per image, so an image's views do not depend on which other
images share its batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "LUCID_ANGLES",
    "LUCID_SCALES",
    "REFERENCE_SIZE",
    "Magnitudes",
    "draw_views",
    "identity_views",
    "magnitudes",
]

LUCID_SCALES = tuple(round(1.0 + (i - 5) / 50.0, 2) for i in range(11))
"""0.90, 0.92, ... 1.10: Lucid's random scale choices."""

LUCID_ANGLES = tuple(float(a) for a in range(-10, 11)) + (0.0,) * 5
"""-10 .. 10 degrees, plus five extra zeros (unrotated views are drawn more often)."""

REFERENCE_SIZE = 128
"""The image size Lucid's pixel magnitudes (jitter 8 and 4) were chosen for."""


@dataclass(frozen=True)
class Magnitudes:
    """Pixel magnitudes of the two random shifts for one image size."""

    jitter: int
    final_jitter: int


def magnitudes(size: tuple[int, int], jitter: int | None, final_jitter: int | None) -> Magnitudes:
    """Lucid's shifts (8 and 4 px), shrunk for images smaller than 128 pixels.

    An 8-pixel jitter is a sixteenth of a 128-pixel image but more than a quarter of a
    28-pixel MNIST digit, so each default is multiplied by ``min(1, min(h, w) / 128)`` and
    rounded (28 px -> 2 and 1). Larger images keep Lucid's values: scale and rotation are
    relative already. Explicit values are used as given.
    """
    factor = min(1.0, min(size) / REFERENCE_SIZE)

    def pick(value: int | None, default: int, name: str) -> int:
        if value is None:
            return round(default * factor)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an int >= 0 (pixels), got {value!r}")
        return int(value)

    return Magnitudes(pick(jitter, 8, "jitter"), pick(final_jitter, 4, "final_jitter"))


def draw_views(
    rng: np.random.Generator,
    steps: int,
    size: tuple[int, int],
    mags: Magnitudes,
    scales: tuple[float, ...],
    angles: tuple[float, ...],
) -> np.ndarray:
    """One image's random views for every step, as ``(steps, 2, 3)`` float32 affine matrices.

    Parameters
    ----------
    rng:
        The image's own generator.
    steps:
        Number of optimization steps.
    size:
        ``(height, width)`` of the image and of the view.
    mags:
        Pixel magnitudes from :func:`magnitudes`.
    scales, angles:
        The choices for the random scale and rotation (degrees).
    """
    height, width = size
    d1 = rng.integers(0, mags.jitter + 1, size=(steps, 2)) - mags.jitter / 2.0
    scale = rng.choice(np.asarray(scales, np.float64), size=steps)
    angle = np.deg2rad(rng.choice(np.asarray(angles, np.float64), size=steps))
    d2 = rng.integers(0, mags.final_jitter + 1, size=(steps, 2)) - mags.final_jitter / 2.0

    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    # In pixels, (x, y) order: p = d1 + A @ (u + d2) with A = R(-angle) / scale
    # = [[cos, sin], [-sin, cos]] / scale.
    linear = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)
    shift = d1 + np.einsum("sij,sj->si", linear, d2)
    # Normalized coordinates: x_n = 2 p_x / W for the image and the view alike (same for y).
    to_norm = np.array([2.0 / width, 2.0 / height])
    from_norm = np.array([width / 2.0, height / 2.0])
    theta = np.empty((steps, 2, 3), np.float32)
    theta[:, :, :2] = to_norm[None, :, None] * linear * from_norm[None, None, :]
    theta[:, :, 2] = to_norm[None, :] * shift
    return theta


def identity_views(steps: int) -> np.ndarray:
    """``(steps, 2, 3)`` identity matrices: the model sees the image as it is."""
    theta = np.zeros((steps, 2, 3), np.float32)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    return theta
