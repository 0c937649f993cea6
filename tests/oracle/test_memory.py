"""Allocator tuning (oracle.engine.memory): applied once per process, off with SLACOMP_MALLOC_TUNING=0,
and the peak-memory reading the benchmarks print is the process's own."""
from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import numpy as np
from oracle.engine.memory import peak_rss_mib, tune_allocator
first, second = tune_allocator(), tune_allocator()
before = peak_rss_mib()
a = np.ones(64 << 20, dtype=np.uint8)  # 64 MiB, touched
print(first, second, round(peak_rss_mib() - before))
"""


def _probe(**env: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return out.stdout.split()


def test_tuning_applies_once_and_can_be_turned_off() -> None:
    on = _probe()
    assert on[:2] == ["True", "True"]  # glibc here: applied, and the second call is a no-op
    assert _probe(SLACOMP_MALLOC_TUNING="0")[:2] == ["False", "False"]


def test_peak_is_the_processs_own_and_sees_a_touched_array() -> None:
    # 64 MiB touched after the first reading raises the peak by about that much
    assert 56 <= int(_probe()[2]) <= 80
