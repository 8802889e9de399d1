"""Process memory-allocator settings for benchmark runs.

With its default settings, glibc's ``malloc`` hands large freed blocks back to the kernel
(``munmap``, or ``sbrk`` trimming the top of the heap once more than twice the current
mmap threshold is free). The next allocation of that size then page-faults on every 4 KiB
page it touches. A PyTorch op that allocates tens of MiB of temporaries per call pays that
on every call, or not, depending on what the process allocated before: measured here, the
Mamba-2 chunked SSD at L = 4096 took 9.5 ms a call with no page faults and 12-20 ms with
1,000-5,000 of them, in the same process.

:func:`keep_freed_memory` fixes both thresholds, so freed blocks up to 32 MiB stay in the
heap for reuse: the effect PyTorch's CPU performance guide gets from jemalloc or tcmalloc.
``seedbed-eval`` calls it before any benchmark runs (``--system-malloc`` opts out).
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's maximum on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> str:
    """Set glibc's mmap threshold to 32 MiB and its trim threshold to 1 GiB for this process.

    Both settings also turn off glibc's dynamic adjustment of the thresholds. They last for
    the life of the process: freed memory (up to 1 GiB at the top of the heap) is kept for
    reuse rather than returned to the kernel.

    Returns:
        A one-line description of the allocator the process now runs with, for reports:
        what was set, or why nothing was (not glibc, or ``mallopt`` refused).
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
        gnu_get_libc_version = ctypes.CDLL(name).gnu_get_libc_version
    except (OSError, AttributeError, TypeError):
        return "system malloc (not glibc: left as is)"
    gnu_get_libc_version.restype = ctypes.c_char_p
    version = gnu_get_libc_version().decode()
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mmap_set = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    trim_set = bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not (mmap_set or trim_set):
        return f"glibc {version} malloc (mallopt refused both thresholds: left as is)"
    kept = []
    if mmap_set:
        kept.append(f"mmap threshold {MMAP_THRESHOLD >> 20} MiB")
    if trim_set:
        kept.append(f"trim threshold {TRIM_THRESHOLD >> 30} GiB")
    return f"glibc {version} malloc, freed memory kept for reuse ({', '.join(kept)})"
