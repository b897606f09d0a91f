"""An opt-in tuning of glibc's ``malloc`` for long optimization loops on CPU.

Every feature-visualization step allocates the same large activation buffers and frees them
again. glibc's ``malloc`` serves a large request with a fresh ``mmap`` (and returns it to the
system on ``free``), and trims the top of its heap when much is free there, so on CPU the
same memory is mapped again and page-faulted in, page by page, on every step. Keeping it
mapped saves that work: measured on EfficientNet-Lite0's ``_blocks.6`` at 128 px, one
thread, see the README.

This module never runs by itself: the settings are process-wide (they apply to every
allocation of the process, also other libraries', and make it keep freed memory up to its
peak), so a library must not change them silently. Call :func:`tune_allocator` once, at the
start of a session that runs feature visualization for a while; the glibc environment
variables (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``) do
the same from outside the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import numbers

__all__ = ["MAX_MMAP_THRESHOLD", "tune_allocator"]

MAX_MMAP_THRESHOLD = 32 * 2**20
"""glibc's largest ``M_MMAP_THRESHOLD`` on 64-bit systems (``4 * 1024 * 1024 *
sizeof(long)``): requests above it are always served by ``mmap``."""

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3


def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (it has ``gnu_get_libc_version`` and
    ``mallopt``), else None (macOS, Windows, musl)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    return libc


def _check(name: str, value: object, upper: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int (bytes), got {type(value).__name__}")
    if value < 0 or (upper is not None and value > upper):
        limit = f"0..{upper}" if upper is not None else ">= 0"
        raise ValueError(f"{name} must be {limit} bytes, got {value}")
    return int(value)


def tune_allocator(
    mmap_threshold: int = MAX_MMAP_THRESHOLD,
    trim_threshold: int = 2**30,
    top_pad: int = 64 * 2**20,
) -> bool:
    """Make glibc's ``malloc`` keep large freed buffers for reuse (process-wide, opt-in).

    Sets ``mallopt(M_MMAP_THRESHOLD)`` (requests up to this size come from the heap, not
    from a fresh ``mmap``), ``M_TRIM_THRESHOLD`` (the heap's free top is returned to the
    system only above this size) and ``M_TOP_PAD`` (extra bytes taken on each heap growth).
    This changes the allocator of the whole process for the rest of its life: every
    library's allocations, and a resident size that stays at its peak. It cannot be undone
    (glibc's dynamic thresholds stay off once set).

    Parameters
    ----------
    mmap_threshold:
        Bytes, at most :data:`MAX_MMAP_THRESHOLD` (32 MiB, glibc's limit on 64-bit).
    trim_threshold, top_pad:
        Bytes, >= 0.

    Returns
    -------
    bool
        True when the settings were applied; False where the C library is not glibc
        (nothing changed).

    Raises
    ------
    TypeError, ValueError
        For a value that is not an int of bytes in range.
    """
    settings = (
        (_M_MMAP_THRESHOLD, _check("mmap_threshold", mmap_threshold, MAX_MMAP_THRESHOLD)),
        (_M_TRIM_THRESHOLD, _check("trim_threshold", trim_threshold, 2**31 - 1)),
        (_M_TOP_PAD, _check("top_pad", top_pad, 2**31 - 1)),
    )
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return all(libc.mallopt(option, value) == 1 for option, value in settings)
