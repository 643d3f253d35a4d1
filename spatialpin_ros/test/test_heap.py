"""core.heap: the malloc thresholds are set once per process and change no result."""

import platform

import numpy as np

from spatialpin_ros.core.heap import keep_freed_memory


def test_keep_freed_memory_is_idempotent():
    first = keep_freed_memory()
    assert isinstance(first, bool)
    assert keep_freed_memory() == first
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert first                        # glibc takes them
    a = np.arange(1 << 20, dtype=np.float64)    # 8 MB: served from the heap now
    assert float((a * 2).sum()) == float(a.sum()) * 2
