"""WitMotion WT901BLE(CL) profile: 20-byte ``0x55 0x61`` frames of acceleration, rate and angle.

Sources (checked 2026-11):

- WT901BLECL datasheet v20-0707, section 6.1 "Data Format" / "Module to APP"
  (https://wiki.wit-motion.com/english; mirrored at
  http://38.142.81.21:8001/manual/witmotion/wt901ble/specification-sheet-english/page-12.html):
  the module uploads ``Flag = 0x61`` packets by default, "up to 20 bytes per data";
  header ``0x55``, flag byte, then 18 bytes: acceleration X Y Z, angular velocity X Y Z,
  angle X Y Z, each a signed 16-bit value, low byte first. ``Flag = 0x71`` packets carry
  register contents (magnetic field, etc.) only after a read command.
- Scales, from the WitMotion serial protocol that the BLE frame reuses (WT901 datasheet
  v20-0702 sections 5.1.2-5.1.4; WT61 protocol at wit-motion.gitbook.io):
  acceleration ``raw / 32768 * 16 g``, angular rate ``raw / 32768 * 2000 deg/s``,
  angle ``raw / 32768 * 180 deg``.

UUIDs: service ``0000ffe5-0000-1000-8000-00805f9a34fb``, notify characteristic
``0000ffe4-0000-1000-8000-00805f9a34fb`` (note the vendor's non-SIG base ``...9a34fb``;
as spelled in the public bleak/Web Bluetooth clients of WT901BLE units we found, which
also show 20-byte notifications starting ``85, 97`` = ``0x55 0x61``; ``ffe9`` is the
command characteristic). Not confirmed from a first-party document here: the full 128-bit
base (we use WitMotion's SDK spelling) and whether every firmware revision sends exactly
one frame per notification (the datasheet's "up to 20 bytes" says so; longer
notifications are refused as ``too_long`` rather than guessed at).

The frame carries no sequence number and no timestamp, so sample times come from
arrival times (:mod:`spinewatch.firmware_bridge.timing`) and lost frames can only be
estimated. The factory output rate is 10 Hz; set it to 100 Hz with WitMotion's app.
The angles are the module's own fusion output and are ignored (the bridge runs its own
filter). There is no vibration motor: no haptic feedback.

Default mount: flat on the back, face (+Z) pointing backwards, +Y up the spine
(:data:`~spinewatch.firmware_bridge.remap.DEFAULT_BACK_MOUNT`, ``-Z-X+Y``).
"""

from __future__ import annotations

import math
import struct
from functools import lru_cache
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from spinewatch.errors import DecodeError
from spinewatch.firmware_bridge.profiles import (
    DecodedPacket,
    SensorProfile,
    _fixed_frame_decoder,
    _scaled_columns,
)
from spinewatch.firmware_bridge.remap import (
    DEFAULT_BACK_MOUNT,
    MountAlignment,
    remap_to_sensor,
)
from spinewatch.model import GRAVITY_M_S2

__all__ = ["FRAME_BYTES", "IMU_CHAR_UUID", "PROFILE", "SERVICE_UUID", "build_packet", "decode_packet"]

SERVICE_UUID: Final = "0000ffe5-0000-1000-8000-00805f9a34fb"
IMU_CHAR_UUID: Final = "0000ffe4-0000-1000-8000-00805f9a34fb"
WRITE_CHAR_UUID: Final = "0000ffe9-0000-1000-8000-00805f9a34fb"  # register commands (unused)

HEADER: Final = 0x55
FLAG_IMU: Final = 0x61
FRAME_BYTES: Final = 20
ACC_FULL_SCALE_G: Final = 16.0
GYR_FULL_SCALE_DPS: Final = 2000.0
ANGLE_FULL_SCALE_DEG: Final = 180.0
_ACC_SCALE: Final = ACC_FULL_SCALE_G * GRAVITY_M_S2 / 32768.0  # m/s^2 per count
_GYR_SCALE: Final = math.radians(GYR_FULL_SCALE_DPS) / 32768.0  # rad/s per count
_ANGLES = struct.Struct("<3h")


@lru_cache(maxsize=64)
def _tables(mount: MountAlignment) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    return _scaled_columns(mount, _ACC_SCALE, _GYR_SCALE)


def decode_packet(data: bytes | bytearray, mount: MountAlignment = DEFAULT_BACK_MOUNT) -> DecodedPacket:
    """Decode one 20-byte ``0x55 0x61`` notification into one body-frame sample.

    Raises:
        DecodeError: ``too_short``, ``too_long``, ``bad_header`` (first byte not 0x55),
            ``unsupported_packet`` (a flag other than 0x61, e.g. a 0x71 register reply).
    """
    n = len(data)
    if n < FRAME_BYTES:
        raise DecodeError("too_short", f"{n} bytes, a frame is {FRAME_BYTES}")
    if n > FRAME_BYTES:
        raise DecodeError("too_long", f"{n} bytes, a frame is {FRAME_BYTES}")
    if data[0] != HEADER:
        raise DecodeError("bad_header", f"first byte 0x{data[0]:02x}, expected 0x55")
    if data[1] != FLAG_IMU:
        raise DecodeError("unsupported_packet", f"flag 0x{data[1]:02x}, expected 0x61")
    cols, mult = _tables(mount)
    raw = np.frombuffer(data, dtype="<i2", count=6, offset=2).reshape(1, 6)
    out = raw[:, cols] * mult
    return DecodedPacket(None, None, out[:, :3], out[:, 3:])


def decode_angles_deg(data: bytes | bytearray) -> tuple[float, float, float]:
    """The module's own (roll, pitch, yaw) of a valid frame, degrees (diagnostics only)."""
    decode_packet(data)
    r, p, y = _ANGLES.unpack_from(data, 14)
    k = ANGLE_FULL_SCALE_DEG / 32768.0
    return r * k, p * k, y * k


def build_packet(
    acc_m_s2: npt.ArrayLike,
    gyr_rad_s: npt.ArrayLike,
    *,
    mount: MountAlignment = DEFAULT_BACK_MOUNT,
    angles_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
    **_ignored: object,
) -> bytes:
    """One frame from one body-frame sample ((1, 3) or (3,) arrays); saturates at full scale.

    ``seq`` / ``t0_us`` keyword arguments are accepted and ignored (the frame has none).
    """
    acc = np.asarray(acc_m_s2, dtype=np.float64).reshape(-1, 3)
    gyr = np.asarray(gyr_rad_s, dtype=np.float64).reshape(-1, 3)
    if acc.shape != (1, 3) or gyr.shape != (1, 3):
        raise ValueError(f"a WitMotion frame carries one sample, got {acc.shape}, {gyr.shape}")
    raw = np.empty(9, dtype="<i2")
    raw[0:3] = np.clip(np.rint(remap_to_sensor(acc, mount)[0] / _ACC_SCALE), -32768, 32767)
    raw[3:6] = np.clip(np.rint(remap_to_sensor(gyr, mount)[0] / _GYR_SCALE), -32768, 32767)
    raw[6:9] = np.clip(np.rint(np.asarray(angles_deg) / (ANGLE_FULL_SCALE_DEG / 32768.0)), -32768, 32767)
    return bytes((HEADER, FLAG_IMU)) + raw.tobytes()


PROFILE: Final = SensorProfile(
    name="witmotion",
    service_uuid=SERVICE_UUID,
    imu_char_uuid=IMU_CHAR_UUID,
    haptic_char_uuid=None,
    config_char_uuid=None,
    has_battery_service=False,
    seq_modulo=0,
    clock_modulo_us=0,
    default_rate_hz=100.0,
    default_mount=DEFAULT_BACK_MOUNT,
    max_samples_per_packet=1,
    decode=decode_packet,
    build=build_packet,
    decode_many=_fixed_frame_decoder(FRAME_BYTES, 2, bytes((HEADER, FLAG_IMU)), _tables, decode_packet),
    name_prefixes=("WT901", "WT"),
)
