"""Pure numeric posture code: orientation, angles, activity, slouch detection. No I/O."""

from __future__ import annotations

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

__all__ = [
    "Activity",
    "DaySummary",
    "ActivityClassifier",
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
