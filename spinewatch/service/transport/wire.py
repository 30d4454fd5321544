"""Wire format v1: MQTT topics and JSON payload codec (see docs/wire-format.md)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import orjson

from spinewatch.errors import DecodeError
from spinewatch.model import Calibration, HapticAlert, PostureBatch, SlouchEvent

WIRE_VERSION: Final = 1
TOPIC_ROOT: Final = "spinewatch/v1"
KINDS: Final = ("posture", "event", "status", "config", "imu")
Kind = Literal["posture", "event", "status", "config", "imu"]

# Ids are pseudonymous tokens: no MQTT wildcards, no '/', no spaces, nothing to escape
# in InfluxDB line protocol tags.
_ID_RE: Final = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Bigger payloads are refused: 10 s of 100 Hz samples is ~15 KB; 1 MiB leaves wide margin.
MAX_PAYLOAD_BYTES: Final = 1 << 20
# Most samples per posture message (10 min at 100 Hz); bounds memory per message.
MAX_SAMPLES: Final = 60_000
# Sensor-derived timestamps must lie between 2000-01-01 and 2100-01-01 (UTC ns).
MIN_TIME_NS: Final = 946_684_800 * 10**9
MAX_TIME_NS: Final = 4_102_444_800 * 10**9
# Angles are sent with 0.01 deg resolution: far below sensor accuracy, keeps payloads small.
ANGLE_DECIMALS: Final = 2


DEADLETTER_ROOT: Final = "spinewatch/deadletter"


def deadletter_topic(reason: str) -> str:
    """``spinewatch/deadletter/{reason}``: where refused messages are republished."""
    return f"{DEADLETTER_ROOT}/{reason}"


def encode_deadletter(topic: str, payload: bytes, reason: str, detail: str, worker: str) -> bytes:
    """A refused message, kept for inspection: original topic, reason, payload (base64)."""
    import base64  # noqa: PLC0415 - only on the rare refused message

    return orjson.dumps({
        "v": WIRE_VERSION, "reason": reason, "detail": detail[:500], "topic": topic[:1000],
        "worker": worker, "payload_b64": base64.b64encode(payload).decode(),
    })


def check_id(name: str, value: str) -> str:
    """Return ``value`` if it is a valid patient/device id, else raise ValueError naming it."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ValueError(
            f"{name} must be 1-64 characters of A-Z a-z 0-9 _ . -, got {value!r}"
        )
    return value


def topic(patient: str, device: str, kind: Kind) -> str:
    """``spinewatch/v1/{patient}/{device}/{kind}``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return f"{TOPIC_ROOT}/{check_id('patient', patient)}/{check_id('device', device)}/{kind}"


def subscription(group: str | None = None) -> str:
    """Topic filter for every patient, device and kind; a shared subscription if ``group``."""
    f = f"{TOPIC_ROOT}/+/+/+"
    return f"$share/{group}/{f}" if group else f


def parse_topic(t: str) -> tuple[str, str, str]:
    """Split a v1 topic into ``(patient, device, kind)``.

    Raises:
        DecodeError: reason ``bad_topic`` if it is not a v1 topic.
    """
    parts = t.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != TOPIC_ROOT or parts[4] not in KINDS:
        raise DecodeError("bad_topic", t[:200])
    if not _ID_RE.match(parts[2]) or not _ID_RE.match(parts[3]):
        raise DecodeError("bad_topic", t[:200])
    return parts[2], parts[3], parts[4]


def _round_list(x: npt.NDArray[np.float64]) -> list[float | None]:
    r = np.round(np.asarray(x, dtype=np.float64), ANGLE_DECIMALS)
    out: list[float | None] = r.tolist()
    if not np.all(np.isfinite(r)):
        out = [v if math.isfinite(v) else None for v in out]  # type: ignore[arg-type]
    return out


# ``seq`` counts a bridge's posture messages from 1; ``seq_epoch`` names the counter (the
# bridge's outbox), so that a counter restarted at 1 is told apart from lost messages.
MAX_SEQ: Final = 2**53  # exact in every JSON reader (IEEE doubles)


def encode_posture(b: PostureBatch, seq: int | None = None, seq_epoch: int | None = None) -> bytes:
    """JSON payload of a posture message. Non-finite angles are sent as ``null``.

    Args:
        b: the samples.
        seq: the message's number in its bridge's counter (1, 2, ...), for loss accounting.
        seq_epoch: id of that counter (0 < id < 2**53); a new id means ``seq`` restarted.
    """
    msg: dict[str, object] = {
        "v": WIRE_VERSION,
        "t0_ns": int(b.t0_ns),
        "dt_ns": int(b.dt_ns),
        "flexion_deg": _round_list(b.flexion_deg),
        "lateral_deg": _round_list(b.lateral_deg),
    }
    if len(b.state):
        msg["state"] = np.asarray(b.state, dtype=np.int64).tolist()
    if len(b.activity):
        msg["activity"] = np.asarray(b.activity, dtype=np.int64).tolist()
    if seq is not None:
        msg["seq"] = int(seq)
    if seq_epoch is not None:
        msg["seq_epoch"] = int(seq_epoch)
    return orjson.dumps(msg)


def encode_event(e: SlouchEvent) -> bytes:
    """JSON payload of a slouch event message (``mean_deg`` left out when None)."""
    msg: dict[str, object] = {
        "v": WIRE_VERSION,
        "kind": "slouch",
        "start_ns": int(e.start_ns),
        "end_ns": int(e.end_ns),
        "peak_deg": round(float(e.peak_deg), ANGLE_DECIMALS),
    }
    if e.mean_deg is not None:
        msg["mean_deg"] = round(float(e.mean_deg), ANGLE_DECIMALS)
    return orjson.dumps(msg)


def encode_alert(a: HapticAlert) -> bytes:
    """JSON payload of a haptic alert event (sent once its outcome is known)."""
    msg: dict[str, object] = {
        "v": WIRE_VERSION, "kind": "alert", "t_ns": int(a.t_ns),
        "flexion_deg": round(float(a.flexion_deg), ANGLE_DECIMALS), "corrected": bool(a.corrected),
    }
    if a.response_s is not None:
        msg["response_s"] = round(float(a.response_s), 3)
    return orjson.dumps(msg)


def encode_calibration(c: Calibration) -> bytes:
    """JSON payload of a calibration event."""
    msg: dict[str, object] = {
        "v": WIRE_VERSION, "kind": "calibration", "t_ns": int(c.t_ns),
        "up_sensor": [round(float(x), 6) for x in c.up_sensor],
        "mount_yaw_deg": None if c.mount_yaw_deg is None else round(float(c.mount_yaw_deg), ANGLE_DECIMALS),
        "gyr_rms_deg_s": round(float(c.gyr_rms_deg_s), 4), "acc_std_m_s2": round(float(c.acc_std_m_s2), 4),
        "duration_s": round(float(c.duration_s), 3), "author": c.author,
    }
    return orjson.dumps(msg)


@dataclass(frozen=True, slots=True)
class RecordMsg:
    """One point of a small measurement (``alert``, ``calibration``): fields at ``t_ns``.

    Field values are float, int or str; a field keeps one type for good (InfluxDB refuses a
    type change), so ints are only used for counts and flags.
    """

    measurement: str
    patient: str
    device: str
    t_ns: int
    fields: dict[str, float | int | str]


@dataclass(frozen=True, slots=True)
class PostureMsg:
    """A decoded posture message (arrays as float64 / int8, NaN where the sender sent null)."""

    patient: str
    device: str
    t0_ns: int
    dt_ns: int
    flexion_deg: npt.NDArray[np.float64]
    lateral_deg: npt.NDArray[np.float64]
    state: npt.NDArray[np.int8] | None
    activity: npt.NDArray[np.int8] | None
    seq: int | None = None  # the bridge's message counter (docs/wire-format.md), if sent
    seq_epoch: int | None = None  # id of that counter, if sent

    def __len__(self) -> int:
        return len(self.flexion_deg)


def _load(payload: bytes) -> dict[str, object]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise DecodeError("oversized", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("bad_json", str(exc)[:200]) from exc
    if not isinstance(obj, dict):
        raise DecodeError("not_object", type(obj).__name__)
    v = obj.get("v")
    if v != WIRE_VERSION or isinstance(v, bool):
        raise DecodeError("bad_version", repr(v)[:50])
    return obj


def _int(obj: dict[str, object], key: str) -> int:
    v = obj.get(key)
    if v is None:
        raise DecodeError("missing_field", key)
    if not isinstance(v, int) or isinstance(v, bool):
        raise DecodeError("bad_type", f"{key} must be an integer")
    return v


def _time(obj: dict[str, object], key: str) -> int:
    v = _int(obj, key)
    if not MIN_TIME_NS <= v <= MAX_TIME_NS:
        raise DecodeError("absurd_timestamp", f"{key}={v}")
    return v


_NUMBER_OR_NULL: Final = frozenset({float, int, type(None)})
_INT_ONLY: Final = frozenset({int})


def _angles(obj: dict[str, object], key: str) -> npt.NDArray[np.float64]:
    v = obj.get(key)
    if v is None:
        raise DecodeError("missing_field", key)
    if not isinstance(v, list):
        raise DecodeError("bad_type", f"{key} must be an array")
    if len(v) > MAX_SAMPLES:
        raise DecodeError("oversized", f"{key} has {len(v)} samples > {MAX_SAMPLES}")
    # exact types: numpy would silently turn True into 1.0 and "1.5" into 1.5
    if not set(map(type, v)) <= _NUMBER_OR_NULL:  # C-speed type scan
        raise DecodeError("bad_type", f"{key} must hold numbers or null")
    arr = np.array(v, dtype=np.float64)  # null -> NaN
    if np.any(np.abs(arr) > 360.0):
        raise DecodeError("out_of_range", f"{key} beyond +/-360 deg")
    return arr


def _codes(obj: dict[str, object], key: str, n: int) -> npt.NDArray[np.int8] | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, list) or not set(map(type, v)) <= _INT_ONLY:
        raise DecodeError("bad_type", f"{key} must be an array of small integers")
    if len(v) != n:
        raise DecodeError("length_mismatch", f"{key} has {len(v)} samples, flexion_deg {n}")
    arr = np.array(v, dtype=np.int64)
    if n and (arr.min() < 0 or arr.max() > 127):
        raise DecodeError("out_of_range", f"{key} values must be 0..127")
    return arr.astype(np.int8)


def decode_posture(patient: str, device: str, payload: bytes) -> PostureMsg:
    """Decode and validate a posture payload.

    Raises:
        DecodeError: with reason bad_json, not_object, bad_version, missing_field, bad_type,
            length_mismatch, absurd_timestamp, out_of_range or oversized.
    """
    obj = _load(payload)
    t0 = _time(obj, "t0_ns")
    dt = _int(obj, "dt_ns")
    if not 0 < dt <= 10**10:
        raise DecodeError("out_of_range", f"dt_ns={dt} not in (0, 1e10]")
    flex = _angles(obj, "flexion_deg")
    lat = _angles(obj, "lateral_deg")
    if len(flex) != len(lat):
        raise DecodeError("length_mismatch", f"flexion_deg {len(flex)} != lateral_deg {len(lat)}")
    if t0 + dt * len(flex) > MAX_TIME_NS:
        raise DecodeError("absurd_timestamp", "last sample after 2100")
    return PostureMsg(
        patient, device, t0, dt, flex, lat,
        _codes(obj, "state", len(flex)), _codes(obj, "activity", len(flex)),
        _optional_counter(obj, "seq"), _optional_counter(obj, "seq_epoch"),
    )


def _optional_counter(obj: dict[str, object], key: str) -> int | None:
    """``obj[key]`` as an int in [1, 2**53) if present (DecodeError ``bad_type`` otherwise)."""
    if key not in obj:
        return None
    v = obj[key]
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v < MAX_SEQ:
        raise DecodeError("bad_type", f"{key} must be an integer in [1, 2**53)")
    return v


def _number(obj: dict[str, object], key: str, limit: float) -> float:
    """``obj[key]`` as a float within +/-``limit`` (DecodeError ``bad_type`` otherwise)."""
    v = obj.get(key)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not abs(v) <= limit:
        raise DecodeError("bad_type", f"{key} must be a number within +/-{limit:g}")
    return float(v)


def _optional_number(obj: dict[str, object], key: str, limit: float) -> float | None:
    """As :func:`_number`, but an absent or null ``key`` is None."""
    return None if obj.get(key) is None else _number(obj, key, limit)


def _decode_alert(patient: str, device: str, obj: dict[str, object]) -> RecordMsg:
    t = _time(obj, "t_ns")
    corrected = obj.get("corrected")
    if not isinstance(corrected, bool):
        raise DecodeError("bad_type", "corrected must be true or false")
    fields: dict[str, float | int | str] = {
        "flexion_deg": _number(obj, "flexion_deg", 360.0), "corrected": int(corrected)}
    response = _optional_number(obj, "response_s", 86_400.0)
    if response is not None:
        if response < 0:
            raise DecodeError("out_of_range", "response_s must be >= 0")
        fields["response_s"] = response
    return RecordMsg("alert", patient, device, t, fields)


def _decode_calibration(patient: str, device: str, obj: dict[str, object]) -> RecordMsg:
    t = _time(obj, "t_ns")
    up = obj.get("up_sensor")
    if not (isinstance(up, list) and len(up) == 3 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in up)):
        raise DecodeError("bad_type", "up_sensor must be an array of 3 numbers")
    norm = math.sqrt(sum(float(x) ** 2 for x in up))
    if not 0.99 <= norm <= 1.01:
        raise DecodeError("out_of_range", f"up_sensor must be a unit vector (norm {norm:.3f})")
    fields: dict[str, float | int | str] = {"up_x": float(up[0]), "up_y": float(up[1]), "up_z": float(up[2])}
    yaw = _optional_number(obj, "mount_yaw_deg", 180.0)
    if yaw is not None:
        fields["mount_yaw_deg"] = yaw
    for key, limit in (("gyr_rms_deg_s", 4000.0), ("acc_std_m_s2", 1000.0), ("duration_s", 3600.0)):
        v = _optional_number(obj, key, limit)
        if v is not None:
            fields[key] = v
    author = obj.get("author", "")
    if not isinstance(author, str) or len(author) > 64:
        raise DecodeError("bad_type", "author must be a string of at most 64 characters")
    fields["author"] = author
    return RecordMsg("calibration", patient, device, t, fields)


def decode_event(patient: str, device: str, payload: bytes) -> SlouchEvent | RecordMsg:
    """Decode and validate an event payload: ``kind`` is ``slouch`` (a :class:`SlouchEvent`, the
    same type the bridge sent; ``mean_deg`` None if absent), ``alert`` or ``calibration``.

    Raises:
        DecodeError: as :func:`decode_posture`, plus ``unknown_event``.
    """
    obj = _load(payload)
    kind = obj.get("kind")
    if kind == "alert":
        return _decode_alert(patient, device, obj)
    if kind == "calibration":
        return _decode_calibration(patient, device, obj)
    if kind != "slouch":
        raise DecodeError("unknown_event", repr(kind)[:50])
    start = _time(obj, "start_ns")
    end = _time(obj, "end_ns")
    if end < start:
        raise DecodeError("out_of_range", "end_ns before start_ns")
    peak = _number(obj, "peak_deg", 360.0)
    mean = _optional_number(obj, "mean_deg", 360.0)
    return SlouchEvent(patient, device, start, end, peak, mean)


@dataclass(frozen=True, slots=True)
class StatusMsg:
    """A decoded device status: numeric and boolean fields (booleans as 0/1), at ``t_ns``."""

    patient: str
    device: str
    t_ns: int
    fields: dict[str, float]


_FIELD_RE: Final = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_STATUS_FIELDS: Final = 32  # a status is a handful of counters; more is not a status


def decode_status(patient: str, device: str, payload: bytes, now_ns: int) -> StatusMsg:
    """Decode a ``status`` payload: ``{"v": 1, "online": bool, <name>: number|bool, ...}``.

    Numbers and booleans become float fields (one type per field, so InfluxDB never sees a
    type conflict); strings and nested values are not stored. Time: the payload's ``t_ns``
    if given, else ``now_ns`` (when the worker received it).

    Raises:
        DecodeError: as :func:`decode_posture`, and ``bad_type`` without an ``online`` flag.
    """
    obj = _load(payload)
    if not isinstance(obj.get("online"), bool):
        raise DecodeError("bad_type", "online must be true or false")
    t = _time(obj, "t_ns") if "t_ns" in obj else now_ns
    fields: dict[str, float] = {}
    for k, v in obj.items():
        if k in ("v", "t_ns") or not _FIELD_RE.match(k):
            continue
        if isinstance(v, bool):
            fields[k] = 1.0 if v else 0.0
        elif isinstance(v, (int, float)) and math.isfinite(v):
            fields[k] = float(v)
        if len(fields) >= MAX_STATUS_FIELDS:
            break
    return StatusMsg(patient, device, t, fields)


@dataclass(frozen=True, slots=True)
class ConfigMsg:
    """A patient's settings as set (audit): numeric fields, author, at ``t_ns``."""

    patient: str
    device: str
    t_ns: int
    fields: dict[str, float]
    author: str
    timezone: str = "UTC"


Inbound = PostureMsg | SlouchEvent | StatusMsg | ConfigMsg | RecordMsg
"""Any decoded message the ingest worker stores."""
