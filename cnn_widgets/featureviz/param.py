"""Image parameterizations, as numbers both backends share.

The ``lucid`` recipe does not optimize pixels. It optimizes a Fourier spectrum whose
frequencies are scaled by ``1 / f ** decay_power``, so that every frequency moves the image
about as much per step as a natural image's spectrum would suggest (Olah et al., Distill 2017,
"Preconditioning and Parameterization"); then a fixed 3x3 matrix mixes the channels with the
square root of ImageNet's colour covariance, so the optimizer steps in decorrelated colours,
and a sigmoid maps everything into ``[0, 1]``::

    image = sigmoid(color_matrix @ (irfft2(scale * spectrum, norm="ortho") / 4))

The backends implement that formula with their own ops; this module holds the constants and
draws the starting values from a numpy generator, so both start from the same numbers.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "COLOR_SQRT_COVARIANCE",
    "FOURIER_DIVISOR",
    "color_matrix",
    "init_pixels",
    "init_spectrum",
    "spectrum_from_image",
    "spectrum_scale",
]

START_CLIP = 1e-3
"""An image start is clipped to ``[START_CLIP, 1 - START_CLIP]`` before the sigmoid is
inverted: a pure black or white pixel would need an infinite logit, and a pixel far out on
the sigmoid's tail barely moves (its gradient is ``x (1 - x)``, 0.001 here)."""

COLOR_SQRT_COVARIANCE = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float64
)
"""Square root of the colour covariance of ImageNet pixels (RGB), the matrix Lucid uses."""

FOURIER_DIVISOR = 4.0
"""The irfft output is divided by this (Lucid's constant): with the 1/f scaling the raw image
would otherwise start too contrasty for the sigmoid."""


def spectrum_scale(height: int, width: int, decay_power: float) -> np.ndarray:
    """``1 / max(f, 1 / max(h, w)) ** decay_power`` for each rfft2 bin, shape ``(h, w//2+1)``.

    The floor keeps the DC bin finite: it gets the weight of the lowest nonzero frequency.
    """
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    freqs = np.sqrt(fx * fx + fy * fy)
    return (1.0 / np.maximum(freqs, 1.0 / max(height, width)) ** decay_power).astype(np.float32)


def color_matrix(channels: int, decorrelate: bool) -> np.ndarray:
    """The ``(C, C)`` channel mixing applied before the sigmoid.

    For RGB with ``decorrelate``: the ImageNet square-root covariance, divided by its largest
    column norm (so no colour direction is amplified). Any other channel count (a grayscale
    model has one) or ``decorrelate=False``: the identity.
    """
    if channels == 3 and decorrelate:
        norms = np.linalg.norm(COLOR_SQRT_COVARIANCE, axis=0)
        return (COLOR_SQRT_COVARIANCE / norms.max()).astype(np.float32)
    return np.eye(channels, dtype=np.float32)


def init_spectrum(
    rng: np.random.Generator, channels: int, height: int, width: int, sd: float
) -> np.ndarray:
    """Starting spectrum ``(C, h, w//2+1, 2)`` (real, imaginary), normal with std ``sd``."""
    shape = (channels, height, width // 2 + 1, 2)
    return (rng.standard_normal(shape) * sd).astype(np.float32)


def init_pixels(
    rng: np.random.Generator, channels: int, height: int, width: int, noise: float
) -> np.ndarray:
    """Starting image ``(C, h, w)`` of the naive recipe: gray plus uniform noise.

    The Keras example starts from ``random() * 20 + 128`` on a 0..255 scale; on [0, 1] that is
    ``128 / 255 + noise * random()`` with ``noise = 20 / 255``.
    """
    return (128.0 / 255.0 + noise * rng.random((channels, height, width))).astype(np.float32)


def spectrum_from_image(image: np.ndarray, color: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The spectrum ``(C, h, w//2+1, 2)`` whose parameterized image is ``image``.

    The inverse of the formula in this module's docstring: logit, unmix the colours, undo the
    ``/ 4``, ``rfft2`` with ``norm="ortho"``, divide by the frequency scaling. ``image`` is
    ``(C, h, w)`` in [0, 1]; it comes back exactly, up to float rounding, wherever it lies
    within ``[START_CLIP, 1 - START_CLIP]``.
    """
    x = np.clip(image.astype(np.float64), START_CLIP, 1.0 - START_CLIP)
    logits = np.log(x) - np.log1p(-x)
    unmixed = np.einsum("ij,jhw->ihw", np.linalg.inv(color.astype(np.float64)), logits)
    spectrum = np.fft.rfft2(unmixed * FOURIER_DIVISOR, norm="ortho") / scale
    return np.stack([spectrum.real, spectrum.imag], axis=-1).astype(np.float32)
