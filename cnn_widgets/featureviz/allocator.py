"""An opt-in tuning of glibc's ``malloc`` for long optimization loops on CPU.

Every feature-visualization step allocates the same large activation buffers and frees them
again. glibc's ``malloc`` serves a large request with a fresh ``mmap`` (and returns it to the
system on ``free``), and trims the top of its heap when much is free there, so on CPU the
same memory is mapped again and page-faulted in, page by page, on every step. Keeping it
mapped saves that work: measured on EfficientNet-Lite0's ``_blocks.6`` at 128 px, one
thread, see the README.

Two levels:

* :func:`settle_thresholds` (called by every CPU run of ``feature_viz`` on torch) sets no
  parameter. glibc adapts its thresholds by itself: when a block it had served by ``mmap``
  is freed and is larger than the current threshold (up to 32 MiB), the mmap threshold rises
  to that size and the trim threshold to twice that. A process that has ever freed an array
  of 32 MiB sits at that ceiling; a fresh one sits at the largest activation it has freed so
  far (6 MiB on the benchmark page), where it trims and re-faults each step's memory. The
  function allocates one block just under 32 MiB (never touched: no memory is used) and
  frees it, which moves glibc to the ceiling its own adaptation reaches in any process that
  has handled such an array. No parameter is set, so the adaptation stays on, and at most
  64 MiB of freed heap top is kept. Measured on EfficientNet-Lite0's ``_blocks.6`` at 128
  px, one thread: from ~9,000 minor page faults per step of 4 images to none, and chunks of
  9 images became the fastest (see :data:`.torch_impl.CPU_MEMORY_BUDGET`).
* :func:`tune_allocator` never runs by itself: its settings are process-wide (they apply to
  every allocation of the process, also other libraries', and make it keep freed memory up
  to its peak) and switch the adaptation off, so a library must not change them silently.
  Call it once, at the start of a session that runs feature visualization for a while; the
  glibc environment variables (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
  ``MALLOC_TOP_PAD_``) do the same from outside the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import mmap
import numbers

__all__ = ["MAX_MMAP_THRESHOLD", "settle_thresholds", "tune_allocator"]

MAX_MMAP_THRESHOLD = 32 * 2**20
"""glibc's largest ``M_MMAP_THRESHOLD`` on 64-bit systems (``4 * 1024 * 1024 *
sizeof(long)``): requests above it are always served by ``mmap``."""

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (it has ``gnu_get_libc_version`` and
    ``mallopt``), else None (macOS, Windows, musl). Looked up once (``find_library`` runs
    ``ldconfig``, a few ms)."""
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


_settled = False


def settle_thresholds() -> bool:
    """Let glibc's dynamic mmap threshold reach its ceiling (32 MiB) the way glibc itself
    moves it: by freeing one ``mmap``-served block just under that size, never touched. Sets
    no ``mallopt`` parameter (the adaptation stays on) and uses no memory. Once per process:
    the dynamic thresholds never go down.

    Returns
    -------
    bool
        True where the C library is glibc and the block was allocated and freed (now or by
        an earlier call); False elsewhere (nothing done).
    """
    global _settled
    if _settled:
        return True
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.free.restype = None
    # A mmapped chunk is the request plus one word, rounded up to whole pages, and glibc
    # adapts to a freed chunk only while its size *with the flag bits* is <= 32 MiB: one page
    # under it gives the highest threshold it will adapt to (32 MiB less a page).
    block = libc.malloc(MAX_MMAP_THRESHOLD - 2 * mmap.PAGESIZE)
    if not block:
        return False
    libc.free(block)
    _settled = True
    return True


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
