"""The C allocator's policy for training processes: keep freed memory for the next step.

A training step allocates and frees the same activation and gradient arrays every step.
glibc's malloc serves arrays above its mmap threshold (128 KB at first, then raised up to
32 MB as such blocks are freed) with fresh ``mmap`` pages, and gives the top of its heap
back to the kernel once more than the trim threshold is free; either way the next step
touches new pages, and a page fault costs ~1 us under this VM's hypervisor. LeNet-5's
step took ~850 page faults (its ReLU on a 1.2 MB conv output ran 0.5 ms instead of 0.1);
with the two settings below it takes none.

:func:`keep_freed_memory` sets glibc's ``M_MMAP_THRESHOLD`` (blocks under 32 MB come from
the heap) and ``M_TRIM_THRESHOLD`` (up to 1 GB of freed heap stays mapped), as the
``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` environment variables would. The
cost is resident memory: the process keeps its peak heap (up to that 1 GB more) instead
of returning it. ``import axonml`` calls it once; ``AXONML_MALLOC_TUNE=0`` opts out, and a
process whose environment already sets glibc's malloc options keeps them. It does
nothing off glibc (macOS, Windows, musl) and does not touch CuPy's device memory pool.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameters (glibc's malloc.h)
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory mapped (see the module doc); True when the settings were applied."""
    if os.environ.get("AXONML_MALLOC_TUNE", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    if any(v in os.environ for v in _USER_SETTINGS) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False  # the user chose the allocator's policy
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl's mallopt ignores these parameters
        mallopt = libc.mallopt
    except (AttributeError, OSError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # mallopt returns 1 on success; the mmap threshold first, since setting it fixes the trim threshold too
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
