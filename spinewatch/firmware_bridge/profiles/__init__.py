"""GATT profiles of supported sensors: UUIDs, pure packet decoders and packet builders.

Every profile module exposes a :data:`PROFILE` (:class:`SensorProfile`). Its ``decode``
turns one notification's bytes into a :class:`DecodedPacket` (body-frame arrays with
units, plus the sequence number and device timestamp when the sensor sends them) or
raises :class:`~spinewatch.errors.DecodeError` with one of :data:`DECODE_REASONS`; it
never raises anything else (fuzzed in ``tests/test_profiles_fuzz.py`` and
``benchmarks/fuzz_profiles.py``). ``build`` is the inverse, used by tests, the fake
sensors and the simulator.

What a sensor needs beyond decoding is a hook on its profile, never a test of its name in
:class:`~spinewatch.firmware_bridge.ble.BleSource`: ``rate_from_config`` (read the sample
rate at the first connection), ``build_haptic`` (the command that makes it vibrate) and
``samples_claimed`` (how many samples a notification carries, read from its header, for the
loss accounting of packets dropped unread). A profile without them gets none of that.

| profile | module | sequence | device clock | haptic | rate read at connect |
|---|---|---|---|---|---|
| ``spinewatch`` | :mod:`.spinewatch` (docs/gatt-profile.md) | u16 | u32 us | yes | yes |
| ``witmotion`` | :mod:`.witmotion` (WT901BLE) | no | no | no | no |
| ``thingy52`` | :mod:`.thingy52` (Nordic Thingy:52 raw motion) | no | no | no | no |
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Final

import numpy as np

from spinewatch.errors import DecodeError
from spinewatch.firmware_bridge.remap import MountAlignment
from spinewatch.model import Float2D

__all__ = [
    "BATTERY_LEVEL_CHAR_UUID",
    "BATTERY_SERVICE_UUID",
    "DECODE_REASONS",
    "DecodedPacket",
    "SensorProfile",
    "get_profile",
    "profile_names",
]

# Bluetooth SIG assigned numbers: Battery Service 0x180F, Battery Level 0x2A19 (uint8 %).
BATTERY_SERVICE_UUID: Final = "0000180f-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL_CHAR_UUID: Final = "00002a19-0000-1000-8000-00805f9b34fb"

# The one set of reasons a decoder puts in DecodeError.reason (counter labels).
DECODE_REASONS: Final = {
    "too_short": "fewer bytes than the layout (header + samples) requires",
    "too_long": "more bytes than the layout requires",
    "bad_header": "a fixed header byte has the wrong value",
    "unsupported_packet": "a valid packet of a kind the bridge does not use",
    "bad_count": "sample count is 0 or above the profile's maximum",
    "bad_range": "unknown full-scale range code or reserved bits set",
}


@dataclass(slots=True)
class DecodedPacket:
    """One notification's samples, already in the body frame. Treat as immutable (not
    ``frozen`` only because a frozen dataclass costs 3x as much to build, and decoders build
    one per notification).

    Attributes:
        seq: packet sequence number as sent (wraps at the profile's ``seq_modulo``), or
            None when the profile has none.
        t0_us: device clock at the first sample, us (wraps at ``clock_modulo_us``), or
            None when the profile has none.
        acc_m_s2: (N, 3) specific force, m/s^2, body frame.
        gyr_rad_s: (N, 3) angular rate, rad/s, body frame.
    """

    seq: int | None
    t0_us: int | None
    acc_m_s2: Float2D
    gyr_rad_s: Float2D

    def __len__(self) -> int:
        return int(self.acc_m_s2.shape[0])


@dataclass(frozen=True, slots=True)
class SensorProfile:
    """What the bridge needs to know about one kind of sensor.

    Attributes:
        name: registry key, e.g. ``"spinewatch"``.
        service_uuid: primary service to scan for and that holds ``imu_char_uuid``.
        imu_char_uuid: the notify characteristic carrying IMU packets.
        haptic_char_uuid: write characteristic for vibration, or None (no motor).
        config_char_uuid: read/write configuration characteristic, or None.
        has_battery_service: the sensor implements the standard Battery Service.
        seq_modulo: sequence numbers wrap at this value; 0 = the profile has none.
        clock_modulo_us: device timestamps wrap at this value, us; 0 = none.
        default_rate_hz: sample rate assumed unless configured, Hz.
        default_mount: alignment assumed when the user gives none.
        max_samples_per_packet: upper bound on ``len(decode(x))``.
        decode: ``decode(data, mount) -> DecodedPacket``; raises DecodeError only.
        build: ``build(acc_m_s2, gyr_rad_s, mount=..., seq=..., t0_us=...) -> bytes``
            (body-frame input; the inverse of ``decode`` up to quantisation).
        name_prefixes: advertised local names that identify the sensor when scanning.
        decode_many: optional vectorised ``decode`` of many packets (same results).
        rate_from_config: ``rate_from_config(value) -> Hz``, the sample rate in the value of
            ``config_char_uuid`` (raises DecodeError). When set, the BLE source reads that
            characteristic at its first connection and samples at the sensor's rate (or
            logs an error if it was told another one); None = the rate is not readable.
        build_haptic: ``build_haptic(pattern, intensity_pct, duration_ms) -> bytes``, the
            command written to ``haptic_char_uuid`` to vibrate (raises ValueError on bad
            arguments); None = the bridge cannot buzz this sensor.
        samples_claimed: ``samples_claimed(data) -> int``, how many samples a notification
            says it carries, read from its header without decoding (the loss accounting of
            packets dropped unread on a full queue); None = :meth:`samples_in`'s default.

    Raises:
        ValueError: a hook without the characteristic it needs (``rate_from_config``
            without ``config_char_uuid``, ``build_haptic`` without ``haptic_char_uuid``).
    """

    name: str
    service_uuid: str
    imu_char_uuid: str
    haptic_char_uuid: str | None
    config_char_uuid: str | None
    has_battery_service: bool
    seq_modulo: int
    clock_modulo_us: int
    default_rate_hz: float
    default_mount: MountAlignment
    max_samples_per_packet: int
    decode: Callable[[bytes | bytearray, MountAlignment], DecodedPacket]
    build: Callable[..., bytes]
    name_prefixes: tuple[str, ...] = ()
    decode_many: Callable[[list[bytes], MountAlignment], list[DecodedPacket | DecodeError]] | None = None
    rate_from_config: Callable[[bytes | bytearray], float] | None = None
    build_haptic: Callable[[str, int, int], bytes] | None = None
    samples_claimed: Callable[[bytes | bytearray], int] | None = None

    def __post_init__(self) -> None:
        if self.rate_from_config is not None and self.config_char_uuid is None:
            raise ValueError(f"profile {self.name!r}: rate_from_config needs a config_char_uuid to read")
        if self.build_haptic is not None and self.haptic_char_uuid is None:
            raise ValueError(f"profile {self.name!r}: build_haptic needs a haptic_char_uuid to write")

    def samples_in(self, data: bytes | bytearray) -> int:
        """Samples the notification ``data`` carries, without decoding it: ``samples_claimed``'s
        count, else 1 for a profile of one sample per packet, else 0 (unknown)."""
        if self.max_samples_per_packet == 1:
            return 1
        if self.samples_claimed is not None:
            return self.samples_claimed(data)
        return 0

    def decode_batch(self, packets: list[bytes], mount: MountAlignment) -> list[DecodedPacket | DecodeError]:
        """Decode many notifications; each result is a packet or the DecodeError it raised."""
        if self.decode_many is not None:
            return self.decode_many(packets, mount)
        return _decode_each(self.decode, packets, mount)

    @property
    def has_sequence(self) -> bool:
        return self.seq_modulo > 0


def _decode_each(
    decode: Callable[[bytes | bytearray, MountAlignment], DecodedPacket], packets: list[bytes], mount: MountAlignment
) -> list[DecodedPacket | DecodeError]:
    out: list[DecodedPacket | DecodeError] = []
    for pk in packets:
        try:
            out.append(decode(pk, mount))
        except DecodeError as exc:
            out.append(exc)
    return out


def _fixed_frame_decoder(
    frame_bytes: int, offset: int, header: bytes, tables: Callable[[MountAlignment], tuple[Any, Any]],
    decode: Callable[[bytes | bytearray, MountAlignment], DecodedPacket],
) -> Callable[[list[bytes], MountAlignment], list[DecodedPacket | DecodeError]]:
    """Vectorised decoder for one-sample fixed-size frames (WitMotion, Thingy:52)."""

    def decode_many(packets: list[bytes], mount: MountAlignment) -> list[DecodedPacket | DecodeError]:
        if len(packets) < 4:
            return _decode_each(decode, packets, mount)
        if max(map(len, packets)) == min(map(len, packets)) == frame_bytes:  # the usual case
            blob = b"".join(packets)
            raw = np.frombuffer(blob, np.uint8).reshape(len(packets), frame_bytes)
            if not (raw[:, :len(header)] == np.frombuffer(header, np.uint8)).all():
                return _decode_some(packets, mount)
            acc, gyr = _columns(raw, mount)
            return list(map(DecodedPacket, repeat(None), repeat(None), acc, gyr))
        return _decode_some(packets, mount)

    def _columns(raw: np.ndarray[Any, Any], mount: MountAlignment) -> tuple[Any, Any]:
        vals6 = np.ascontiguousarray(raw[:, offset:offset + 12]).view("<i2")
        cols, mult = tables(mount)
        vals = (vals6[:, cols] * mult)[:, None, :]  # (P, 1, 6): one view per packet
        return vals[:, :, :3], vals[:, :, 3:]

    def _decode_some(packets: list[bytes], mount: MountAlignment) -> list[DecodedPacket | DecodeError]:
        good = [i for i, pk in enumerate(packets) if len(pk) == frame_bytes and pk.startswith(header)]
        if len(good) < 4:
            return _decode_each(decode, packets, mount)
        out: list[DecodedPacket | DecodeError | None] = [None] * len(packets)
        raw = np.frombuffer(b"".join([packets[i] for i in good]), np.uint8).reshape(len(good), frame_bytes)
        acc, gyr = _columns(raw, mount)
        for j, i in enumerate(good):
            out[i] = DecodedPacket(None, None, acc[j], gyr[j])
        for i, o in enumerate(out):
            if o is None:
                try:
                    out[i] = decode(packets[i], mount)
                except DecodeError as exc:
                    out[i] = exc
        return out  # type: ignore[return-value]

    return decode_many


@functools.lru_cache(maxsize=64)  # 24 alignments x a few scales; the arrays are never written to
def _scaled_columns(
    mount: MountAlignment, acc_scale: float, gyr_scale: float
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(6,) column index and (6,) multiplier mapping raw [ax ay az gx gy gz] (sensor
    frame, counts) to [acc_body m/s^2, gyr_body rad/s]."""
    from spinewatch.firmware_bridge.remap import _index_sign

    idx, sign = _index_sign(mount)
    cols = np.array(list(idx) + [3 + i for i in idx], dtype=np.intp)
    mult = np.array([s * acc_scale for s in sign] + [s * gyr_scale for s in sign])
    return cols, mult


def _registry() -> dict[str, SensorProfile]:
    from spinewatch.firmware_bridge.profiles import spinewatch, thingy52, witmotion

    return {p.name: p for p in (spinewatch.PROFILE, witmotion.PROFILE, thingy52.PROFILE)}


def profile_names() -> list[str]:
    """Names of the supported profiles."""
    return sorted(_registry())


def get_profile(name: str) -> SensorProfile:
    """The profile called ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    reg = _registry()
    try:
        return reg[name]
    except KeyError:
        raise ValueError(f"unknown sensor profile {name!r}; known: {sorted(reg)}") from None
