"""Pure numeric posture code: orientation, angles, activity, slouch detection, haptic and
alert-outcome decisions (``haptic_trigger``, ``alert_outcome``). No I/O.

The names below load their module on first use (PEP 562), so code that needs only the
pure-NumPy parts (daily figures, RTM periods) does not pay for importing Numba.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_SOURCES = {
    "activity": ("Activity", "ActivityClassifier"),
    "angles": ("neutral_alignment", "tilt_deg", "trunk_angles_deg", "up_in_sensor"),
    "orientation": ("OrientationFilter", "OrientationFilterBank", "OrientationParams", "estimate_orientation"),
    "slouch": ("SlouchDetector", "detect_slouch"),
    "summary": ("DaySummary", "ZoneLimits", "daily_summaries"),
    "tracker": ("PostureParams", "PostureTracker", "TrackerOutput"),
}
_MODULE_OF = {name: module for module, names in _SOURCES.items() for name in names}

__all__ = [
    "Activity",
    "ActivityClassifier",
    "DaySummary",
    "OrientationFilter",
    "OrientationFilterBank",
    "OrientationParams",
    "PostureParams",
    "PostureTracker",
    "SlouchDetector",
    "TrackerOutput",
    "ZoneLimits",
    "daily_summaries",
    "detect_slouch",
    "estimate_orientation",
    "neutral_alignment",
    "tilt_deg",
    "trunk_angles_deg",
    "up_in_sensor",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'spinewatch.signal' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"spinewatch.signal.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from spinewatch.signal.activity import Activity, ActivityClassifier
    from spinewatch.signal.angles import (
        neutral_alignment,
        tilt_deg,
        trunk_angles_deg,
        up_in_sensor,
    )
    from spinewatch.signal.orientation import (
        OrientationFilter,
        OrientationFilterBank,
        OrientationParams,
        estimate_orientation,
    )
    from spinewatch.signal.slouch import SlouchDetector, detect_slouch
    from spinewatch.signal.summary import DaySummary, ZoneLimits, daily_summaries
    from spinewatch.signal.tracker import PostureParams, PostureTracker, TrackerOutput
