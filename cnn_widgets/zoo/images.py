"""Sample images that work offline: scikit-image's photos and ten bundled MNIST digits.

The photos come from ``skimage.data`` (CC0 / public domain, shipped inside scikit-image, so
nothing is downloaded). The digits are held-out test images of the MNIST subset the bundled
LeNet was trained beside (``data/mnist_samples.npz``), one per class.
"""

from __future__ import annotations

import difflib
import importlib.resources
from functools import cache, lru_cache

import numpy as np

SAMPLE_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "camera")
"""The scikit-image photos: RGB ``(H, W, 3)`` uint8, except ``camera`` which is gray ``(H, W)``."""

DIGIT_IMAGES = tuple(f"digit{d}" for d in range(10))
"""The bundled MNIST test digits: gray ``(28, 28)`` uint8, white strokes on black."""

_DIGITS_FILE = "mnist_samples.npz"


def list_samples() -> list[str]:
    """Every name :func:`sample_image` accepts: the photos, then ``digit0`` .. ``digit9``."""
    return [*SAMPLE_IMAGES, *DIGIT_IMAGES]


def sample_image(name: str) -> np.ndarray:
    """Load a sample image by name, offline.

    Parameters
    ----------
    name:
        One of :func:`list_samples`: ``"astronaut"``, ``"chelsea"``, ``"coffee"``,
        ``"rocket"``, ``"camera"`` (scikit-image) or ``"digit0"`` .. ``"digit9"`` (bundled).

    Returns
    -------
    numpy.ndarray
        uint8; ``(H, W, 3)`` RGB for the colour photos, ``(H, W)`` for ``camera`` and the
        digits. A fresh copy each call, so callers may modify it.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the valid ones.
    ImportError
        For a photo when scikit-image is not installed.
    """
    if not isinstance(name, str):
        raise TypeError(f"a sample image is named by a str, got {type(name).__name__}")
    if name in DIGIT_IMAGES:
        return _digits()[int(name.removeprefix("digit"))].copy()
    if name in SAMPLE_IMAGES:
        return _photo(name).copy()
    close = difflib.get_close_matches(name, list_samples(), n=2, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"no sample image named {name!r}.{hint} Valid names: {', '.join(list_samples())}"
    )


@cache
def _photo(name: str) -> np.ndarray:
    try:
        import skimage.data
    except ImportError as err:
        raise ImportError(
            f"the sample image {name!r} comes from scikit-image, which is not installed: "
            'pip install "cnn_widgets[demo]" (the digit0..digit9 samples work without it)'
        ) from err
    image = np.asarray(getattr(skimage.data, name)())
    image.setflags(write=False)  # the cached original; callers get copies
    return image


@lru_cache(maxsize=1)
def _digits() -> np.ndarray:
    resource = importlib.resources.files(__package__).joinpath("data", _DIGITS_FILE)
    with resource.open("rb") as fh, np.load(fh, allow_pickle=False) as npz:
        images, labels = npz["images"], npz["labels"]
    # The file stores one digit per class in class order; check rather than trust it, because
    # "digit3" must show a 3.
    if images.shape != (10, 28, 28) or labels.tolist() != list(range(10)):
        raise RuntimeError(f"{_DIGITS_FILE} is malformed: expected digits 0..9 in order")
    images = images.astype(np.uint8)
    images.setflags(write=False)
    return images
