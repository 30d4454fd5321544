"""Typed settings of the BLE bridge: section ``[ble]`` of the one ``Config`` (spinewatch/service/config.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Final

from spinewatch.errors import ConfigError

# Longest wait between BLE reconnect attempts by default, s: a sensor that comes back in
# range is looked for again within a minute.
RECONNECT_CAP_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class BleConfig:
    """Settings of :class:`~spinewatch.firmware_bridge.ble.BleSource`.

    Attributes:
        scan_timeout_s: how long one scan for the sensor lasts before it counts as a
            failed attempt, s. 10 s covers advertising intervals up to ~2 s comfortably.
        connect_attempts: attempts inside one ``establish_connection`` call
            (bleak-retry-connector retries transient BlueZ errors itself).
        silence_timeout_s: no notification for this long on a connected link means the
            link is dead or the sensor stuck: disconnect and reconnect, s. 0 disables.
            At 20 notifications/s, 3 s is 60 missed packets.
        queue_packets: notifications buffered between bleak's callback and the decoder;
            when full, new notifications are dropped and counted as ``queue_full``
            (2048 = about 100 s at 20 packets/s: only a stalled consumer fills it).
        reorder_packets: reorder window of sequenced profiles, packets.
        max_hold_ms: longest a packet waits for a missing predecessor, ms.
        gap_tolerance_ms: arrival-time jitter tolerated before a sequence-less stream
            counts a gap, ms.
        poll_interval_s: how often the source wakes up without data to release held
            packets and check for silence, s.
        status_interval_s: how often the device status is published, s.
        backoff_cap_s: longest wait between reconnect attempts, s.
        decode_log_interval_s: decode errors are logged at most this often (each
            is counted regardless), s.
        battery_interval_s: how often the battery level is read again on a connected link
            (Battery Service sensors), s; 0 = only at connect. A coin cell drains over
            hours, so 5 minutes keeps "battery low" timely at one GATT read.
    """

    scan_timeout_s: float = 10.0
    connect_attempts: int = 3
    silence_timeout_s: float = 3.0
    queue_packets: int = 2048
    reorder_packets: int = 8
    max_hold_ms: float = 40.0
    gap_tolerance_ms: float = 100.0
    poll_interval_s: float = 0.02
    status_interval_s: float = 10.0
    backoff_cap_s: float = RECONNECT_CAP_S
    decode_log_interval_s: float = 30.0
    battery_interval_s: float = 300.0

    def __post_init__(self) -> None:
        zero_ok = ("silence_timeout_s", "reorder_packets", "battery_interval_s")
        for f in fields(self):
            v = getattr(self, f.name)
            allowed = f"a finite number {'>= 0' if f.name in zero_ok else '> 0'}"
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"ble.{f.name}", v, allowed)
            if v < 0 or (v == 0 and f.name not in zero_ok):
                raise ConfigError(f"ble.{f.name}", v, allowed)
        for name in ("connect_attempts", "queue_packets"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ble.{name}", getattr(self, name), "an integer >= 1")
