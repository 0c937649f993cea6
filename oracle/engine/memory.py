"""Allocator tuning for the big-array work (KPI passes over millions of events, Monte Carlo
forecasts). numpy takes every large array from glibc's malloc, which serves allocations above
its mmap threshold with a fresh mmap and returns them to the kernel on free; the next array
then faults in new pages, and the kernel zeroes each one. On the 2-core VMs we measure on,
that zeroing cost more system time than the arithmetic's user time (forecast of 2,500 sites:
user 8.9 s, sys 12.4 s). Keeping freed memory in one malloc arena for reuse removes most of it
(sys 4.5 s first run, 1.6 s after). The price is that a process keeps its peak heap.

`tune_allocator()` is called by the `slacomp` command line (and the benchmarks, which measure
what it runs); libraries importing `oracle` are left alone. `SLACOMP_MALLOC_TUNING=0` turns it off.
Not glibc (macOS, musl): a no-op."""
from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
MMAP_THRESHOLD = 1 << 30  # only single allocations of 1 GiB or more get their own mapping
TRIM_THRESHOLD = 2**31 - 1  # free memory at the heap top returned to the kernel beyond ~2 GiB (an int)

_done: bool | None = None


def tune_allocator() -> bool:
    """Make glibc malloc keep and reuse freed large blocks (one arena, high mmap and trim
    thresholds). Idempotent; True when the settings were applied."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("SLACOMP_MALLOC_TUNING", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(M_ARENA_MAX, 1) and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done


def peak_rss_mib() -> float:
    """This process's own peak resident memory (VmHWM). Not ru_maxrss: Linux carries that
    high-water mark over fork + exec, so a child would report its parent's size at fork time."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
