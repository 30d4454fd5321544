"""Sensor-to-body axis remapping: the 24 right-handed mounting alignments (Fusion's FusionRemap).

Body frame (see README): x forward, y left, z up along the spine. A sensor is strapped
to the back in one of 24 orientations whose axes are a signed permutation of the body
axes. :class:`MountAlignment` names the alignment the way Fusion's
``FusionRemapAlignment`` does: ``"+Y-X+Z"`` means body x = sensor +Y, body y = sensor -X,
body z = sensor +Z.

The BLE decoders apply the alignment once, so everything downstream of the decoder
(timing, signal kernels) sees body-frame data. Residual misalignment of a few degrees is
removed by the tracker's neutral calibration.
"""

from __future__ import annotations

import enum
from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_BACK_MOUNT", "MountAlignment", "remap_matrix", "remap_to_body", "remap_to_sensor"]


class MountAlignment(enum.Enum):
    """How the sensor axes map to body axes: value = body (x, y, z) in sensor axes."""

    PXPYPZ = "+X+Y+Z"
    PXNYNZ = "+X-Y-Z"
    NXPYNZ = "-X+Y-Z"
    NXNYPZ = "-X-Y+Z"
    PXPZNY = "+X+Z-Y"
    PXNZPY = "+X-Z+Y"
    NXPZPY = "-X+Z+Y"
    NXNZNY = "-X-Z-Y"
    PYPXNZ = "+Y+X-Z"
    PYNXPZ = "+Y-X+Z"
    NYPXPZ = "-Y+X+Z"
    NYNXNZ = "-Y-X-Z"
    PYPZPX = "+Y+Z+X"
    PYNZNX = "+Y-Z-X"
    NYPZNX = "-Y+Z-X"
    NYNZPX = "-Y-Z+X"
    PZPXPY = "+Z+X+Y"
    PZNXNY = "+Z-X-Y"
    NZPXNY = "-Z+X-Y"
    NZNXPY = "-Z-X+Y"
    PZPYNX = "+Z+Y-X"
    PZNYPX = "+Z-Y+X"
    NZPYPX = "-Z+Y+X"
    NZNYNX = "-Z-Y-X"

    @classmethod
    def parse(cls, text: str) -> MountAlignment:
        """The alignment named ``text`` (``"+Y-X+Z"`` or ``"PYNXPZ"``, case-insensitive).

        Raises:
            ValueError: not one of the 24 right-handed alignments.
        """
        t = text.strip().upper()
        for m in cls:
            if t in (m.value, m.name):
                return m
        raise ValueError(
            f"mount alignment must be one of {[m.value for m in cls]} (right-handed), got {text!r}"
        )


# A sensor lying flat on the back, its face (+Z) pointing away from the body (backwards)
# and its +Y pointing up the spine: body x (forward) = -Z, body y (left) = -X, body z = +Y.
# This is how the WitMotion and Thingy:52 profiles assume their sensor is worn.
DEFAULT_BACK_MOUNT: Final = MountAlignment.NZNXPY


@cache
def _index_sign(m: MountAlignment) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    v = m.value
    idx = tuple("XYZ".index(v[2 * i + 1]) for i in range(3))
    sign = tuple(1.0 if v[2 * i] == "+" else -1.0 for i in range(3))
    return idx, sign  # type: ignore[return-value]


def remap_matrix(m: MountAlignment) -> npt.NDArray[np.float64]:
    """(3, 3) rotation ``R_sensor_to_body``: ``v_body = R @ v_sensor``."""
    idx, sign = _index_sign(m)
    r = np.zeros((3, 3))
    for row in range(3):
        r[row, idx[row]] = sign[row]
    return r


def remap_to_body(v_sensor: npt.NDArray[np.float64], m: MountAlignment) -> npt.NDArray[np.float64]:
    """(N, 3) sensor-frame vectors (any unit) -> (N, 3) body-frame vectors, same unit."""
    idx, sign = _index_sign(m)
    return v_sensor[:, list(idx)] * np.asarray(sign)


def remap_to_sensor(v_body: npt.NDArray[np.float64], m: MountAlignment) -> npt.NDArray[np.float64]:
    """Inverse of :func:`remap_to_body`: (N, 3) body-frame -> (N, 3) sensor-frame vectors."""
    return np.asarray(v_body, dtype=np.float64) @ remap_matrix(m)
