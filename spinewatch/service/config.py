"""One typed configuration: defaults < TOML file < environment variables, validated at start."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args, get_type_hints

from spinewatch.errors import ConfigError
from spinewatch.firmware_bridge.ble_config import BleConfig

# The default posture settings: the one place in service/ that writes them. PostureConfig,
# PatientConfig, the dashboards' zone variables and the reports read these; signal's
# PostureParams and ZoneLimits carry the same numbers (tests/test_config.py checks they agree).
DEFAULT_THRESHOLD_DEG: Final = 20.0  # flexion above neutral that starts a slouch, degrees
DEFAULT_SEVERE_DEG: Final = 30.0  # flexion above neutral from which a slouch is severe, degrees
DEFAULT_HYSTERESIS_DEG: Final = 5.0  # a slouch ends below threshold - hysteresis, degrees
DEFAULT_MIN_DURATION_S: Final = 30.0  # shortest slouch reported, seconds

# What stands for a password in every URL SpineWatch prints.
REDACTED: Final = "***"


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: the only form of a URL fit for a message.

    Works on malformed URLs too (a bad port, a missing host), which are exactly the ones that
    end up in error messages.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user}{':' + REDACTED if colon else ''}@{hostport}{slash}{path}"


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """MQTT connection.

    Attributes:
        url: ``mqtt://[user:password@]host[:port]`` (``mqtts://`` for TLS). Empty: the demo
            starts a private broker; ``ingest`` requires a URL. Printed only as
            :attr:`address` or :func:`redact_url` (never with its password).
        ca_file: PEM file of the CA certificate(s) that signed the broker's TLS certificate
            (``mqtts://``), e.g. a private CA; empty: the system's trusted CAs.
        protocol: ``5``, ``3.1.1``, or ``auto`` (MQTT 5 if the broker accepts it).
        qos: delivery guarantee of posture and event messages (1 = at least once).
        keepalive_s: MQTT keep-alive, seconds.
        session_expiry_s: how long the broker keeps a disconnected client's session, seconds.
        max_inflight: unacknowledged QoS 1 publishes in flight per connection.
        share_group: ingest workers subscribe via ``$share/<group>/...`` (MQTT 5) to split the
            load; empty (default): a plain subscription, for a single worker. Mosquitto 2.0.11
            does not restore shared subscriptions of offline sessions after a broker restart,
            so messages published before the worker reconnects would be lost there; use a
            group to scale out, on a broker that persists shared subscriptions.
    """

    url: str = ""
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    ca_file: str = ""
    qos: Literal[0, 1, 2] = 1
    keepalive_s: int = 30
    session_expiry_s: int = 86_400
    max_inflight: int = 100
    share_group: str = ""

    def __repr__(self) -> str:  # the dataclass repr would show the password in the URL
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.name != "url")
        return f"MqttConfig(url={redact_url(self.url)!r}, {fields})"

    @property
    def parsed(self) -> urllib.parse.SplitResult:
        return urllib.parse.urlsplit(self.url)

    @property
    def host(self) -> str:
        return self.parsed.hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        p = self.parsed
        return p.port or (8883 if p.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return self.parsed.scheme == "mqtts"

    @property
    def username(self) -> str | None:
        u = self.parsed.username
        return urllib.parse.unquote(u) if u else None

    @property
    def password(self) -> str | None:
        pw = self.parsed.password
        return urllib.parse.unquote(pw) if pw else None

    @property
    def address(self) -> str:
        """URL without credentials, for messages and logs."""
        return f"{self.parsed.scheme}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class InfluxConfig:
    """InfluxDB target. Give ``db`` for InfluxDB 1.x, or ``org``+``bucket``+``token`` for 2.x/3.x.

    Attributes:
        url: e.g. ``http://127.0.0.1:8086``. Empty: the local SQLite store is used.
        db: InfluxDB 1.x database (plain ``/write`` endpoint).
        org, bucket, token: InfluxDB 2.x/3.x/Cloud (influxdb-client).
        username, password: InfluxDB 1.x authentication, if enabled.
    """

    url: str = ""
    db: str = ""
    org: str = ""
    bucket: str = ""
    token: str = field(default="", repr=False)
    username: str = ""
    password: str = field(default="", repr=False)

    @property
    def kind(self) -> Literal["none", "v1", "v2"]:
        if not self.url:
            return "none"
        return "v1" if self.db else "v2"


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """Ingest worker.

    Attributes:
        worker_id: stable identity used in the MQTT client id, so a restarted worker resumes
            its session; empty: ``ingest-<hostname>``.
        batch_max_points: write to the database once this many points are pending.
        batch_interval_s: ... or once the oldest pending point waited this long, seconds ...
        batch_linger_s: ... or once no message arrived for this long, seconds.
        max_unacked: most MQTT messages held unacknowledged (MQTT 5 receive maximum).
        health_listen: ``host:port`` of the HTTP health endpoint (``/healthz``, ``/metrics``);
            empty: off.
        loss_check_s: how often the worker counts, from the database, the posture messages
            lost in transit (gaps in ``seq``; spinewatch/service/storage/transit.py), seconds; 0: never.
    """

    worker_id: str = ""
    batch_max_points: int = 50_000
    batch_interval_s: float = 1.0
    batch_linger_s: float = 0.05
    max_unacked: int = 1000
    health_listen: str = ""
    loss_check_s: float = 60.0

    @property
    def effective_worker_id(self) -> str:
        return self.worker_id or f"ingest-{socket.gethostname()}"


@dataclass(frozen=True, slots=True)
class PostureConfig:
    """Default posture settings (a patient's own config, once set, overrides them).

    Attributes:
        threshold_deg: flexion above neutral that starts a slouch, degrees.
        hysteresis_deg: a slouch ends below threshold - hysteresis, degrees.
        min_duration_s: shortest slouch reported, seconds.
        calibration_s: neutral-posture capture at stream start, seconds.
    """

    threshold_deg: float = DEFAULT_THRESHOLD_DEG
    hysteresis_deg: float = DEFAULT_HYSTERESIS_DEG
    min_duration_s: float = DEFAULT_MIN_DURATION_S
    calibration_s: float = 10.0


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """The bridge's store-and-forward queue.

    Attributes:
        outbox_dir: folder of the disk-backed outboxes (``SPINEWATCH_OUTBOX_DIR``): one SQLite
            file per (patient, device), ``<patient>+<device>.outbox.sqlite`` for its bridge and
            ``<patient>+<device>.therapist.sqlite`` for ``calibrate``/``config set``, each with
            a ``.lock`` beside it (:func:`spinewatch.service.bridge.outbox.outbox_path`); empty:
            ``~/.local/share/spinewatch`` (the demo: its ``--out`` folder).
        outbox_max_mb: payload megabytes the outbox keeps while the broker is unreachable;
            when full, the oldest posture messages are dropped (events are kept).
    """

    outbox_dir: str = ""
    outbox_max_mb: float = 200.0


@dataclass(frozen=True, slots=True)
class ReportConfig:
    """``spinewatch report`` (docs/reports.md).

    Attributes:
        min_wear_min: wear time that makes a local day a day with data (RTM), minutes.
        sqlite: SQLite store read when no InfluxDB is configured; empty: ``out/spinewatch.sqlite``
            (the demo's store).
    """

    min_wear_min: float = 1.0
    sqlite: str = ""


@dataclass(frozen=True, slots=True)
class Config:
    """Everything SpineWatch reads from the outside world, loaded once by the CLI."""

    mqtt: MqttConfig = field(default_factory=MqttConfig)
    influx: InfluxConfig = field(default_factory=InfluxConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    posture: PostureConfig = field(default_factory=PostureConfig)
    bridge: BridgeConfig = field(default_factory=BridgeConfig)
    ble: BleConfig = field(default_factory=BleConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, path: str | Path | None = None) -> Config:
        """Build the config from an optional TOML file and the environment.

        Args:
            env: environment (default ``os.environ``); ``SPINEWATCH_CONFIG`` names a TOML file.
            path: TOML file; overrides ``SPINEWATCH_CONFIG``.

        Raises:
            ConfigError: naming the key, the value and what is allowed.
        """
        env = os.environ if env is None else env
        sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
        source = "--config" if path else "SPINEWATCH_CONFIG"  # what the user set, for the message
        path = path or env.get("SPINEWATCH_CONFIG") or None
        if path:
            p = Path(path)
            data = _read_toml(p, source)
            for sec, values in data.items():
                if sec not in _SECTIONS:
                    raise ConfigError(sec, "(section)", f"one of [{'], ['.join(_SECTIONS)}]")
                if not isinstance(values, dict):
                    raise ConfigError(sec, values, "a [section] table")
                for key, value in values.items():
                    if (sec, key) in RETIRED_KEYS:
                        logging.getLogger(__name__).warning("%s: %s.%s = %r is no longer used: %s", p, sec, key,
                                                            value, RETIRED_KEYS[(sec, key)])
                        continue
                    sections[sec][key] = _coerce(_SECTIONS[sec], f"{sec}.{key}", key, value)
        for var, (sec, key) in ENV_VARS.items():
            if var in env and env[var] != "":
                sections[sec][key] = _coerce(_SECTIONS[sec], var, key, env[var])
        cfg = cls(**{sec: _SECTIONS[sec](**vals) for sec, vals in sections.items()})
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Cross-field checks, in the style of Telegraf's ``Init()``."""
        m = self.mqtt
        if m.url:
            p = m.parsed
            shown = redact_url(m.url)
            if p.scheme not in ("mqtt", "mqtts") or not p.hostname:
                raise ConfigError("SPINEWATCH_MQTT_URL", shown, "mqtt://host[:port] or mqtts://host[:port] "
                                  "(user:password@ before the host for a login)")
            try:
                mqtt_port = p.port
            except ValueError:
                mqtt_port = 0
            if mqtt_port == 0:  # urlsplit accepts port 0, and raises (with the URL in it) for others
                raise ConfigError("SPINEWATCH_MQTT_URL", shown, "a port number 1-65535") from None
        if m.ca_file and not Path(m.ca_file).is_file():
            raise ConfigError("mqtt.ca_file", m.ca_file, "an existing PEM file of CA certificates (or empty)")
        for key, val in (("keepalive_s", m.keepalive_s), ("max_inflight", m.max_inflight)):
            if val <= 0:
                raise ConfigError(f"mqtt.{key}", val, "an integer > 0")
        if m.session_expiry_s < 0:
            raise ConfigError("mqtt.session_expiry_s", m.session_expiry_s, "an integer >= 0")
        i = self.influx
        if i.url:
            p = urllib.parse.urlsplit(i.url)
            if p.scheme not in ("http", "https") or not p.hostname:
                raise ConfigError("SPINEWATCH_INFLUX_URL", redact_url(i.url), "http://host:port or https://host:port")
            if not i.db and not (i.org and i.bucket and i.token):
                raise ConfigError(
                    "SPINEWATCH_INFLUX_DB", i.db,
                    "a database name (InfluxDB 1.x), or set SPINEWATCH_INFLUX_ORG, "
                    "SPINEWATCH_INFLUX_BUCKET and SPINEWATCH_INFLUX_TOKEN (2.x/3.x)",
                )
        g = self.ingest
        if g.batch_max_points <= 0:
            raise ConfigError("ingest.batch_max_points", g.batch_max_points, "an integer > 0")
        if not g.batch_interval_s > 0:
            raise ConfigError("ingest.batch_interval_s", g.batch_interval_s, "a number > 0")
        if not 0 <= g.batch_linger_s <= g.batch_interval_s:
            raise ConfigError("ingest.batch_linger_s", g.batch_linger_s, "a number in [0, batch_interval_s]")
        if g.max_unacked <= 0 or g.max_unacked > 65535:
            raise ConfigError("ingest.max_unacked", g.max_unacked, "an integer 1-65535")
        if not 0 <= g.loss_check_s <= 86_400:
            raise ConfigError("ingest.loss_check_s", g.loss_check_s, "seconds in [0, 86400] (0: off)")
        if g.health_listen:
            host, _, port = g.health_listen.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError("ingest.health_listen", g.health_listen, "host:port, e.g. 127.0.0.1:9108")
        if g.worker_id and not all(c.isalnum() or c in "-_." for c in g.worker_id):
            raise ConfigError("SPINEWATCH_WORKER_ID", g.worker_id, "letters, digits, - _ .")
        s = self.posture
        if not 0 < s.threshold_deg < 90:
            raise ConfigError("posture.threshold_deg", s.threshold_deg, "a number in (0, 90)")
        if not 0 <= s.hysteresis_deg < s.threshold_deg:
            raise ConfigError("posture.hysteresis_deg", s.hysteresis_deg, "a number in [0, threshold_deg)")
        if s.min_duration_s < 0:
            raise ConfigError("posture.min_duration_s", s.min_duration_s, "a number >= 0")
        if not s.calibration_s > 0:
            raise ConfigError("posture.calibration_s", s.calibration_s, "a number > 0")
        if not self.bridge.outbox_max_mb > 0:
            raise ConfigError("bridge.outbox_max_mb", self.bridge.outbox_max_mb, "a number > 0")
        r = self.report
        if not 0 <= r.min_wear_min <= 1440:
            raise ConfigError("report.min_wear_min", r.min_wear_min, "a number of minutes in [0, 1440]")


_SECTIONS: Final[dict[str, type]] = {
    "mqtt": MqttConfig,
    "influx": InfluxConfig,
    "ingest": IngestConfig,
    "posture": PostureConfig,
    "bridge": BridgeConfig,
    "ble": BleConfig,
    "report": ReportConfig,
}

# Keys that once had a meaning and now have none: a config file still setting one loads, with
# a warning saying why the value is ignored (refusing to start would stop an ingest or a report
# over a setting that can no longer change anything).
RETIRED_KEYS: Final[dict[tuple[str, str], str]] = {
    ("report", "rate_hz"): "wear time now comes from each posture message's own sample period "
                           "(dt_ns), whatever the sensor's rate (docs/reports.md); remove the line",
}

# Environment variable -> (section, key). These names are a contract (issue #3, #6).
ENV_VARS: Final[dict[str, tuple[str, str]]] = {
    "SPINEWATCH_MQTT_URL": ("mqtt", "url"),
    "SPINEWATCH_MQTT_PROTOCOL": ("mqtt", "protocol"),
    "SPINEWATCH_MQTT_CA_FILE": ("mqtt", "ca_file"),
    "SPINEWATCH_INFLUX_URL": ("influx", "url"),
    "SPINEWATCH_INFLUX_DB": ("influx", "db"),
    "SPINEWATCH_INFLUX_ORG": ("influx", "org"),
    "SPINEWATCH_INFLUX_BUCKET": ("influx", "bucket"),
    "SPINEWATCH_INFLUX_TOKEN": ("influx", "token"),
    "SPINEWATCH_INFLUX_USERNAME": ("influx", "username"),
    "SPINEWATCH_INFLUX_PASSWORD": ("influx", "password"),
    "SPINEWATCH_WORKER_ID": ("ingest", "worker_id"),
    "SPINEWATCH_HEALTH_LISTEN": ("ingest", "health_listen"),
    "SPINEWATCH_OUTBOX_DIR": ("bridge", "outbox_dir"),
}


def _read_toml(p: Path, source: str) -> dict[str, Any]:
    """The TOML file ``p``; ConfigError names ``source`` (``--config`` or ``SPINEWATCH_CONFIG``) and the fix."""
    try:
        text = p.read_text(encoding="utf-8")  # TOML is UTF-8 by definition
    except FileNotFoundError:
        raise ConfigError(source, str(p), "an existing TOML file (every key: config.example.toml)") from None
    except IsADirectoryError:
        raise ConfigError(source, str(p), "a TOML file, not a directory") from None
    except PermissionError:
        raise ConfigError(source, str(p), "a TOML file this user may read (check its permissions)") from None
    except OSError as exc:
        raise ConfigError(source, str(p), f"a readable TOML file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, str(p), f"a UTF-8 text file (TOML); byte {exc.start} is not UTF-8 "
                          "(save it as UTF-8)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), "(file)", f"valid TOML ({exc})") from None


def _coerce(section_cls: type, key_name: str, key: str, value: object) -> object:
    """Convert ``value`` to the type of ``section_cls.key``; ConfigError names ``key_name``."""
    fields = {f.name for f in dataclasses.fields(section_cls)}
    if key not in fields:
        secret = any(word in key.lower() for word in ("pass", "token", "secret"))  # a misspelt password key
        raise ConfigError(key_name, REDACTED if secret else value, f"a known key: {', '.join(sorted(fields))}")
    hint = get_type_hints(section_cls)[key]
    choices = get_args(hint) if getattr(hint, "__origin__", None) is Literal else ()
    if choices:
        for c in choices:
            if str(c) == str(value):
                return c
        raise ConfigError(key_name, value, "one of " + ", ".join(str(c) for c in choices))
    try:
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)  # type: ignore[call-overload]
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            f = float(value)  # type: ignore[arg-type]
            if not math.isfinite(f):
                raise ValueError
            return f
        if hint is bool:
            if isinstance(value, bool):
                return value
            s = str(value).lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off"):
                return False
            raise ValueError
    except (TypeError, ValueError) as exc:
        kind = {int: "an integer", float: "a finite number", bool: "true or false"}[hint]
        raise ConfigError(key_name, value, kind) from exc
    if not isinstance(value, str):
        raise ConfigError(key_name, value, "a string")
    return value
