"""Process-wide allocator tuning for batch rating runs (opt-in; the library never calls it).

glibc hands every allocation above ``M_MMAP_THRESHOLD`` (128 KiB, raised dynamically up to
32 MiB) to ``mmap`` and gives it back to the kernel on ``free``; the next array of that size
page-faults all over again.  Rating 10M calls allocates and frees hundreds of such arrays, and
on virtual machines a page fault is expensive: on the benchmark machine (a Firecracker VM) the
first touch of fresh memory costs ~0.4 s per GB, which was a third of a whole rating run.
Keeping freed memory inside the process (the usual jemalloc/tcmalloc behaviour) removes it.

Only ``trunkline rate`` (``rating.batch.main``) and the benchmark call :func:`retain_freed_memory`;
a long-running host process decides for itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def retain_freed_memory() -> bool:
    """Ask glibc to serve big blocks from its heap and not to return freed memory to the kernel.

    Returns False (and changes nothing) where this is not glibc on Linux.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # 1 GiB: the largest value glibc accepts is HEAP_MAX/2 on 64-bit; above it mallopt fails.
    ok_mmap = mallopt(_M_MMAP_THRESHOLD, 1 << 30) == 1
    ok_trim = mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    return ok_mmap and ok_trim
