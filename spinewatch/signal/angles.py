"""Trunk angles from orientation: gravity direction, neutral alignment, flexion and lateral bend.

Conventions (see docs/signal.md): body frame x forward (anterior), y left, z up (cranial).
Flexion is the forward tilt of the trunk in the sagittal plane (forward positive); lateral
bend is the tilt in the frontal plane (bend to the right positive). Both are relative to the
calibrated neutral posture, in degrees at the edges and radians inside kernels.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import numpy.typing as npt

from spinewatch.signal._jit import FASTMATH_FLAGS

Float1D = npt.NDArray[np.float64]
Float2D = npt.NDArray[np.float64]


def up_in_sensor(q_sensor_to_earth_wxyz: npt.ArrayLike) -> Float2D:
    """Earth's up direction expressed in the sensor frame.

    Args:
        q_sensor_to_earth_wxyz: (N, 4) unit quaternions ``[w, x, y, z]``.

    Returns:
        (N, 3) unit vectors, sensor frame (what a still accelerometer measures, normalised).
    """
    q = np.ascontiguousarray(q_sensor_to_earth_wxyz, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != 4:
        raise ValueError(f"q_sensor_to_earth_wxyz must have shape (N, 4), got {q.shape}")
    out = np.empty((q.shape[0], 3))
    _up_in_sensor(q, out)
    return out


@nb.njit(cache=True, fastmath=FASTMATH_FLAGS)
def _up_in_sensor(q, out):  # pragma: no cover - jitted
    for i in range(q.shape[0]):
        w, x, y, z = q[i, 0], q[i, 1], q[i, 2], q[i, 3]
        out[i, 0] = 2.0 * (x * z - w * y)
        out[i, 1] = 2.0 * (y * z + w * x)
        out[i, 2] = w * w - x * x - y * y + z * z


def neutral_alignment(neutral_up_sensor: npt.ArrayLike) -> Float2D:
    """Rotation matrix taking sensor-frame vectors to the calibrated body frame.

    The neutral posture's up direction (sensor frame) is mapped onto body +z by the
    shortest rotation; the heading about the vertical is kept (a tilt-only alignment).

    Args:
        neutral_up_sensor: (3,) up direction during neutral posture, sensor frame, any norm > 0.

    Returns:
        (3, 3) rotation matrix ``R_sensor_to_body``.
    """
    u = np.asarray(neutral_up_sensor, dtype=np.float64)
    if u.shape != (3,):
        raise ValueError(f"neutral_up_sensor must have shape (3,), got {u.shape}")
    n = float(np.linalg.norm(u))
    if not np.isfinite(n) or n < 1e-9:
        raise ValueError(f"neutral_up_sensor must be a finite non-zero vector, got {u}")
    u = u / n
    z = np.array([0.0, 0.0, 1.0])
    v = np.cross(u, z)
    c = float(np.dot(u, z))
    if c < -1.0 + 1e-12:  # upside down: rotate 180 deg about x
        return np.diag([1.0, -1.0, -1.0])
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def mount_yaw_deg(neutral_up_sensor: npt.ArrayLike, forward_bend_up_sensor: npt.ArrayLike) -> float:
    """Yaw of the sensor about the spine, from a neutral posture and a straight forward bend.

    A sensor stuck on turned about the body's long axis mixes flexion into lateral bend.
    Gravity alone cannot tell the turn, and natural data cannot either (a patient who slouches
    leaning to one side looks like a turned sensor), so it is measured once, guided: sit
    upright, then bend straight forward. After the neutral (tilt) alignment, the bend moves
    the up direction towards body -x; the angle by which it moved elsewhere is the yaw.

    Args:
        neutral_up_sensor: (3,) up direction while upright, sensor frame.
        forward_bend_up_sensor: (M, 3) or (3,) up directions during the forward bend, sensor
            frame; at least 15 degrees away from neutral on average.

    Returns:
        Yaw in degrees, (-180, 180]; pass it as ``PostureParams.mount_yaw_deg``.

    Raises:
        ValueError: the bend is too small to tell a direction.
    """
    r = neutral_alignment(neutral_up_sensor)
    bend = np.atleast_2d(np.asarray(forward_bend_up_sensor, dtype=np.float64))
    if bend.ndim != 2 or bend.shape[1] != 3:
        raise ValueError(f"forward_bend_up_sensor must have shape (M, 3), got {bend.shape}")
    u = bend / np.linalg.norm(bend, axis=1, keepdims=True)
    h = (u @ r.T)[:, :2].mean(axis=0)  # mean horizontal displacement in the tilt-aligned frame
    if np.hypot(h[0], h[1]) < np.sin(np.radians(15.0)):
        raise ValueError("the forward bend is smaller than 15 degrees: bend further to calibrate yaw")
    # a sensor turned by yaw (R_sensor_to_body = Rz(yaw) ...) sees body -x, the bend
    # direction, at (-cos yaw, +sin yaw) in its tilt-aligned frame
    return float(np.degrees(np.arctan2(h[1], -h[0])))


def yaw_rotation(yaw_deg: float) -> Float2D:
    """Rotation about z by ``yaw_deg``: maps the tilt-aligned sensor frame of a sensor turned
    by ``yaw_deg`` about the spine onto the body frame."""
    a = np.radians(yaw_deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def trunk_angles_deg(up_body: npt.ArrayLike) -> tuple[Float1D, Float1D]:
    """Flexion and lateral bend from the up direction in the calibrated body frame.

    Args:
        up_body: (N, 3) earth-up unit vectors in the body frame.

    Returns:
        ``(flexion_deg, lateral_deg)``, each (N,): flexion = atan2(-up_x, up_z), forward
        positive; lateral = asin(up_y), right bend positive.
    """
    u = np.asarray(up_body, dtype=np.float64)
    if u.ndim != 2 or u.shape[1] != 3:
        raise ValueError(f"up_body must have shape (N, 3), got {u.shape}")
    flex = np.degrees(np.arctan2(-u[:, 0], u[:, 2]))
    lat = np.degrees(np.arcsin(np.clip(u[:, 1], -1.0, 1.0)))
    return flex, lat


def tilt_deg(up_sensor: npt.ArrayLike, neutral_up_sensor: npt.ArrayLike) -> Float1D:
    """Angle between each up direction and the neutral one, degrees (both sensor frame)."""
    u = np.asarray(up_sensor, dtype=np.float64)
    n = np.asarray(neutral_up_sensor, dtype=np.float64)
    n = n / np.linalg.norm(n)
    un = u / np.linalg.norm(u, axis=1, keepdims=True)
    return np.degrees(np.arccos(np.clip(un @ n, -1.0, 1.0)))
