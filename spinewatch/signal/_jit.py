"""One place for Numba settings shared by every kernel."""

from __future__ import annotations

from typing import Final

# Kernels may reassociate sums and contract to FMA, but must keep NaN/inf semantics:
# bad samples are detected with np.isfinite inside kernels ("nnan"/"ninf" would break that).
FASTMATH_FLAGS: Final[set[str]] = {"nsz", "arcp", "contract", "afn", "reassoc"}  # numba wants a set
