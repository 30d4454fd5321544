"""Per-patient settings (the retained ``config`` topic): dataclass, JSON codec, validation.

The therapist side publishes one retained JSON object per patient and device on
``spinewatch/v1/{patient}/{device}/config``; the bridge applies it live. Every key is
optional (missing keys keep their defaults); unknown keys are refused so that a typo
does not silently do nothing::

    {"v": 1, "threshold_deg": 20, "severe_deg": 30, "hysteresis_deg": 5, "min_duration_s": 30,
     "haptic": {"enabled": true, "delay_s": 10, "pattern": "double", "intensity_pct": 60,
                "duration_ms": 400, "min_interval_s": 120, "response_window_s": 60},
     "quiet_hours": [["22:00", "07:00"]], "timezone": "Europe/Berlin",
     "alerts_off_activities": ["lying", "upright_moving"]}

| key | unit | default | meaning |
|---|---|---|---|
| ``threshold_deg`` | degrees | 20 | flexion above neutral that starts a slouch (and the mild zone) |
| ``severe_deg`` | degrees | 30 | flexion above neutral where the severe zone starts (> threshold_deg) |
| ``hysteresis_deg`` | degrees | 5 | the slouch ends below threshold minus this |
| ``min_duration_s`` | s | 30 | a slouch is confirmed after this long |
| ``haptic.enabled`` | — | true | buzz at all |
| ``haptic.delay_s`` | s | 0 | extra time a confirmed slouch must last before the buzz |
| ``haptic.pattern`` | — | ``double`` | ``off``, ``short``, ``double``, ``long``, ``ramp`` |
| ``haptic.intensity_pct`` | % | 60 | 0..100 |
| ``haptic.duration_ms`` | ms | 400 | 0..65535 (0 = the pattern's default) |
| ``haptic.min_interval_s`` | s | 60 | least time between two buzzes |
| ``haptic.response_window_s`` | s | 60 | an alert is corrected if the slouch ends this soon after the buzz; (0, 3600] |
| ``quiet_hours`` | HH:MM | [] | local-time windows without buzzing; ``["22:00", "07:00"]`` spans midnight |
| ``timezone`` | IANA name | ``UTC`` | the patient's time zone for quiet hours |
| ``alerts_off_activities`` | — | [] | any of ``lying``, ``upright_still``, ``upright_moving``, ``unknown`` |
| ``neutral_up_sensor`` | unit vector, sensor frame | null | stored neutral posture; null = the bridge's auto-capture |
| ``mount_yaw_deg`` | degrees | null | the sensor's turn about the spine from the guided bend; null = 0 |
| ``calibrated_ns`` | UTC ns | 0 | when the stored calibration was captured; 0 = none |

``spinewatch calibrate`` writes the last three (``mount_yaw_deg`` only together with
``neutral_up_sensor``); ``config set`` keeps them (and calibrate keeps the other settings):
both read the retained config, change their keys, and publish it again.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from spinewatch.errors import ConfigError
from spinewatch.model import Activity
from spinewatch.service.config import (
    DEFAULT_HYSTERESIS_DEG,
    DEFAULT_MIN_DURATION_S,
    DEFAULT_SEVERE_DEG,
    DEFAULT_THRESHOLD_DEG,
)
from spinewatch.signal.haptic_trigger import HapticSettings

__all__ = ["HapticConfig", "PatientConfig", "SettingsConflict", "decode_patient_config", "encode_patient_config",
           "in_quiet_hours"]

VERSION: Final = 1
PATTERNS: Final = ("off", "short", "double", "long", "ramp")
ACTIVITY_NAMES: Final = {a.name.lower(): int(a) for a in Activity}
MAX_PAYLOAD_BYTES: Final = 16_384  # a config is a few hundred bytes; refuse anything huge


class SettingsConflict(ConfigError):
    """Two settings, each valid alone, break a rule between them: ``key`` must be ``relation`` ``other``.

    Attributes:
        key_value: ``value``, as the number it is.
        other, other_value: the setting ``key`` is compared with, and its value.
        relation: ``more than`` or ``less than``.
    """

    def __init__(self, key: str, value: float, other: str, other_value: float, relation: str) -> None:
        self.key_value = value
        self.other = other
        self.other_value = other_value
        self.relation = relation
        super().__init__(key, value, f"{relation} {other} ({other_value:g})")


@dataclass(frozen=True, slots=True)
class HapticConfig:
    """The ``haptic`` object (see the module table)."""

    enabled: bool = True
    delay_s: float = 0.0
    pattern: str = "double"
    intensity_pct: int = 60
    duration_ms: int = 400
    min_interval_s: float = 60.0
    response_window_s: float = 60.0  # a patient who straightens up within a minute responded to the buzz

    def __post_init__(self) -> None:
        _bool("haptic.enabled", self.enabled)
        _num("haptic.response_window_s", self.response_window_s, 0.0, 3600.0, low_open=True)
        _num("haptic.delay_s", self.delay_s, 0.0, 3600.0)
        _num("haptic.min_interval_s", self.min_interval_s, 0.0, 86_400.0)
        if self.pattern not in PATTERNS:
            raise ConfigError("haptic.pattern", self.pattern, f"one of {', '.join(PATTERNS)}")
        _int("haptic.intensity_pct", self.intensity_pct, 0, 100)
        _int("haptic.duration_ms", self.duration_ms, 0, 65_535)


@dataclass(frozen=True, slots=True)
class PatientConfig:
    """One patient's settings, validated (see the module table)."""

    threshold_deg: float = DEFAULT_THRESHOLD_DEG
    severe_deg: float = DEFAULT_SEVERE_DEG
    hysteresis_deg: float = DEFAULT_HYSTERESIS_DEG
    min_duration_s: float = DEFAULT_MIN_DURATION_S
    haptic: HapticConfig = field(default_factory=HapticConfig)
    quiet_hours: tuple[tuple[str, str], ...] = ()
    timezone: str = "UTC"
    alerts_off_activities: tuple[str, ...] = ()
    neutral_up_sensor: tuple[float, float, float] | None = None  # calibration: unit vector, sensor frame
    mount_yaw_deg: float | None = None  # calibration: turn about the spine, degrees, (-180, 180]
    calibrated_ns: int = 0  # calibration: UTC ns of the capture; 0 = none
    author: str = ""  # audit: pseudonymous id of who set it (no personal data)
    set_ns: int = 0  # audit: UTC ns when it was set; 0 = unknown

    def __post_init__(self) -> None:
        # each value on its own first, then the rules between values (SettingsConflict), so that a
        # caller can check what a user typed before it knows the settings in force (config set)
        _num("threshold_deg", self.threshold_deg, 0.0, 90.0, low_open=True, high_open=True)
        if not isinstance(self.author, str) or len(self.author) > 64:
            raise ConfigError("author", self.author, "a pseudonymous id of at most 64 characters")
        if not isinstance(self.set_ns, int) or isinstance(self.set_ns, bool) or self.set_ns < 0:
            raise ConfigError("set_ns", self.set_ns, "UTC nanoseconds, an integer >= 0")
        _num("severe_deg", self.severe_deg, 0.0, 90.0, low_open=True, high_open=True)
        _num("hysteresis_deg", self.hysteresis_deg, 0.0, 90.0)
        _num("min_duration_s", self.min_duration_s, 0.0, 3600.0)
        for i, win in enumerate(self.quiet_hours):
            if not (isinstance(win, (tuple, list)) and len(win) == 2):
                raise ConfigError(f"quiet_hours[{i}]", win, 'a pair ["HH:MM", "HH:MM"]')
            for t in win:
                _hhmm(f"quiet_hours[{i}]", t)
        object.__setattr__(self, "quiet_hours", tuple((str(a), str(b)) for a, b in self.quiet_hours))
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ConfigError("timezone", self.timezone, "an IANA time zone name such as Europe/Berlin") from None
        for a in self.alerts_off_activities:
            if a not in ACTIVITY_NAMES:
                raise ConfigError("alerts_off_activities", a, f"any of {', '.join(ACTIVITY_NAMES)}")
        object.__setattr__(self, "alerts_off_activities", tuple(self.alerts_off_activities))
        if self.neutral_up_sensor is not None:
            object.__setattr__(self, "neutral_up_sensor", _unit_vector("neutral_up_sensor", self.neutral_up_sensor))
        if self.mount_yaw_deg is not None:
            _num("mount_yaw_deg", self.mount_yaw_deg, -180.0, 180.0, low_open=True)
        _int("calibrated_ns", self.calibrated_ns, 0, 2**63 - 1)
        if not self.severe_deg > self.threshold_deg:
            raise SettingsConflict("severe_deg", self.severe_deg, "threshold_deg", self.threshold_deg, "more than")
        if not self.hysteresis_deg < self.threshold_deg:
            raise SettingsConflict("hysteresis_deg", self.hysteresis_deg, "threshold_deg", self.threshold_deg,
                                   "less than")
        if self.mount_yaw_deg is not None and self.neutral_up_sensor is None:
            raise ConfigError("mount_yaw_deg", self.mount_yaw_deg, "only together with neutral_up_sensor")

    def haptic_settings(self) -> HapticSettings:
        h = self.haptic
        return HapticSettings(
            enabled=h.enabled and h.pattern != "off", delay_s=h.delay_s, min_interval_s=h.min_interval_s,
            pattern=h.pattern, intensity_pct=h.intensity_pct, duration_ms=h.duration_ms,
            muted_activities=frozenset(ACTIVITY_NAMES[a] for a in self.alerts_off_activities),
        )


def _bool(key: str, v: object) -> None:
    if not isinstance(v, bool):
        raise ConfigError(key, v, "true or false")


def _num(key: str, v: object, lo: float, hi: float, low_open: bool = False, high_open: bool = False) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if ok:
        ok = (v > lo if low_open else v >= lo) and (v < hi if high_open else v <= hi)  # type: ignore[operator]
    if not ok:
        raise ConfigError(key, v, f"a number in {'(' if low_open else '['}{lo:g}, {hi:g}{')' if high_open else ']'}")


def _unit_vector(key: str, v: object) -> tuple[float, float, float]:
    """``v`` as a unit vector of 3 floats (a norm within 1 % of 1 is renormalised)."""
    comps: list[float] = []  # stays empty unless v is 3 finite numbers
    if isinstance(v, (tuple, list)) and len(v) == 3 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v):
        comps = [float(x) for x in v]
    norm = math.sqrt(sum(c ** 2 for c in comps))
    if not comps or not 0.99 <= norm <= 1.01:
        raise ConfigError(key, v, "a unit vector [x, y, z] (sensor frame)")
    x, y, z = (c / norm for c in comps)
    return (x, y, z)


def _int(key: str, v: object, lo: int, hi: int) -> None:
    if not (isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi):
        raise ConfigError(key, v, f"an integer in [{lo}, {hi}]")


def _hhmm(key: str, t: object) -> _dt.time:
    try:
        h, m = str(t).split(":")
        if len(h) != 2 or len(m) != 2:
            raise ValueError
        return _dt.time(int(h), int(m))
    except ValueError:
        raise ConfigError(key, t, "a time HH:MM (00:00-23:59)") from None


def in_quiet_hours(cfg: PatientConfig, utc_ns: int) -> bool:
    """Whether UTC time ``utc_ns`` falls in one of the patient's quiet-hour windows."""
    if not cfg.quiet_hours:
        return False
    local = _dt.datetime.fromtimestamp(utc_ns / 1e9, tz=ZoneInfo(cfg.timezone)).time()
    for a, b in cfg.quiet_hours:
        start, end = _hhmm("quiet_hours", a), _hhmm("quiet_hours", b)
        if start <= end:
            if start <= local < end:
                return True
        elif local >= start or local < end:  # spans midnight
            return True
    return False


class QuietHours:
    """:func:`in_quiet_hours` for one config, evaluated at most once per UTC minute.

    The bridge asks for every batch (~20 per second per sensor); the answer can only
    change at a minute boundary: the windows are whole local minutes (HH:MM), and every
    zone offset in use since 1972 is a whole number of minutes, changing (DST) at whole
    UTC minutes. Build a new one when the config changes.
    """

    __slots__ = ("_minute", "_quiet", "cfg")

    def __init__(self, cfg: PatientConfig) -> None:
        self.cfg = cfg
        self._minute: int | None = None
        self._quiet = False

    def __call__(self, utc_ns: int) -> bool:
        if not self.cfg.quiet_hours:
            return False
        minute = utc_ns // 60_000_000_000
        if minute != self._minute:
            self._minute = minute
            self._quiet = in_quiet_hours(self.cfg, utc_ns)
        return self._quiet


# The settings a therapist sets by name (``spinewatch config set key=value``): the one list of
# them, which the codec's key sets below and the command line read.
SETTING_KEYS: Final = ("threshold_deg", "severe_deg", "hysteresis_deg", "min_duration_s", "timezone")
HAPTIC_SETTING_KEYS: Final = ("delay_s", "pattern", "intensity_pct", "duration_ms", "min_interval_s",
                              "response_window_s")
_TOP_KEYS: Final = {"v", *SETTING_KEYS, "haptic", "quiet_hours", "alerts_off_activities", "author", "set_ns",
                    "neutral_up_sensor", "mount_yaw_deg", "calibrated_ns"}
_HAPTIC_KEYS: Final = {"enabled", *HAPTIC_SETTING_KEYS}


def decode_patient_config(payload: bytes | str) -> PatientConfig:
    """Parse and validate a ``config`` message.

    Raises:
        ConfigError: naming the key, the value and what is allowed (bad JSON, version,
            unknown key, wrong type or range).
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ConfigError("config", f"{len(payload)} bytes", f"at most {MAX_PAYLOAD_BYTES} bytes")
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError("config", str(payload[:60]), f"a JSON object ({exc})") from None
    if not isinstance(obj, dict):
        raise ConfigError("config", obj, "a JSON object")
    if obj.get("v", VERSION) != VERSION:
        raise ConfigError("v", obj.get("v"), f"{VERSION}")
    unknown = set(obj) - _TOP_KEYS
    if unknown:
        k = min(unknown)
        raise ConfigError(k, obj[k], f"a known key: {', '.join(sorted(_TOP_KEYS))}")
    h = obj.get("haptic", {})
    if not isinstance(h, dict):
        raise ConfigError("haptic", h, "a JSON object")
    unknown = set(h) - _HAPTIC_KEYS
    if unknown:
        k = min(unknown)
        raise ConfigError(f"haptic.{k}", h[k], f"a known key: {', '.join(sorted(_HAPTIC_KEYS))}")
    qh = obj.get("quiet_hours", [])
    if not isinstance(qh, list):
        raise ConfigError("quiet_hours", qh, 'a list of ["HH:MM", "HH:MM"] pairs')
    acts = obj.get("alerts_off_activities", [])
    if not isinstance(acts, list):
        raise ConfigError("alerts_off_activities", acts, "a list of activity names")
    top = {k: v for k, v in obj.items()
           if k in ("threshold_deg", "severe_deg", "hysteresis_deg", "min_duration_s", "timezone", "author", "set_ns",
                    "neutral_up_sensor", "mount_yaw_deg", "calibrated_ns")}
    return PatientConfig(haptic=HapticConfig(**h),
                         quiet_hours=tuple(tuple(w) if isinstance(w, list) else w for w in qh),
                         alerts_off_activities=tuple(acts), **top)


def encode_patient_config(cfg: PatientConfig) -> bytes:
    """The JSON for ``cfg`` (what the therapist side publishes, retained)."""
    d: dict[str, Any] = asdict(cfg)
    d["quiet_hours"] = [list(w) for w in cfg.quiet_hours]
    d["alerts_off_activities"] = list(cfg.alerts_off_activities)
    if cfg.neutral_up_sensor is not None:
        d["neutral_up_sensor"] = [round(x, 6) for x in cfg.neutral_up_sensor]
    return json.dumps({"v": VERSION, **d}, separators=(",", ":")).encode()
