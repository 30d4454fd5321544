"""The SpineWatch sensor profile (our own firmware): UUIDs, IMU packet codec, haptic and config.

The normative description for firmware authors is docs/gatt-profile.md; this module is
its reference implementation. Summary of the IMU notification (all little-endian)::

    offset size  field
    0      u16   seq        packet counter, +1 per notification, wraps 65535 -> 0
    2      u32   t0_us      device clock at the first sample, us, free-running, wraps
    6      u8    count      samples in this packet, 1..19
    7      u8    ranges     bits 0-2 accelerometer code, bits 4-6 gyroscope code,
                            bits 3 and 7 reserved (0)
    8      12*count         count x [ax ay az gx gy gz] int16, sensor frame

Accelerometer full scale by code: 0 = 2 g, 1 = 4 g, 2 = 8 g, 3 = 16 g; value in g is
``raw * full_scale_g / 32768``. Gyroscope full scale by code: 0 = 125, 1 = 250, 2 = 500,
3 = 1000, 4 = 2000 deg/s; value is ``raw * full_scale_dps / 32768``. Samples are
``1 / rate_hz`` apart (rate from the config characteristic).

The sensor frame of the SpineWatch board is defined to be the body frame when worn as
the guide says (x forward through the chest, y to the patient's left, z up the spine),
so the default mount is ``+X+Y+Z``.
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
    _scaled_columns,
)
from spinewatch.firmware_bridge.remap import MountAlignment, remap_to_sensor
from spinewatch.model import GRAVITY_M_S2

__all__ = [
    "ACC_RANGES_G",
    "CONFIG_CHAR_UUID",
    "GYR_RANGES_DPS",
    "HAPTIC_CHAR_UUID",
    "HAPTIC_PATTERNS",
    "HEADER_BYTES",
    "IMU_CHAR_UUID",
    "MAX_SAMPLES_PER_PACKET",
    "PROFILE",
    "SERVICE_UUID",
    "SensorConfig",
    "build_haptic",
    "build_packet",
    "count_samples",
    "decode_config",
    "decode_haptic",
    "decode_many",
    "decode_packet",
    "encode_config",
    "rate_from_config",
]

# 128-bit base 5e1f0000-8b3c-4d2a-9f6e-535741544348 (the last 6 bytes spell "SWATCH").
SERVICE_UUID: Final = "5e1f0001-8b3c-4d2a-9f6e-535741544348"
IMU_CHAR_UUID: Final = "5e1f0002-8b3c-4d2a-9f6e-535741544348"  # notify
HAPTIC_CHAR_UUID: Final = "5e1f0003-8b3c-4d2a-9f6e-535741544348"  # write
CONFIG_CHAR_UUID: Final = "5e1f0004-8b3c-4d2a-9f6e-535741544348"  # read, write

HEADER_BYTES: Final = 8
SAMPLE_BYTES: Final = 12
# ATT MTU 247 (BLE 4.2 data length extension, what BlueZ and nRF52 negotiate) leaves
# 244 bytes of notification payload: (244 - 8) // 12 = 19 samples.
MAX_SAMPLES_PER_PACKET: Final = 19
ACC_RANGES_G: Final = (2.0, 4.0, 8.0, 16.0)
GYR_RANGES_DPS: Final = (125.0, 250.0, 500.0, 1000.0, 2000.0)
HAPTIC_PATTERNS: Final = ("off", "short", "double", "long", "ramp")

_HEADER = struct.Struct("<HIBB")
_COUNT_OFFSET: Final = 6  # the header's u8 count
_HAPTIC = struct.Struct("<BBH")
_CONFIG = struct.Struct("<HBBBB")
_I16_MAX: Final = 32767
_I16_MIN: Final = -32768


@lru_cache(maxsize=512)
def _tables(mount: MountAlignment, ranges: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    acc_code, gyr_code = ranges & 0x07, (ranges >> 4) & 0x07
    acc_scale = ACC_RANGES_G[acc_code] * GRAVITY_M_S2 / 32768.0
    gyr_scale = math.radians(GYR_RANGES_DPS[gyr_code]) / 32768.0
    return _scaled_columns(mount, acc_scale, gyr_scale)


def decode_packet(data: bytes | bytearray, mount: MountAlignment = MountAlignment.PXPYPZ) -> DecodedPacket:
    """Decode one IMU notification.

    Args:
        data: the notification's bytes.
        mount: sensor-to-body alignment applied to both vectors.

    Returns:
        A :class:`DecodedPacket` with ``seq``, ``t0_us`` and (count, 3) body-frame arrays.

    Raises:
        DecodeError: reason ``too_short``, ``too_long``, ``bad_count`` or ``bad_range``.
    """
    n_bytes = len(data)
    if n_bytes < HEADER_BYTES:
        raise DecodeError("too_short", f"{n_bytes} bytes, the header alone is {HEADER_BYTES}")
    seq, t0_us, count, ranges = _HEADER.unpack_from(data)
    if count == 0 or count > MAX_SAMPLES_PER_PACKET:
        raise DecodeError("bad_count", f"count {count}, allowed 1..{MAX_SAMPLES_PER_PACKET}")
    need = HEADER_BYTES + SAMPLE_BYTES * count
    if n_bytes != need:
        raise DecodeError(
            "too_short" if n_bytes < need else "too_long",
            f"{n_bytes} bytes for {count} samples, expected {need}",
        )
    if ranges & 0x88 or (ranges & 0x07) >= len(ACC_RANGES_G) or (ranges >> 4) >= len(GYR_RANGES_DPS):
        raise DecodeError("bad_range", f"ranges byte 0x{ranges:02x}")
    cols, mult = _tables(mount, ranges)
    raw = np.frombuffer(data, dtype="<i2", count=6 * count, offset=HEADER_BYTES).reshape(count, 6)
    out = raw[:, cols] * mult
    return DecodedPacket(seq, t0_us, out[:, :3], out[:, 3:])


def count_samples(data: bytes | bytearray) -> int:
    """The sample count an IMU notification's header claims (0 if it is too short to hold one),
    unchecked: for counting the samples of a packet dropped without decoding."""
    return data[_COUNT_OFFSET] if len(data) > _COUNT_OFFSET else 0


_HEADER_DTYPE: Final = np.dtype([("seq", "<u2"), ("t0_us", "<u4"), ("count", "u1"), ("ranges", "u1")])
_RANGES_OK: Final = np.array(
    [not (r & 0x88) and (r & 0x07) < len(ACC_RANGES_G) and (r >> 4) < len(GYR_RANGES_DPS) for r in range(256)]
)
_MIN_VECTOR_PACKETS: Final = 4  # below this the per-packet path is as fast


def decode_many(
    packets: list[bytes], mount: MountAlignment = MountAlignment.PXPYPZ
) -> list[DecodedPacket | DecodeError]:
    """Decode many notifications at once (same result as :func:`decode_packet` on each).

    Packets of equal length are parsed with one NumPy operation per group; a packet that
    fails any check is decoded alone to get its exact :class:`DecodeError`, which is
    returned in its place (not raised).
    """
    out: list[DecodedPacket | DecodeError | None] = [None] * len(packets)
    groups: dict[int, list[int]] = {}
    for i, pk in enumerate(packets):
        groups.setdefault(len(pk), []).append(i)
    for length, idx in groups.items():
        n, rem = divmod(length - HEADER_BYTES, SAMPLE_BYTES)
        if len(idx) < _MIN_VECTOR_PACKETS or rem or not 1 <= n <= MAX_SAMPLES_PER_PACKET:
            for i in idx:
                try:
                    out[i] = decode_packet(packets[i], mount)
                except DecodeError as exc:
                    out[i] = exc
            continue
        buf = np.frombuffer(b"".join([packets[i] for i in idx]), np.uint8).reshape(len(idx), length)
        hdr = np.ascontiguousarray(buf[:, :HEADER_BYTES]).view(_HEADER_DTYPE).ravel()
        ok = (hdr["count"] == n) & _RANGES_OK[hdr["ranges"]]
        raw = np.ascontiguousarray(buf[:, HEADER_BYTES:]).view("<i2").reshape(len(idx), n, 6)
        seqs, t0s = hdr["seq"].tolist(), hdr["t0_us"].tolist()
        for r in np.unique(hdr["ranges"][ok]).tolist():
            sel = np.flatnonzero(ok & (hdr["ranges"] == r))
            cols, mult = _tables(mount, r)
            vals = raw[sel][:, :, cols] * mult
            for j, k in enumerate(sel.tolist()):
                out[idx[k]] = DecodedPacket(seqs[k], t0s[k], vals[j, :, :3], vals[j, :, 3:])
        for k in np.flatnonzero(~ok).tolist():
            try:
                out[idx[k]] = decode_packet(packets[idx[k]], mount)
            except DecodeError as exc:
                out[idx[k]] = exc
    return out  # type: ignore[return-value]


def _range_code(value: float, table: tuple[float, ...], name: str) -> int:
    try:
        return table.index(float(value))
    except ValueError:
        raise ValueError(f"{name} must be one of {table}, got {value!r}") from None


def _quantise(x: npt.NDArray[np.float64], scale: float) -> npt.NDArray[np.int16]:
    return np.clip(np.rint(x / scale), _I16_MIN, _I16_MAX).astype("<i2")


def build_packet(
    acc_m_s2: npt.ArrayLike,
    gyr_rad_s: npt.ArrayLike,
    *,
    seq: int = 0,
    t0_us: int = 0,
    mount: MountAlignment = MountAlignment.PXPYPZ,
    acc_range_g: float = 8.0,
    gyr_range_dps: float = 1000.0,
) -> bytes:
    """Encode body-frame samples as one IMU notification (what the firmware sends).

    Args:
        acc_m_s2: (N, 3) specific force, m/s^2, body frame; 1 <= N <= 19.
        gyr_rad_s: (N, 3) angular rate, rad/s, body frame.
        seq: packet counter (taken modulo 65536).
        t0_us: device clock at the first sample, us (taken modulo 2**32).
        mount: how the sensor is mounted; the samples are rotated into its frame.
        acc_range_g, gyr_range_dps: full scales; values beyond them saturate.

    Raises:
        ValueError: bad shapes, N out of range or an unknown full scale.
    """
    acc = np.asarray(acc_m_s2, dtype=np.float64)
    gyr = np.asarray(gyr_rad_s, dtype=np.float64)
    if acc.ndim != 2 or acc.shape[1] != 3 or gyr.shape != acc.shape:
        raise ValueError(f"acc_m_s2 and gyr_rad_s must both be (N, 3), got {acc.shape}, {gyr.shape}")
    n = acc.shape[0]
    if not 1 <= n <= MAX_SAMPLES_PER_PACKET:
        raise ValueError(f"a packet carries 1..{MAX_SAMPLES_PER_PACKET} samples, got {n}")
    ac = _range_code(acc_range_g, ACC_RANGES_G, "acc_range_g")
    gc = _range_code(gyr_range_dps, GYR_RANGES_DPS, "gyr_range_dps")
    raw = np.empty((n, 6), dtype="<i2")
    raw[:, :3] = _quantise(remap_to_sensor(acc, mount), acc_range_g * GRAVITY_M_S2 / 32768.0)
    raw[:, 3:] = _quantise(remap_to_sensor(gyr, mount), math.radians(gyr_range_dps) / 32768.0)
    head = _HEADER.pack(seq % 65536, t0_us % (1 << 32), n, ac | (gc << 4))
    return head + raw.tobytes()


# --------------------------------------------------------------------------- haptic


def build_haptic(pattern: str, intensity_pct: int, duration_ms: int) -> bytes:
    """The 4-byte haptic command: u8 pattern, u8 intensity %, u16 duration ms.

    Raises:
        ValueError: unknown pattern, intensity outside 0..100, duration outside 0..65535.
    """
    if pattern not in HAPTIC_PATTERNS:
        raise ValueError(f"pattern must be one of {HAPTIC_PATTERNS}, got {pattern!r}")
    if not 0 <= intensity_pct <= 100:
        raise ValueError(f"intensity_pct must be in 0..100, got {intensity_pct!r}")
    if not 0 <= duration_ms <= 0xFFFF:
        raise ValueError(f"duration_ms must be in 0..65535, got {duration_ms!r}")
    return _HAPTIC.pack(HAPTIC_PATTERNS.index(pattern), int(intensity_pct), int(duration_ms))


def decode_haptic(data: bytes | bytearray) -> tuple[str, int, int]:
    """(pattern, intensity_pct, duration_ms) of a haptic command (the firmware's side).

    Raises:
        DecodeError: ``too_short``, ``too_long``, ``bad_header`` (unknown pattern) or
            ``bad_range`` (intensity above 100).
    """
    if len(data) != _HAPTIC.size:
        raise DecodeError("too_short" if len(data) < _HAPTIC.size else "too_long", f"{len(data)} bytes")
    p, i, d = _HAPTIC.unpack(data)
    if p >= len(HAPTIC_PATTERNS):
        raise DecodeError("bad_header", f"pattern code {p}")
    if i > 100:
        raise DecodeError("bad_range", f"intensity {i} %")
    return HAPTIC_PATTERNS[p], i, d


# --------------------------------------------------------------------------- config


class SensorConfig:
    """The config characteristic: rate_hz (u16), acc code, gyro code, samples/packet, reserved."""

    __slots__ = ("acc_range_g", "gyr_range_dps", "rate_hz", "samples_per_packet")

    def __init__(
        self, rate_hz: int = 100, acc_range_g: float = 8.0, gyr_range_dps: float = 1000.0,
        samples_per_packet: int = 5,
    ) -> None:
        if not 1 <= rate_hz <= 1000:
            raise ValueError(f"rate_hz must be in 1..1000, got {rate_hz!r}")
        _range_code(acc_range_g, ACC_RANGES_G, "acc_range_g")
        _range_code(gyr_range_dps, GYR_RANGES_DPS, "gyr_range_dps")
        if not 1 <= samples_per_packet <= MAX_SAMPLES_PER_PACKET:
            raise ValueError(f"samples_per_packet must be in 1..{MAX_SAMPLES_PER_PACKET}")
        self.rate_hz = int(rate_hz)
        self.acc_range_g = float(acc_range_g)
        self.gyr_range_dps = float(gyr_range_dps)
        self.samples_per_packet = int(samples_per_packet)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SensorConfig) and encode_config(self) == encode_config(other)

    def __repr__(self) -> str:
        return (f"SensorConfig(rate_hz={self.rate_hz}, acc_range_g={self.acc_range_g}, "
                f"gyr_range_dps={self.gyr_range_dps}, samples_per_packet={self.samples_per_packet})")


def encode_config(cfg: SensorConfig) -> bytes:
    """The 6-byte config characteristic value."""
    return _CONFIG.pack(
        cfg.rate_hz, ACC_RANGES_G.index(cfg.acc_range_g), GYR_RANGES_DPS.index(cfg.gyr_range_dps),
        cfg.samples_per_packet, 0,
    )


def decode_config(data: bytes | bytearray) -> SensorConfig:
    """Parse the config characteristic.

    Raises:
        DecodeError: ``too_short``, ``too_long``, ``bad_range`` or ``bad_count``.
    """
    if len(data) != _CONFIG.size:
        raise DecodeError("too_short" if len(data) < _CONFIG.size else "too_long", f"{len(data)} bytes")
    rate, ac, gc, spp, _ = _CONFIG.unpack(data)
    if ac >= len(ACC_RANGES_G) or gc >= len(GYR_RANGES_DPS) or not 1 <= rate <= 1000:
        raise DecodeError("bad_range", f"rate {rate} Hz, acc code {ac}, gyro code {gc}")
    if not 1 <= spp <= MAX_SAMPLES_PER_PACKET:
        raise DecodeError("bad_count", f"samples_per_packet {spp}")
    return SensorConfig(rate, ACC_RANGES_G[ac], GYR_RANGES_DPS[gc], spp)


def rate_from_config(data: bytes | bytearray) -> float:
    """The sample rate, Hz, of a config characteristic value (the profile's connect hook).

    Raises:
        DecodeError: as :func:`decode_config`.
    """
    return float(decode_config(data).rate_hz)


PROFILE: Final = SensorProfile(
    name="spinewatch",
    service_uuid=SERVICE_UUID,
    imu_char_uuid=IMU_CHAR_UUID,
    haptic_char_uuid=HAPTIC_CHAR_UUID,
    config_char_uuid=CONFIG_CHAR_UUID,
    has_battery_service=True,
    seq_modulo=1 << 16,
    clock_modulo_us=1 << 32,
    default_rate_hz=100.0,
    default_mount=MountAlignment.PXPYPZ,
    max_samples_per_packet=MAX_SAMPLES_PER_PACKET,
    decode=decode_packet,
    build=build_packet,
    name_prefixes=("SpineWatch",),
    decode_many=decode_many,
    rate_from_config=rate_from_config,
    build_haptic=build_haptic,
    samples_claimed=count_samples,
)
