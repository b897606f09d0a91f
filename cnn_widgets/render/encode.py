"""Turn rendered pixels into bytes: PNG for files, a fast PNG (or JPEG) for the wire.

Measured on this project's 2-core machine (``benchmarks/render.py``): Pillow's PNG encoder
tries every row filter even at ``compress_level=0`` and spends ~8 ms on a 344 x 344 RGB grid,
most of a widget's frame. An *indexed* PNG (one byte per pixel plus a 256-colour palette) is a
third of the bytes of RGB, and the browser still decodes it natively (a Blob in an ``<img>``),
so the front end needs no lookup table and no canvas code. Written here with row filter "none"
and zlib's run-length strategy at level 1, it costs ~1 ms for a 512-channel grid, half of
zlib's default strategy at the same level, with output as small or smaller (runs of zeros are
what ReLU maps are made of). That is the default wire format. Saved files go through Pillow,
whose adaptive row filters give smaller files.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from .colormaps import GAP_INDEX

#: What :func:`encode_wire` can produce; the string is also the MIME subtype (``image/png``).
WIRE_FORMATS = ("png", "jpeg")
#: zlib level of wire PNGs: level 1 still meets the frame budget on incompressible random data
#: and shrinks sparse, smooth feature maps to about half.
WIRE_COMPRESS_LEVEL = 1
#: Run-length matching only: twice as fast as the default strategy at level 1, same size or less.
WIRE_ZLIB_STRATEGY = zlib.Z_RLE

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode_png(
    image: np.ndarray, compress_level: int = 1, *, palette: np.ndarray | None = None
) -> bytes:
    """Encode a picture as PNG with Pillow (adaptive row filters: small files).

    Parameters
    ----------
    image:
        uint8 ``(H, W)`` gray or palette indices, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA.
    compress_level:
        zlib level 0 (none, fastest) to 9 (smallest, slowest).
    palette:
        ``(256, 3)`` uint8: ``image`` holds indices into it; written as an indexed PNG.

    Returns
    -------
    bytes
    """
    pil = _to_pil(image, palette)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def encode_jpeg(
    image: np.ndarray, quality: int = 85, *, palette: np.ndarray | None = None
) -> bytes:
    """Encode a picture as JPEG (lossy; for streamed frames, not for saved results).

    Parameters
    ----------
    image:
        uint8 ``(H, W)`` gray or ``(H, W, 3)`` RGB; palette indices with ``palette``.
    quality:
        1 to 95 (Pillow's scale).
    palette:
        ``(256, 3)`` uint8 table when ``image`` holds indices; expanded to RGB first.

    Returns
    -------
    bytes
    """
    if palette is not None:
        image = np.take(palette, image, axis=0)
    buffer = io.BytesIO()
    # 4:4:4 chroma: tiles are a few pixels wide and get upscaled, so chroma subsampling smears
    # colours across tile borders visibly.
    _to_pil(image, None).save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


def encode_wire(
    pixels: np.ndarray,
    *,
    palette: np.ndarray | None = None,
    fmt: str = "png",
    compress_level: int = WIRE_COMPRESS_LEVEL,
    quality: int = 85,
) -> tuple[str, bytes]:
    """Encode a frame for the widget's front end as fast as the frame budget needs.

    Parameters
    ----------
    pixels:
        uint8 ``(H, W)`` gray or palette indices, or ``(H, W, 3)`` RGB.
    palette:
        ``(256, 3)`` uint8 when ``pixels`` holds indices (views render single-channel grids
        this way): sent as an indexed PNG, one byte per pixel.
    fmt:
        ``"png"`` (lossless, default) or ``"jpeg"`` (lossy, for live frames of photo-like
        pictures such as feature visualizations).
    compress_level:
        zlib level of the PNG.
    quality:
        JPEG quality.

    Returns
    -------
    tuple[str, bytes]
        The format (one of :data:`WIRE_FORMATS`; the browser's MIME type is ``image/<format>``)
        and the encoded bytes, which the browser decodes on its own.
    """
    if fmt == "png":
        # On the wire the gaps between tiles are transparent, so the notebook's own background
        # (dark in a dark theme) shows through instead of white bars; saved files keep them.
        transparent = GAP_INDEX if palette is not None else None
        return "png", _png_unfiltered(
            pixels, palette, compress_level, WIRE_ZLIB_STRATEGY, transparent_index=transparent
        )
    if fmt == "jpeg":
        return "jpeg", encode_jpeg(pixels, quality, palette=palette)
    raise ValueError(f"fmt must be one of {WIRE_FORMATS}; got {fmt!r}")


def _png_unfiltered(
    image: np.ndarray,
    palette: np.ndarray | None,
    level: int,
    strategy: int = zlib.Z_DEFAULT_STRATEGY,
    transparent_index: int | None = None,
) -> bytes:
    """A minimal PNG writer: row filter 0 ("none") and one zlib stream.

    Skipping the per-row filter search is what makes this several times faster than Pillow
    for our pictures (see the module docstring).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        color_type = 0 if palette is None else 3
        channels = 1
    elif image.ndim == 3 and image.shape[2] in (3, 4) and palette is None:
        channels = image.shape[2]
        color_type = 2 if channels == 3 else 6
    else:
        raise ValueError(f"expected (H, W) or (H, W, 3|4) pixels, got shape {image.shape}")
    height, width = image.shape[:2]
    # Each scanline starts with its filter-type byte (0), so copy rows behind a zero column.
    rows = np.empty((height, width * channels + 1), np.uint8)
    rows[:, 0] = 0
    rows[:, 1:] = image.reshape(height, -1)
    chunks = [_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0))]
    if palette is not None:
        table = np.asarray(palette, np.uint8)
        if table.shape[1:] != (3,) or not 1 <= len(table) <= 256:
            raise ValueError(f"palette must be (<=256, 3) uint8, got shape {table.shape}")
        chunks.append(_chunk(b"PLTE", table.tobytes()))
        if transparent_index is not None and transparent_index < len(table):
            alpha = np.full(transparent_index + 1, 255, np.uint8)
            alpha[transparent_index] = 0
            chunks.append(_chunk(b"tRNS", alpha.tobytes()))
    compressor = zlib.compressobj(level, zlib.DEFLATED, 15, 9, strategy)
    chunks.append(_chunk(b"IDAT", compressor.compress(rows) + compressor.flush()))
    chunks.append(_chunk(b"IEND", b""))
    return _PNG_SIGNATURE + b"".join(chunks)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(kind))
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _to_pil(image: np.ndarray, palette: np.ndarray | None) -> Image.Image:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {image.dtype}")
    if palette is not None:
        if image.ndim != 2:
            raise ValueError(f"palette indices must be (H, W), got shape {image.shape}")
        height, width = image.shape
        indexed = Image.frombytes("P", (width, height), np.ascontiguousarray(image).tobytes())
        indexed.putpalette(np.asarray(palette, np.uint8).tobytes())
        return indexed
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4)):
        return Image.fromarray(np.ascontiguousarray(image))
    raise ValueError(f"expected (H, W) or (H, W, 3|4) pixels, got shape {image.shape}")
