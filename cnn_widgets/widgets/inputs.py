"""The inputs a user gives a widget: one image (:class:`ImagePanel`) and a set of images
(:class:`ImageSetPanel`).

Both are plain properties that take what the functions take — arrays, PIL images, paths,
file bytes; a folder or a list for the set — and convert it once. What cannot be used leaves
the previous value in place and says why in ``error``. Only what the browser needs is synced:
the image as PNG bytes, the names of the bundled samples, the size of the set.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import traitlets
from ipywidgets.widgets.trait_types import bytes_serialization
from PIL import Image

from ..analysis.top_images import ImageSet
from ..api import prepare_image
from ..backends import Adapter, LayerInfo
from ..images import ImageLike
from .frames import image_key, image_png
from .selection import SelectionPanel, zoo

__all__ = ["ImagePanel", "ImageSetPanel", "image_set"]

log = logging.getLogger(__name__)


class ImagePanel(SelectionPanel):
    """The input image of the feature-map views: set in Python, picked from the bundled
    samples, or opened / dropped in the browser."""

    _writable = frozenset({"sample", "upload", "upload_name"})

    image_png = traitlets.Bytes(b"").tag(sync=True)
    """The input image as the model sees it (resized, channels matched), as PNG bytes sent in
    a binary buffer (read-only: assign :attr:`image`)."""
    sample = traitlets.Unicode("").tag(sync=True)
    """Name of the bundled sample image in use (see ``samples``); setting it loads that image."""
    samples = traitlets.List(traitlets.Unicode()).tag(sync=True)
    """Names of the bundled sample images (``cnn_widgets.zoo.list_samples()``)."""
    upload = traitlets.Bytes(b"").tag(sync=True, **bytes_serialization)
    """Bytes of a file the user picked or dropped in the browser; consumed and cleared."""
    upload_name = traitlets.Unicode("").tag(sync=True)
    """File name of the last upload (for messages)."""

    def __init__(
        self,
        model: Any,
        image: ImageLike | None = None,
        layer: str | int | LayerInfo | None = None,
        **options: Any,
    ) -> None:
        self._setup(model, image, layer, options)

    def _prepare(self, adapter: Adapter, image: Any, options: dict, state: dict) -> None:
        super()._prepare(adapter, image, options, state)
        self._input: np.ndarray | None = None
        self._input_key = ""
        sample = options.pop("sample", "")
        if image is not None and sample:
            raise ValueError("give image or sample, not both")
        if image is None and sample:
            image = zoo().sample_image(sample)
        if image is None:
            image = self._default_image(adapter)
        if image is not None:
            self._input = prepare_image(adapter, image)  # bad arguments raise here
            self._input_key = image_key(self._input)
        state.update(
            image_png=image_png(self._input) if self._input is not None else b"",
            samples=self._sample_names(),
            sample=sample,
        )

    def _default_view(self) -> str:
        if "activations" in self._VIEWS and self._input is not None:
            return "activations"
        return super()._default_view()

    @staticmethod
    def _default_image(adapter: Adapter) -> np.ndarray | None:
        try:
            return zoo().default_image(adapter)
        except Exception as exc:  # e.g. scikit-image missing for the photos: no image yet
            log.info("no default image: %s", exc)
            return None

    @staticmethod
    def _sample_names() -> list[str]:
        try:
            return list(zoo().list_samples())
        except Exception as exc:
            log.info("no sample images: %s", exc)
            return []

    def _current_input(self) -> tuple[np.ndarray | None, str]:
        return self._input, self._input_key

    # -- the image ---------------------------------------------------------------------------
    @property
    def image(self) -> np.ndarray | None:
        """The input image as the model sees it: ``(H, W, C)`` float32 in [0, 1], or None.

        Assign a numpy array, a PIL image, a path or file bytes (None removes it): it is
        converted to the model's input once and the feature maps follow. An image that
        cannot be used leaves the previous one and sets ``error``.
        """
        return None if self._input is None else np.moveaxis(self._input, 0, -1)

    @image.setter
    def image(self, value: ImageLike | None) -> None:
        self._new_action()
        if value is None:
            self._take(None)
            return
        try:
            array = prepare_image(self._adapter, value)
        except Exception as exc:
            self._report(exc)
            return  # the previous image stays
        self._take(array)

    def _take(self, array: np.ndarray | None, *, sample: str = "") -> None:
        """Show ``array`` (already converted; None: no image) and redraw."""
        with self._lock:
            self._input = array
            self._input_key = "" if array is None else image_key(array)
            with self.hold_sync(), self._quietly():
                self.image_png = b"" if array is None else image_png(array)
                self.sample = sample  # an image from elsewhere is no sample
        self._refresh()

    @traitlets.observe("sample")
    def _on_sample(self, change: dict[str, Any]) -> None:
        name, previous = change["new"], change["old"]
        if self._quiet or not name or name == previous:
            return
        self._new_action()
        try:
            array = prepare_image(self._adapter, zoo().sample_image(name))
        except Exception as exc:
            self._report(exc)
            with self._quietly():
                self.sample = previous
            return
        self._take(array, sample=name)

    @traitlets.observe("upload")
    def _on_upload(self, change: dict[str, Any]) -> None:
        data = bytes(change["new"] or b"")
        if not data or self._quiet:
            return
        name = self.upload_name or "the upload"
        try:
            array = prepare_image(self._adapter, data)
        except Exception as exc:
            self._report(f"cannot use the uploaded file {name!r}: {exc}")
        else:
            self._take(array)
        finally:
            with self._quietly():
                self.upload = b""  # consumed: the same file may be dropped again


class ImageSetPanel(SelectionPanel):
    """A set of images for the health check and the top-activating images."""

    images_count = traitlets.Int(0).tag(sync=True)
    """How many images :attr:`images` holds; 0 when none were given (read-only)."""

    def _prepare(self, adapter: Adapter, image: Any, options: dict, state: dict) -> None:
        super()._prepare(adapter, image, options, state)
        self._images: ImageSet | None = None

    @property
    def images(self) -> ImageSet | None:
        """The image set for the health check and the top-activating images, or None.

        Assign a folder, an ``(N, H, W[, C])`` array or a list of images or paths (as for
        :func:`cnn_widgets.top_images`); None removes it. An unusable value sets ``error`` and
        keeps the previous set. With a set, the strip of the images that excite the selected
        channel most follows the selection.
        """
        return self._images

    @images.setter
    def images(self, value: Any) -> None:
        self._new_action()
        try:
            chosen = None if value is None else image_set(self._adapter, value)
        except Exception as exc:
            self._report(exc)
            return  # the previous set stays
        with self._lock:
            self._images = chosen
            self.images_count = 0 if chosen is None else int(chosen.count or 0)
        self._images_changed()

    def _images_changed(self) -> None:
        """Hook: the image set changed; panels drop results that describe the old set and
        show what they have for the new one."""


def image_set(adapter: Adapter, images: Any) -> ImageSet:
    """``images`` as an :class:`ImageSet` that can be read more than once, checked on its
    first image.

    Parameters
    ----------
    adapter:
        The model the images are for (its channels and input size).
    images:
        A folder, an ``(N, H, W[, C])`` array, a list of images or paths, or an
        :class:`ImageSet` of known length.

    Raises
    ------
    ValueError, TypeError
        For an empty set, a folder without images, a shape that is not a stack of images, or
        a first image that cannot be read.
    """
    if isinstance(images, ImageSet):
        result = images
    else:
        value = images
        one_file = isinstance(value, (str, os.PathLike, bytes, Image.Image))
        array_like = isinstance(value, np.ndarray) or hasattr(value, "__array__")
        lazy = isinstance(value, Iterable) and not isinstance(value, Sequence)
        if lazy and not (one_file or array_like):
            # A generator is read once, but every channel's top images read the set again.
            value = list(value)
        result = ImageSet(value)
    if result.count is None:
        raise ValueError(
            "the image set must have a known length (a folder, an array or a list), because "
            "each channel's top images read it again"
        )
    # Reading the first image catches most mistakes (a wrong path, a shape that is no image)
    # now, when the user sets ``images``, not later on the worker thread.
    next(iter(result.batches(adapter.spec.channels, adapter.spec.spatial, 1)))
    return result
