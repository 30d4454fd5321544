"""What the simulator's modules share: the 3-vector alias and argument checks."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["Float3", "finite", "unit3"]

Float3 = tuple[float, float, float]


def finite(value: object, name: str) -> float:
    """``float(value)``, or ValueError naming the field if it is not a finite number."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return x


def unit3(v: Float3, name: str) -> npt.NDArray[np.float64]:
    a = np.asarray(v, dtype=np.float64)
    if a.shape != (3,) or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be 3 finite numbers, got {v!r}")
    n = float(np.linalg.norm(a))
    if n < 1e-9:
        raise ValueError(f"{name} must not be the zero vector")
    return a / n
