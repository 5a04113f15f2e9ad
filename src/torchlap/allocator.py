"""The ``torchlap`` command keeps freed memory in its process for reuse (glibc's malloc).

By default glibc's malloc serves every block above a threshold (at most 32 MiB) with a fresh
``mmap`` and hands it back to the system on ``free``; the next block of that size is then
page-faulted in and zeroed again by the kernel. A CNN forward on a batch allocates and frees
such blocks for every activation, and the masked forwards of Score-CAM, RISE and SISE do it
hundreds of times per image: measured on a LAP-ResNet18, 64 channels-last images at 224 px per
forward, 2 threads, 20.8-23.0 ms per image by default against 15.0-15.4 ms with freed memory
kept (three alternating pairs of processes; system time 4.6-4.9 s against under 0.1 s).
PyTorch has no caching allocator on the CPU, and its performance guide recommends jemalloc or
tcmalloc for the same reason; :func:`keep_freed_memory` gets the effect from glibc itself.

The price is that the process keeps its peak heap until it exits, which suits a command run for
one job. The library never calls it on import: the ``torchlap`` command does, and a Python user
who wants it calls it once (or starts Python with ``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=
2147483647:glibc.malloc.trim_threshold=2147483647``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys

__all__ = ["KEEP_FREED_MEMORY_ENV", "keep_freed_memory"]

logger = logging.getLogger(__name__)

#: set to ``0`` to leave malloc as it is in the ``torchlap`` command
KEEP_FREED_MEMORY_ENV = "TORCHLAP_KEEP_FREED_MEMORY"
# mallopt's parameters (malloc.h) and the largest value it takes (an int)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_LARGEST = 2**31 - 1


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks in the process (no ``mmap`` per large block, no
    trimming of the heap). Returns whether it did: ``False`` off Linux/glibc, when ``mallopt``
    refuses, or when ``TORCHLAP_KEEP_FREED_MEMORY=0``. Process-wide and not undone."""
    if os.environ.get(KEEP_FREED_MEMORY_ENV, "").strip() == "0":
        logger.debug("malloc left as it is (%s=0)", KEEP_FREED_MEMORY_ENV)
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # the mmap threshold first: a trim threshold alone turns off glibc's adaptive mmap
    # threshold, and then every large block is mmapped (measured: slower than the default)
    kept = mallopt(_M_MMAP_THRESHOLD, _LARGEST) == 1 and mallopt(_M_TRIM_THRESHOLD, _LARGEST) == 1
    logger.debug("malloc keeps freed memory: %s", kept)
    return kept
