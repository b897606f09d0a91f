"""glibc's ``malloc`` and feature visualization: the opt-in tuning
(``cnn_widgets.featureviz.tune_allocator``: process-wide settings, so its effect is checked in
a child process and nothing in this test process calls it) and the settled thresholds every
CPU run of torch feature viz starts from (``settle_thresholds``: no setting, glibc's own
adaptation; its effect is checked in a fresh child process too, where the thresholds start
low)."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import textwrap

import pytest

from cnn_widgets.featureviz import allocator, tune_allocator

# In a fresh process, glibc serves a 16 MiB malloc with its own mmap (the dynamic threshold
# starts at 128 KiB); once tuned, from the heap. mallinfo2().hblkhd counts the mmapped bytes.
CHILD = textwrap.dedent(
    """
    import ctypes, ctypes.util, sys

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    if sys.argv[1] == "tuned":
        from cnn_widgets.featureviz.allocator import tune_allocator
        assert tune_allocator() is True
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(16 * 2**20)
    mapped = libc.mallinfo2().hblkhd - before
    libc.free(ctypes.c_void_p(block))
    print(mapped)
    """
)


def mapped_bytes(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(allocator._glibc() is None, reason="the C library is not glibc")
def test_a_tuned_process_serves_large_blocks_from_the_heap_instead_of_fresh_mmaps() -> None:
    if not hasattr(allocator._glibc(), "mallinfo2"):
        pytest.skip("glibc before 2.33 has no mallinfo2 to read the mapped bytes")
    assert mapped_bytes("plain") >= 16 * 2**20
    assert mapped_bytes("tuned") == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"mmap_threshold": 64 * 2**20}, ValueError, "0..33554432"),
        ({"trim_threshold": -1}, ValueError, "trim_threshold"),
        ({"top_pad": 1.5}, TypeError, "got float"),
        ({"mmap_threshold": True}, TypeError, "got bool"),
    ],
)
def test_bad_settings_are_refused_before_anything_changes(
    kwargs: dict[str, object], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        tune_allocator(**kwargs)  # type: ignore[arg-type]


# glibc's own adaptation, reproduced: each "step" allocates eight 6 MiB buffers, writes them
# and frees them all. In a fresh process the threshold adapts to 6 MiB and the trim threshold
# to 12 MiB, so the 48 MiB freed at the top of the heap go back to the system and are
# page-faulted in again at the next step; once settled (32 / 64 MiB) they stay mapped.
STEPS = textwrap.dedent(
    """
    import ctypes, ctypes.util, resource, sys

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    if sys.argv[1] == "settled":
        from cnn_widgets.featureviz.allocator import settle_thresholds
        assert settle_thresholds() is True
    size = 6 * 2**20
    faults = []
    for step in range(6):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        blocks = [libc.malloc(size) for _ in range(8)]
        for block in blocks:
            ctypes.memset(block, 1, size)
        for block in blocks:
            libc.free(block)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(min(faults[2:]))
    """
)


def faults_per_step(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", STEPS, mode], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(allocator._glibc() is None, reason="the C library is not glibc")
def test_settled_thresholds_keep_a_steps_freed_buffers_mapped_instead_of_refaulting() -> None:
    # 48 MiB written per step is 12,288 pages of 4 KiB (fewer with larger pages): a plain
    # process faults on most of them at every step, a settled one on (nearly) none.
    pages = 48 * 2**20 // mmap.PAGESIZE
    assert faults_per_step("plain") > pages // 2
    assert faults_per_step("settled") < pages // 20


def test_feature_viz_on_cpu_settles_the_thresholds_and_never_tunes(monkeypatch) -> None:
    import torch

    from cnn_widgets.featureviz import feature_viz, torch_impl

    calls: list[str] = []
    monkeypatch.setattr(torch_impl, "settle_thresholds", lambda: calls.append("settle"))
    monkeypatch.setattr(allocator, "tune_allocator", lambda *a, **k: calls.append("tune"))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    feature_viz(model, 1, [0, 1], steps=2, size=16)
    assert calls == ["settle"]
