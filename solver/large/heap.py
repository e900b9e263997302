"""Give the memory a large solve has freed back to the system, between its phases.

Why: a continent's solve frees gigabytes between phases (the network's temporaries, then the whole
LP once the relaxation is done), but the C allocator keeps most of it: GLOP's and numpy's blocks
come from one heap, freed blocks lie between live ones, and glibc returns only the free top of the
heap on its own. The process then carries the relaxation's gigabyte into the rounding and the
bound, and its resident size, the figure the 4 GB target reads, never falls. `malloc_trim(0)`
returns every free page of every arena (glibc 2.8 and later), in milliseconds: at 50,000 orders ×
5,000 labs it took 60 ms after the relaxation and gave back 1.0 GB. Elsewhere (musl, macOS) it does
nothing: those allocators return memory on their own terms.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


def _trim_in(library: str | None) -> Callable[[int], int] | None:
    """`malloc_trim` of this C library, or None when it cannot be loaded or has none (not glibc)."""
    if library is None:
        return None
    try:
        trim = ctypes.CDLL(library).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim` (looked up by its usual name first: finding the C library by search
    runs a subprocess), or None."""
    return _trim_in("libc.so.6") or _trim_in(ctypes.util.find_library("c"))


def release_freed_memory() -> None:
    """Return the pages the C heap holds free to the system (glibc); a no-op where there is none."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
