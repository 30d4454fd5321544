"""Nordic Thingy:52 profile: the Thingy Motion Service's raw data characteristic.

Sources (checked 2026-11):

- Nordic Thingy:52 firmware documentation v2.2.0, "Firmware architecture", BLE services,
  Motion service (https://nordicsemiconductor.github.io/Nordic-Thingy52-FW/documentation/
  firmware_architecture.html): base UUID ``EF68xxxx-9B35-4933-9B10-52FFA9740042``,
  motion service ``0400``, configuration ``0401``, raw data characteristic ``0406``
  (notify); notifications are enabled by writing the CCCD.
- Nordic Thingy:52 firmware ``ble_tms.h``: ``ble_tms_raw_t`` is three packed
  ``{int16 x, y, z}`` structs, accelerometer, gyroscope, compass (18 bytes).
- Nordic Thingy:52 firmware ``drv_motion.h`` / ``m_motion.c``: the driver's 16Q16 values
  are compressed for BLE to ``RAW_Q_FORMAT_ACC_COMMA_BITS 10`` (Q6.10, g),
  ``RAW_Q_FORMAT_GYR_COMMA_BITS 5`` (Q11.5, deg/s) and ``RAW_Q_FORMAT_CMP_COMMA_BITS 4``
  (Q12.4, uT), saturating at the int16 limits. Nordic's Android app divides the
  accelerometer by ``1 << 10`` (devzone thread 65198), which agrees.

Not confirmed from a first-party document: that the accelerometer unit is g (the
driver's 16Q16 input is in g per the MPU-9250 DMP conventions; a devzone answer calls
the values "Q number format" without a unit) and the gyro unit deg/s; the compass is
ignored. Motion processing frequency is 5..200 Hz (``BLE_TMS_CONFIG_MPUF_MIN/MAX``),
one sample per notification, no sequence number, no timestamp. The Thingy has a
speaker but no vibration motor: no haptic feedback.

Default mount: flat on the back, face (+Z) pointing backwards, +Y up the spine
(``-Z-X+Y``).
"""

from __future__ import annotations

import math
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

__all__ = ["PROFILE", "RAW_CHAR_UUID", "SERVICE_UUID", "build_packet", "decode_packet"]

SERVICE_UUID: Final = "ef680400-9b35-4933-9b10-52ffa9740042"
CONFIG_CHAR_UUID: Final = "ef680401-9b35-4933-9b10-52ffa9740042"
RAW_CHAR_UUID: Final = "ef680406-9b35-4933-9b10-52ffa9740042"
PACKET_BYTES: Final = 18
ACC_FRACTION_BITS: Final = 10  # Q6.10, g
GYR_FRACTION_BITS: Final = 5  # Q11.5, deg/s
CMP_FRACTION_BITS: Final = 4  # Q12.4, uT (ignored)
_ACC_SCALE: Final = GRAVITY_M_S2 / (1 << ACC_FRACTION_BITS)
_GYR_SCALE: Final = math.radians(1.0) / (1 << GYR_FRACTION_BITS)


@lru_cache(maxsize=64)
def _tables(mount: MountAlignment) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    return _scaled_columns(mount, _ACC_SCALE, _GYR_SCALE)


def decode_packet(data: bytes | bytearray, mount: MountAlignment = DEFAULT_BACK_MOUNT) -> DecodedPacket:
    """Decode one 18-byte raw data notification into one body-frame sample.

    Raises:
        DecodeError: ``too_short`` or ``too_long`` (every 18-byte value is valid).
    """
    n = len(data)
    if n != PACKET_BYTES:
        raise DecodeError("too_short" if n < PACKET_BYTES else "too_long",
                          f"{n} bytes, the raw data characteristic is {PACKET_BYTES}")
    cols, mult = _tables(mount)
    raw = np.frombuffer(data, dtype="<i2", count=6).reshape(1, 6)
    out = raw[:, cols] * mult
    return DecodedPacket(None, None, out[:, :3], out[:, 3:])


def build_packet(
    acc_m_s2: npt.ArrayLike,
    gyr_rad_s: npt.ArrayLike,
    *,
    mount: MountAlignment = DEFAULT_BACK_MOUNT,
    compass_ut: tuple[float, float, float] = (0.0, 0.0, 0.0),
    **_ignored: object,
) -> bytes:
    """One raw data value from one body-frame sample; saturates like the firmware."""
    acc = np.asarray(acc_m_s2, dtype=np.float64).reshape(-1, 3)
    gyr = np.asarray(gyr_rad_s, dtype=np.float64).reshape(-1, 3)
    if acc.shape != (1, 3) or gyr.shape != (1, 3):
        raise ValueError(f"a Thingy:52 raw value carries one sample, got {acc.shape}, {gyr.shape}")
    raw = np.empty(9, dtype="<i2")
    raw[0:3] = np.clip(np.rint(remap_to_sensor(acc, mount)[0] / _ACC_SCALE), -32768, 32767)
    raw[3:6] = np.clip(np.rint(remap_to_sensor(gyr, mount)[0] / _GYR_SCALE), -32768, 32767)
    raw[6:9] = np.clip(np.rint(np.asarray(compass_ut) * (1 << CMP_FRACTION_BITS)), -32768, 32767)
    return raw.tobytes()


PROFILE: Final = SensorProfile(
    name="thingy52",
    service_uuid=SERVICE_UUID,
    imu_char_uuid=RAW_CHAR_UUID,
    haptic_char_uuid=None,
    config_char_uuid=CONFIG_CHAR_UUID,
    has_battery_service=True,
    seq_modulo=0,
    clock_modulo_us=0,
    default_rate_hz=100.0,
    default_mount=DEFAULT_BACK_MOUNT,
    max_samples_per_packet=1,
    decode=decode_packet,
    build=build_packet,
    decode_many=_fixed_frame_decoder(PACKET_BYTES, 0, b"", _tables, decode_packet),
    name_prefixes=("Thingy",),
)
