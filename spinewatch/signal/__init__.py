"""Pure numeric posture code: orientation, angles, activity, slouch detection. No I/O."""

from __future__ import annotations

from spinewatch.signal.orientation import (
    OrientationFilter,
    OrientationFilterBank,
    OrientationParams,
    estimate_orientation,
)

__all__ = ["OrientationFilter", "OrientationFilterBank", "OrientationParams", "estimate_orientation"]
