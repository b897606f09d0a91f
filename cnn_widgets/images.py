"""Turning whatever the user hands us into one ``(C, H, W)`` float32 image in [0, 1].

Accepted: numpy arrays (HW, HWC or CHW; uint8 is scaled to [0, 1], floats are taken as
they are), PIL images, file paths and raw file bytes. Conversions happen only where they
are unambiguous (gray <-> RGB, RGBA -> RGB); anything else is refused with a message that
says what was expected and what arrived.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

ImageLike = Any  # np.ndarray | PIL.Image.Image | str | os.PathLike | bytes

_CHANNEL_COUNTS = (1, 3, 4)
# ITU-R 601-2 luma, the weights PIL's "L" conversion uses.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _from_pil(img: Image.Image) -> np.ndarray:
    """A PIL image as HWC float32 in [0, 1]."""
    if img.mode == "P":  # palette images may carry transparency
        img = img.convert("RGBA")
    elif img.mode == "1":
        img = img.convert("L")
    if img.mode == "F":
        return np.asarray(img, dtype=np.float32)[..., None]
    if img.mode == "I" or img.mode.startswith("I;16"):
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        return (arr / top)[..., None]
    if img.mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr[..., None] if arr.ndim == 2 else arr


def _read_file(source: str | os.PathLike | bytes, what: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            img.load()
            return _from_pil(img)
    except FileNotFoundError:
        raise ValueError(f"no image file at {os.fspath(source)!r}") from None  # type: ignore[arg-type]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(
            f"cannot read {what} as an image (PNG, JPEG, BMP, GIF, TIFF, WebP...): {exc}"
        ) from None


def _scale_numeric(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 255:
            raise ValueError(
                f"integer image values must lie in 0..255 (got {lo}..{hi}); "
                "pass uint8, or floats in [0, 1]"
            )
        return arr.astype(np.float32) / 255.0
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float32, copy=False)
    raise TypeError(f"an image array must be numeric, got dtype {arr.dtype}")


def _to_hwc(arr: np.ndarray, model_channels: int | None = None) -> np.ndarray:
    """Decide HW / HWC / CHW, refusing the ambiguous ones. A model with an unusual channel
    count (RGB-D, multispectral) also makes that count a channel axis."""
    counts = {*_CHANNEL_COUNTS, model_channels} - {None}
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2:
        return arr[..., None]
    if arr.ndim != 3:
        raise ValueError(
            f"expected one image shaped (H, W), (H, W, C) or (C, H, W) with C in 1, 3, 4; "
            f"got an array of shape {arr.shape}"
        )
    first, last = arr.shape[0] in counts, arr.shape[-1] in counts
    if last and not first:
        return arr
    if first and not last:
        return np.moveaxis(arr, 0, -1)
    if first and last:
        # Both ends could be channels, e.g. (4, 5, 3): the smaller one is taken as channels
        # (images are bigger than their channel count); a tie such as (3, 32, 3) is refused.
        if arr.shape[0] == arr.shape[-1]:
            raise ValueError(
                f"image shape {arr.shape} is ambiguous: it could be (H, W, C) or (C, H, W). "
                "Pass a PIL image, or an array whose first or last axis is clearly the channels"
            )
        return arr if arr.shape[-1] < arr.shape[0] else np.moveaxis(arr, 0, -1)
    raise ValueError(
        f"expected an image shaped (H, W), (H, W, C) or (C, H, W) with C in "
        f"{', '.join(str(c) for c in sorted(counts))} channels; got shape {arr.shape}"
    )


def to_hwc_float(image: ImageLike, model_channels: int | None = None) -> np.ndarray:
    """Any accepted image as HWC float32, channels as they came (1, 2, 3 or 4)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _read_file(bytes(image), f"the given {len(image)} bytes")
    if isinstance(image, (str, os.PathLike)):
        return _read_file(Path(image), f"file {os.fspath(image)!r}")
    if isinstance(image, Image.Image):
        return _from_pil(image)
    if hasattr(image, "__array__") and not isinstance(image, np.ndarray):
        image = np.asarray(image)  # torch tensors on CPU, tf tensors, lists of lists
    if isinstance(image, (list, tuple)):
        image = np.asarray(image)
    if not isinstance(image, np.ndarray):
        raise TypeError(
            "an image is a numpy array, a PIL image, a file path or the file's bytes; "
            f"got {type(image).__name__}"
        )
    return _to_hwc(_scale_numeric(image), model_channels)


def _match_channels(hwc: np.ndarray, channels: int) -> np.ndarray:
    have = hwc.shape[-1]
    if have == 4:  # RGBA: composite over white so transparent areas don't turn black
        alpha = hwc[..., 3:4]
        hwc = hwc[..., :3] * alpha + (1.0 - alpha)
        have = 3
    if have == 2:  # gray + alpha
        hwc = hwc[..., :1] * hwc[..., 1:2] + (1.0 - hwc[..., 1:2])
        have = 1
    if have == channels:
        return hwc
    if have == 1 and channels == 3:
        return np.repeat(hwc, 3, axis=-1)
    if have == 3 and channels == 1:
        return (hwc @ _LUMA)[..., None]
    raise ValueError(
        f"the model expects {channels}-channel images; got an image with {have} channels "
        "(only gray, RGB and RGBA images convert automatically)"
    )


def _resize(hwc: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the shorter side, then centre-crop to ``size`` (aspect ratio kept)."""
    h, w = hwc.shape[:2]
    th, tw = size
    if (h, w) == (th, tw):
        return hwc
    scale = max(th / h, tw / w)
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(hwc[..., c]), mode="F").resize(
                (nw, nh), Image.Resampling.BILINEAR
            )
        )
        for c in range(hwc.shape[-1])
    ]
    out = np.stack(planes, axis=-1)
    top, left = (nh - th) // 2, (nw - tw) // 2
    return out[top : top + th, left : left + tw]


def load_image(
    image: ImageLike, channels: int, size: tuple[int, int] | None = None
) -> np.ndarray:
    """Convert ``image`` to ``(channels, H, W)`` float32.

    Parameters
    ----------
    image:
        numpy array (HW, HWC or CHW), PIL image, path, or the bytes of an image file.
    channels:
        The model's input channel count (1 or 3 convert into each other; RGBA drops alpha).
    size:
        ``(H, W)`` the model needs, or None to keep the image's own size. A different size
        is met by scaling the shorter side and centre-cropping.
    """
    hwc = _match_channels(to_hwc_float(image, channels), channels)
    if hwc.shape[0] < 1 or hwc.shape[1] < 1:
        raise ValueError(f"the image is empty: shape {hwc.shape}")
    if size is not None:
        hwc = _resize(hwc, size)
    return np.ascontiguousarray(np.moveaxis(hwc, -1, 0), dtype=np.float32)
