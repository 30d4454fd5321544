"""Simulated patient: a scripted posture day turned into IMU samples, served as an ImuSource.

| module | holds |
|---|---|
| ``script`` | ``PostureScript``: segments, taps, the truth they imply; ``day()``, the scripted day and its phases |
| ``imu`` | ``ImuSynthesizer``, ``simulate``: IMU synthesis, ``Mounting`` misalignment, ``ImuErrors`` (bias, noise) |
| ``patient`` | ``SimulatedPatient``: the script's samples as an ``ImuSource`` (paced, or as fast as possible) |
| ``calibration`` | ``calibration_script``: a patient following (or failing) ``spinewatch calibrate``'s guidance |
| ``quaternion`` | ``[w, x, y, z]`` quaternion helpers and ``q_from_angles`` (the script's angle convention) |

Conventions (the same as the rest of SpineWatch):

- Body frame: x forward, y left, z up (cranial). Earth frame: z up; x is the direction
  the patient faces at heading 0, y to their left.
- Orientation ``q_body_to_earth`` (stored ``[w, x, y, z]``) is built from the script's
  angles as ``Rz(heading) @ Ry(flexion) @ Rx(lateral)`` (intrinsic z-y'-x'', SciPy
  ``Rotation.from_euler("ZYX", [heading, flexion, lateral])``):

  - flexion: rotation about body +y (left); positive tilts the trunk forward.
  - lateral: rotation about body +x (forward); positive bends the trunk to the right.
  - heading: rotation about earth +z (counter-clockwise seen from above), unwrapped.

  At rest the accelerometer (body frame) therefore reads
  ``g * (-sin(flexion), sin(lateral) * cos(flexion), cos(lateral) * cos(flexion))``.
- Sensor frame = body frame rotated by the fixed mounting misalignment:
  ``q_sensor_to_earth = q_body_to_earth * q_sensor_to_body`` (:class:`Mounting`).
- Accelerometer: specific force in the sensor frame, m/s^2,
  ``R_earth_to_sensor @ ((0, 0, 9.80665) + a_linear_earth)`` (+9.81 on "up" at rest).
- Gyroscope: angular rate in the sensor frame, rad/s. Sample k holds the mean rate over
  ``(t[k-1], t[k]]``: ``q[k] = q[k-1] * exp(gyr_true[k] * dt)`` holds exactly, so a filter
  that integrates each sample's rate from the previous sample reproduces the trajectory.
- Sample k is taken at ``t_s = k * dt_ns / 1e9`` with ``dt_ns = round(1e9 / rate_hz)``.

Everything random (script, noise, bias) is seeded; a sample's value depends only on the
script, the seed and its index, never on how the samples are chunked.

Not modelled: the sensor's linear acceleration caused by the trunk rotating about the hips
(a few 0.1 m/s^2 during posture ramps), magnetometer, temperature effects, packet loss.
"""

from __future__ import annotations

from spinewatch.firmware_bridge.sim.imu import ImuErrors, ImuSynthesizer, Mounting, SimulatedRecording, simulate
from spinewatch.firmware_bridge.sim.patient import SimulatedPatient
from spinewatch.firmware_bridge.sim.quaternion import q_from_angles
from spinewatch.firmware_bridge.sim.script import SEGMENT_KINDS, PostureScript, Segment, Tap

__all__ = [
    "SEGMENT_KINDS",
    "ImuErrors",
    "ImuSynthesizer",
    "Mounting",
    "PostureScript",
    "Segment",
    "SimulatedPatient",
    "SimulatedRecording",
    "Tap",
    "q_from_angles",
    "simulate",
]
