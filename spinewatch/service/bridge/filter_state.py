"""What a device's bridge learnt about its sensor, kept across restarts: the orientation filter state.

The orientation filter learns the gyroscope bias of its sensor (at rest in seconds, in
motion over minutes; docs/orientation.md). A restarted bridge (an update, a crash, ``kill -9``,
a reboot) would otherwise learn it again from zero, and while the patient moves the
vertical component cannot be learnt at all. So ``bridge run`` keeps the filter's state in
its device's outbox file (:meth:`~spinewatch.service.bridge.outbox.Outbox.set_kept`, the one
place a (patient, device) bridge keeps anything), every status interval and when it stops,
and a restarted bridge resumes from it before its first sample
(:meth:`~spinewatch.signal.orientation.OrientationFilter.resume`: bias and its uncertainty
kept, grown for the time the bridge was down; orientation re-learnt from the accelerometer
with the start-up average, as after a gap, since the patient may have moved meanwhile).

A saved state is ignored, with a log line, when it cannot be this sensor's: kept by a
version whose state has another layout (another :data:`STATE_LEN`), saved for another
sensor (a BLE address other than the one connected), older than :data:`MAX_AGE_S`, saved
"in the future" (the clock went back), or unreadable. The filter then starts from zero, as
it always did. A replay of the recording the state was learnt from does not resume it
either: a restarted replay re-sends the recording from its start under the same timestamps
(``bridge run --replay``), so it must compute what its first run computed (the same
points, the same slouch events), not use a bias learnt from the recording's later samples.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from spinewatch.model import NS_PER_S
from spinewatch.signal.orientation import STATE_LEN, OrientationFilter

if TYPE_CHECKING:
    from spinewatch.service.bridge.outbox import Outbox

_LOGGER = logging.getLogger(__name__)

# Key of the state in the outbox file, and the version of its JSON record.
KEY: Final = "orientation_filter"
FORMAT: Final = 1
# A state older than this is not resumed: its bias uncertainty has long grown back to the
# initial value (after ~40 min at the default parameters), and over a day the sensor has
# most likely been switched off and on (a MEMS gyroscope's bias changes from one power-on
# to the next) and been through other temperatures.
MAX_AGE_S: Final = 24 * 3600.0
# The sensor a replayed recording stands for: the device its --device-id names.
REPLAY_SENSOR: Final = "replay"


@dataclass(frozen=True, slots=True)
class SavedState:
    """A filter state as kept in the outbox file.

    Attributes:
        sensor: the sensor it was learnt from (BLE address, or :data:`REPLAY_SENSOR`).
        stream: the replayed recording it was learnt from (``"replay:<digest>"``), "" live.
        rate_hz: sample rate the filter ran at, Hz (the state itself does not depend on it).
        saved_utc_ns: wall-clock time of the save, UTC ns.
        state: the :attr:`OrientationFilter.state` vector.
    """

    sensor: str
    stream: str
    rate_hz: float
    saved_utc_ns: int
    state: list[float]

    def encode(self) -> bytes:
        return json.dumps({"format": FORMAT, "state_len": len(self.state), "sensor": self.sensor,
                           "stream": self.stream, "rate_hz": self.rate_hz, "saved_utc_ns": self.saved_utc_ns,
                           "state": self.state}).encode()

    @classmethod
    def decode(cls, data: bytes) -> SavedState:
        """Raises ValueError (with the reason) on anything but a record this version wrote."""
        try:
            d: Any = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"unreadable ({exc})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"record format {got!r}, this version reads {FORMAT}")
        state = d.get("state")
        if not isinstance(state, list) or d.get("state_len") != len(state) or len(state) != STATE_LEN:
            n = len(state) if isinstance(state, list) else d.get("state_len")
            raise ValueError(f"kept by a version whose filter state has {n} numbers, this one has {STATE_LEN}")
        try:
            return cls(str(d["sensor"]), str(d["stream"]), float(d["rate_hz"]), int(d["saved_utc_ns"]),
                       [float(x) for x in state])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"incomplete record ({exc!r})") from None


class FilterStateKeeper:
    """Saves a bridge's orientation filter state in its device's outbox and resumes from it.

    Args:
        outbox: the device's outbox (held by this bridge).
        sensor: the sensor now streaming (called at :meth:`restore` and :meth:`save`, when the
            source is connected, so a BLE source can give the address it found).
        stream: the recording replayed (``"replay:<digest>"``), "" for a live sensor.
        now_ns: wall clock, UTC ns.
        max_age_s: a state older than this is not resumed, s.
    """

    def __init__(self, outbox: Outbox, sensor: Callable[[], str], now_ns: Callable[[], int] = time.time_ns,
                 max_age_s: float = MAX_AGE_S, *, stream: str = "") -> None:
        self.outbox = outbox
        self.sensor = sensor
        self.stream = stream
        self.now_ns = now_ns
        self.max_age_s = float(max_age_s)
        self.restored: SavedState | None = None  # what the last restore() resumed from
        self.saves = 0

    def restore(self, filt: OrientationFilter) -> bool:
        """Resume ``filt`` from the kept state if it is this sensor's and recent; True if it did.

        Every outcome but "nothing kept" is logged: the resumed bias at INFO, a state not
        used with its reason (at INFO when it is only old, else at WARNING).
        """
        where = self.outbox.path
        data = self.outbox.get_kept(KEY)
        if data is None:
            return False
        try:
            saved = SavedState.decode(data)
        except ValueError as exc:
            _LOGGER.warning("ignoring the orientation filter state kept in %s: %s; the gyroscope bias is "
                            "learnt afresh", where, exc)
            return False
        sensor = self.sensor()
        if saved.sensor != sensor:
            _LOGGER.warning("ignoring the orientation filter state kept in %s: it was learnt from sensor %s, "
                            "this is %s; the gyroscope bias is learnt afresh", where, saved.sensor, sensor)
            return False
        if self.stream and saved.stream == self.stream:
            _LOGGER.info("not resuming the orientation filter state kept in %s: it was learnt from this "
                         "recording, whose replay restarts from its beginning and computes what its first "
                         "run did", where)
            return False
        age_s = (self.now_ns() - saved.saved_utc_ns) / NS_PER_S
        if age_s < 0:
            _LOGGER.warning("ignoring the orientation filter state kept in %s: saved %.0f s in the future (the "
                            "clock went back?); the gyroscope bias is learnt afresh", where, -age_s)
            return False
        if age_s > self.max_age_s:
            _LOGGER.info("not resuming the orientation filter state kept in %s: saved %.1f h ago (more than "
                         "%.0f h); the gyroscope bias is learnt afresh", where, age_s / 3600, self.max_age_s / 3600)
            return False
        try:
            filt.resume(saved.state, age_s)
        except ValueError as exc:
            _LOGGER.warning("ignoring the orientation filter state kept in %s: %s", where, exc)
            return False
        self.restored = saved
        b = np.degrees(filt.gyr_bias_rad_s)
        _LOGGER.info("orientation filter resumed from the state kept in %s (sensor %s, saved %.0f s ago at "
                     "%g Hz): gyroscope bias %+.3f %+.3f %+.3f deg/s", where, sensor, age_s, saved.rate_hz,
                     b[0], b[1], b[2])
        return True

    def save(self, filt: OrientationFilter, final: bool = False) -> None:
        """Keep ``filt``'s state (a failed write is logged; the stream goes on); the ``final``
        save (the bridge stops) is logged at INFO with the bias kept."""
        saved = SavedState(self.sensor(), self.stream, filt.rate_hz, self.now_ns(), filt.state.tolist())
        try:
            self.outbox.set_kept(KEY, saved.encode())
        except (sqlite3.Error, OSError) as exc:
            _LOGGER.warning("could not keep the orientation filter state in %s: %s", self.outbox.path, exc)
            return
        self.saves += 1
        b = np.degrees(filt.gyr_bias_rad_s)
        _LOGGER.log(logging.INFO if final else logging.DEBUG, "orientation filter state kept in %s for the "
                    "next start: gyroscope bias %+.3f %+.3f %+.3f deg/s", self.outbox.path, b[0], b[1], b[2])
