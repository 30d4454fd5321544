"""Quaternions of the simulator, ``[w, x, y, z]`` (Hamilton product), and the script's angle convention."""

from __future__ import annotations

import numpy as np

from spinewatch.model import Float1D, Float2D

__all__ = ["q_conj", "q_from_angles", "q_mul", "rotate", "rotvec"]


def q_from_angles(heading_rad: Float1D, flexion_rad: Float1D, lateral_rad: Float1D) -> Float2D:
    """``q_body_to_earth`` from the script's angles, ``Rz(heading) Ry(flexion) Rx(lateral)``.

    Args:
        heading_rad: (N,) rotation about earth +z, rad.
        flexion_rad: (N,) rotation about body +y (left), forward positive, rad.
        lateral_rad: (N,) rotation about body +x (forward), right bend positive, rad.

    Returns:
        (N, 4) ``q_body_to_earth`` as ``[w, x, y, z]``, unit norm.
    """
    ch, sh = np.cos(0.5 * heading_rad), np.sin(0.5 * heading_rad)
    cf, sf = np.cos(0.5 * flexion_rad), np.sin(0.5 * flexion_rad)
    cl, sl = np.cos(0.5 * lateral_rad), np.sin(0.5 * lateral_rad)
    q = np.empty((np.shape(heading_rad)[0], 4))
    q[:, 0] = ch * cf * cl + sh * sf * sl
    q[:, 1] = ch * cf * sl - sh * sf * cl
    q[:, 2] = ch * sf * cl + sh * cf * sl
    q[:, 3] = sh * cf * cl - ch * sf * sl
    return q


def q_mul(a: Float2D, b: Float2D) -> Float2D:
    """Hamilton product of (N, 4) or (4,) ``[w, x, y, z]`` quaternions, broadcast."""
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        axis=-1,
    )


def q_conj(q: Float2D) -> Float2D:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def rotate(q: Float2D, v: Float2D) -> Float2D:
    """Rotate (N, 3) vectors by (N, 4) quaternions: ``R(q) @ v`` (from q's source frame)."""
    w = q[:, :1]
    u = q[:, 1:]
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


def rotvec(q: Float2D) -> Float2D:
    """(N, 3) rotation vectors (axis * angle, rad) of (N, 4) quaternions, shortest arc."""
    sign = np.where(q[:, 0] < 0.0, -1.0, 1.0)
    w = q[:, 0] * sign
    v = q[:, 1:] * sign[:, None]
    s = np.sqrt(np.einsum("ij,ij->i", v, v))
    angle = 2.0 * np.arctan2(s, w)
    small = s < 1e-12
    scale = np.where(small, 2.0 / np.where(small, w, 1.0), angle / np.where(small, 1.0, s))
    return v * scale[:, None]

