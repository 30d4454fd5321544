"""Keeping the long-running bridge process small (Linux; elsewhere these do nothing).

Most of a bridge's resident memory is Numba's, not the bridge's (benchmarks/README.md, "BLE
bridge"): importing Numba maps LLVM (llvmlite's ~80 MB shared library) and loading the
cached posture kernels executes a large part of LLVM's code, whose pages then stay
resident although a running bridge never compiles again (the machine code of the kernels
lives in memory of its own). `spinewatch bridge run` therefore

1. keeps SciPy out of Numba's start-up (:func:`keep_scipy_out`, before Numba is
   imported, lifted once the kernels are loaded): Numba imports ``scipy.linalg`` when
   SciPy happens to be installed, for ``np.linalg`` inside kernels, which ours do not use;
   SciPy is not a dependency of SpineWatch (~16 MB);
2. loads every posture kernel up front (:func:`warm_up_kernels`, on a throwaway tracker),
   then releases LLVM's code pages (:func:`release_compiler_pages`): they are clean pages
   of a read-only file mapping, so ``madvise(MADV_DONTNEED)`` just unmaps them from the
   process and the kernel reloads any page from the file if it is ever executed again (a
   new kernel signature would compile as before, only first touching the disk cache);
   ~50 MB of RSS. It is what the kernel itself does with such pages under memory
   pressure; doing it up front makes RSS show what the bridge really holds;
3. moves everything allocated so far (mostly Numba's ~120,000 objects) out of the cyclic
   garbage collector's reach with ``gc.freeze()``: they live as long as the process, and
   each full collection would otherwise walk them all again (~30 ms each).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import sys
from typing import Final

_LOGGER = logging.getLogger(__name__)

_MADV_DONTNEED: Final = 4
COMPILER_LIBRARIES: Final = ("libllvmlite.so",)


def keep_scipy_out() -> bool:
    """Make ``import scipy`` fail in this process until :func:`prepare_bridge_process` has
    loaded the kernels (Numba decides once, when it first loads a kernel, whether to use
    SciPy's BLAS). Does nothing if SciPy is already imported.

    Returns:
        True if SciPy is now blocked.
    """
    if "scipy" in sys.modules:
        return sys.modules["scipy"] is None
    sys.modules["scipy"] = None  # type: ignore[assignment]  # the documented way to block an import
    return True


def _allow_scipy() -> None:
    if "scipy" in sys.modules and sys.modules["scipy"] is None:
        del sys.modules["scipy"]


def warm_up_kernels(rate_hz: float) -> None:
    """Load (or compile) every Numba kernel the posture tracker runs, on a throwaway tracker."""
    import numpy as np

    from spinewatch.signal import PostureParams, PostureTracker

    t = PostureTracker(rate_hz, PostureParams(calibration_s=1.0 / rate_hz))
    t.update(np.zeros((4, 3)), np.tile([0.0, 0.0, 9.81], (4, 1)))  # the calibration and tracking paths


def _clean_text_mappings(names: tuple[str, ...]) -> list[tuple[int, int]]:
    """Executable, never-written mappings of the named shared libraries: (start, end)."""
    out: list[tuple[int, int]] = []
    cur: tuple[int, int] | None = None
    dirty = 0
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(maxsplit=6)
            if "-" in head[0] and len(head) >= 5 and ":" in head[3]:  # a mapping's header line
                if cur is not None and dirty == 0:
                    out.append(cur)
                cur, dirty = None, 0
                if len(head) >= 6 and head[1] == "r-xp" and head[5].rstrip().endswith(names):
                    a, b = head[0].split("-")
                    cur = (int(a, 16), int(b, 16))
            elif cur is not None and head[0] in ("Private_Dirty:", "Anonymous:"):
                dirty += int(head[1])
    if cur is not None and dirty == 0:
        out.append(cur)
    return out


def prepare_bridge_process(rate_hz: float) -> None:
    """Steps 1 to 3, in order; call before the first tracker update (call
    :func:`keep_scipy_out` earlier, before anything imports Numba)."""
    if "numba" not in sys.modules:
        keep_scipy_out()
    try:
        warm_up_kernels(rate_hz)
    finally:
        _allow_scipy()  # Numba has made its choice; a later ``import scipy`` works as usual
    released = release_compiler_pages()
    gc.collect()
    gc.freeze()
    _LOGGER.debug("released %d MB of compiler code pages", released >> 20)


def release_compiler_pages(names: tuple[str, ...] = COMPILER_LIBRARIES) -> int:
    """Unmap the resident code pages of LLVM from this process (see the module docstring).

    Only executable mappings with no private or anonymous pages are touched, so nothing but
    a copy of the file is dropped. Does nothing (returns 0) where /proc or madvise is missing.

    Returns:
        Bytes of address space advised (not all of it was resident).
    """
    if not sys.platform.startswith("linux"):
        return 0
    try:
        ranges = _clean_text_mappings(names)
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError:
        return 0
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    done = 0
    for start, end in ranges:
        if madvise(start, end - start, _MADV_DONTNEED) == 0:
            done += end - start
        else:
            _LOGGER.debug("madvise failed: errno %d", ctypes.get_errno())
    return done
