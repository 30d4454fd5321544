"""Health checks of a SpineWatch installation: broker, InfluxDB, Grafana, Bluetooth (BlueZ).

Each check returns :class:`Check` results: OK, WARN (works, or is not configured, but
something deserves attention) or FAIL (SpineWatch cannot work like this), with the address
checked and, when not OK, the cause and the fix. Nothing here prints (``cli/doctor.py`` does) or
reads the environment (the CLI passes the settings in). Every network call has a short
timeout, so a dead server costs seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from typing import Final, Literal

from spinewatch.firmware_bridge.bluez import (
    BLUEZ_SERVICE,
    DEFAULT_SYSTEM_BUS,
    FIX_DENIED,
    FIX_NO_ADAPTER,
    FIX_NO_BLUEZ,
    FIX_NO_SYSTEM_BUS,
    FIX_POWERED_OFF,
)
from spinewatch.service.config import InfluxConfig, MqttConfig, redact_url
from spinewatch.service.transport.neterrors import network_reason

Status = Literal["OK", "WARN", "FAIL"]
CHECKS: Final = ("config", "broker", "influxdb", "grafana", "bluetooth")
# Every network step waits at most this long by default: servers on a LAN answer in ms.
DEFAULT_TIMEOUT_S: Final = 3.0
# `spinewatch influx init` creates these (spinewatch/service/storage/influx1_schema.py).
INFLUX_RETENTION_POLICIES: Final = ("raw", "trend")
INFLUX_CONTINUOUS_QUERIES: Final = ("posture_1m", "slouch_copy")

# loopback and LAN checks must not go through an HTTP proxy from the environment
_HTTP: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's answer.

    Attributes:
        name: which component (one of CHECKS).
        status: OK, WARN or FAIL.
        address: what was checked (URL, host:port, D-Bus address), without credentials.
        message: what was found.
        fix: what to do about it (empty when OK).
    """

    name: str
    status: Status
    address: str
    message: str
    fix: str = ""

    def __post_init__(self) -> None:  # an address given with user:password@ is printed without the password
        object.__setattr__(self, "address", redact_url(self.address))

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name:<9}  {self.address}: {self.message}"
        return f"{text} -> {self.fix}" if self.fix else text

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _reason(exc: BaseException) -> str:
    """A short human cause of a connection error."""
    return network_reason(exc)


# --------------------------------------------------------------------------- config


def check_config(error: Exception | None, source: str) -> Check:
    """The result of loading the typed config (the CLI loads it; ``error`` is what it raised)."""
    if error is None:
        return Check("config", "OK", source, "loaded and valid")
    return Check("config", "FAIL", source, str(error),
                 "correct that value (every key and its default: config.example.toml)")


# --------------------------------------------------------------------------- MQTT broker


def check_broker(cfg: MqttConfig, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Check]:
    """The one MQTT probe (:func:`spinewatch.service.transport.mqtt.probe`): TCP, TLS, then CONNECT (5, else
    3.1.1) with the configured login, as ``ingest`` and ``bridge`` will connect."""
    from spinewatch.service.transport.mqtt import describe_login, probe  # noqa: PLC0415  (paho only when checked)

    if not cfg.url:
        return [Check("broker", "WARN", "SPINEWATCH_MQTT_URL", "not set (only the demo runs without it: it starts "
                      "a private broker)", "set SPINEWATCH_MQTT_URL=mqtt://HOST:1883 for ingest, bridge and config")]
    addr = cfg.address
    result = probe(cfg, timeout_s)
    last = result.last
    if last.tls_failed:
        return [Check("broker", "FAIL", addr, last.detail,
                      "mqtts:// needs a TLS listener on that port; a private CA goes in SPINEWATCH_MQTT_CA_FILE "
                      "(mqtt.ca_file)")]
    if not last.reachable:
        return [Check("broker", "FAIL", addr, f"not reachable: {last.detail}",
                      "start the broker (systemctl start mosquitto, or docker compose up -d in deploy/) "
                      "or correct SPINEWATCH_MQTT_URL")]
    login = describe_login(cfg)
    if last.accepted and len(result.attempts) > 1:
        return [Check("broker", "WARN", addr, f"MQTT 3.1.1 accepted ({login}), MQTT 5 refused "
                      f"({result.attempts[0].detail})",
                      "works; for shared subscriptions (several ingest workers) use an MQTT 5 broker "
                      "such as Mosquitto 2")]
    if last.accepted:
        return [Check("broker", "OK", addr, f"MQTT {last.protocol} accepted, {login} accepted")]
    if last.login_refused:
        fix = ("check the user:password in SPINEWATCH_MQTT_URL against the broker's password file "
               "(mosquitto_passwd)" if cfg.username else
               "the broker wants a login: SPINEWATCH_MQTT_URL=mqtt://USER:PASSWORD@HOST:PORT")
        return [Check("broker", "FAIL", addr, f"MQTT {last.protocol}: {login} refused (CONNACK: {last.detail})", fix)]
    refusals = "; ".join(f"MQTT {h.protocol} refused ({h.detail})" for h in result.attempts)
    fix = ("set SPINEWATCH_MQTT_PROTOCOL=auto (or the version the broker speaks)" if cfg.protocol != "auto" else
           "is it an MQTT broker? check the port in SPINEWATCH_MQTT_URL, and mqtts:// for a TLS listener")
    return [Check("broker", "FAIL", addr, refusals, fix)]


def check_broker_drops(cfg: MqttConfig, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Check]:
    """Whether the broker has dropped acknowledged messages (Mosquitto's retained $SYS counter).

    FAIL when it has (data the bridges consider delivered never reached the ingest worker);
    WARN when the broker does not publish the counter (the drops cannot be seen from here).
    """
    from spinewatch.errors import ConnectionFailed  # noqa: PLC0415
    from spinewatch.service.storage.transit import BROKER_DROP_FIX, BROKER_DROPPED_TOPIC  # noqa: PLC0415
    from spinewatch.service.transport.mqtt import Protocol, read_retained  # noqa: PLC0415  (paho only when checked)

    # the client set-up every command uses (login, TLS, CA file); any broker that speaks MQTT 5 speaks 3.1.1
    protocol: Protocol = "3.1.1" if cfg.protocol == "auto" else cfg.protocol
    try:
        payload = read_retained(cfg, protocol, BROKER_DROPPED_TOPIC, "spinewatch-doctor", timeout_s)
    except (ConnectionFailed, OSError, ValueError) as exc:
        return [Check("broker", "WARN", cfg.address, f"{BROKER_DROPPED_TOPIC} not read: {_reason(exc)}",
                      "check the broker's dropped-message count by hand")]
    try:
        dropped = int((payload or b"").decode().strip())
    except (KeyError, UnicodeDecodeError, ValueError):
        return [Check("broker", "WARN", cfg.address, f"the broker does not publish {BROKER_DROPPED_TOPIC}: messages it "
                      "drops for slow subscribers cannot be seen here", "watch the broker's own metrics for dropped "
                      "messages; the ingest's /metrics counts messages lost in transit (transit_lost_messages)")]
    if dropped > 0:
        return [Check("broker", "FAIL", cfg.address, f"the broker has dropped {dropped} acknowledged messages since it "
                      f"started ({BROKER_DROPPED_TOPIC})", BROKER_DROP_FIX)]
    return [Check("broker", "OK", cfg.address, f"no message dropped since the broker started ({BROKER_DROPPED_TOPIC})")]


# --------------------------------------------------------------------------- InfluxDB


def _http(method: str, url: str, timeout_s: float, headers: dict[str, str] | None = None,
          body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body); HTTP errors are returned, connection errors raised (OSError/URLError)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _HTTP.open(req, timeout=timeout_s) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers or {}), exc.read()


def _influx_error(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace").strip()
    if isinstance(doc, dict):
        if "error" in doc:
            return str(doc["error"])
        if "message" in doc:
            return str(doc["message"])
        for res in doc.get("results", []):
            if "error" in res:
                return str(res["error"])
    return ""


def check_influx(cfg: InfluxConfig, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Check]:
    """/ping; then (1.x) database, write and query permission, retention policies and continuous
    queries of ``spinewatch influx init``; (2.x/3.x) token, bucket and its DBRP mapping."""
    if cfg.kind == "none":
        return [Check("influxdb", "WARN", "SPINEWATCH_INFLUX_URL", "not set: ingest --sqlite, report and export use "
                      "the local SQLite store; Grafana dashboards need InfluxDB",
                      "set SPINEWATCH_INFLUX_URL and SPINEWATCH_INFLUX_DB (1.x) or _ORG/_BUCKET/_TOKEN (2.x/3.x)")]
    url = cfg.url.rstrip("/")
    try:
        status, headers, _ = _http("GET", f"{url}/ping", timeout_s)
    except (OSError, urllib.error.URLError) as exc:
        return [Check("influxdb", "FAIL", url, f"not reachable: {_reason(exc)}",
                      "start InfluxDB (systemctl start influxdb, or docker compose up -d in deploy/) "
                      "or correct SPINEWATCH_INFLUX_URL")]
    if status != 204:
        return [Check("influxdb", "FAIL", url, f"/ping answered HTTP {status}, not 204",
                      "is it InfluxDB? check the port in SPINEWATCH_INFLUX_URL (InfluxDB's default is 8086)")]
    version = {k.lower(): v for k, v in headers.items()}.get("x-influxdb-version", "unknown version")
    out = [Check("influxdb", "OK", url, f"/ping: InfluxDB {version}")]
    try:
        out += _influx1(cfg, url, timeout_s) if cfg.kind == "v1" else _influx2(cfg, url, timeout_s)
    except (OSError, urllib.error.URLError) as exc:
        out.append(Check("influxdb", "FAIL", url, f"stopped answering: {_reason(exc)}",
                         "look at InfluxDB's log (journalctl -u influxdb)"))
    return out


def _influx1(cfg: InfluxConfig, url: str, timeout_s: float) -> list[Check]:
    auth = {"u": cfg.username, "p": cfg.password} if cfg.username else {}
    db = cfg.db
    where = f"{url} db {db!r}"

    def query(q: str, with_db: bool = True) -> tuple[int, bytes]:
        qs = urllib.parse.urlencode({**auth, "q": q, **({"db": db} if with_db else {})})
        status, _, body = _http("GET", f"{url}/query?{qs}", timeout_s)
        return status, body

    status, body = query("SHOW DATABASES", with_db=False)
    if status in (401, 403):
        who = f"user {cfg.username!r}" if cfg.username else "anonymous access"
        return [Check("influxdb", "FAIL", url, f"{who} refused (HTTP {status}: {_influx_error(body)})",
                      "check SPINEWATCH_INFLUX_USERNAME and SPINEWATCH_INFLUX_PASSWORD" if cfg.username else
                      "the server has auth enabled: set SPINEWATCH_INFLUX_USERNAME and SPINEWATCH_INFLUX_PASSWORD")]
    if status != 200:
        return [Check("influxdb", "FAIL", url, f"SHOW DATABASES: HTTP {status}: {_influx_error(body)}",
                      "look at InfluxDB's log")]
    names = {row[0] for s in json.loads(body)["results"][0].get("series", []) for row in s.get("values", [])}
    if db not in names:
        return [Check("influxdb", "FAIL", where, "database does not exist (or this user may not see it)",
                      "run `spinewatch influx init` (creates it with its retention policies), or correct "
                      "SPINEWATCH_INFLUX_DB")]
    out: list[Check] = []
    # An empty /write is authorised and checked against the database like a real one, and stores nothing.
    qs = urllib.parse.urlencode({**auth, "db": db, "precision": "ns"})
    status, _, body = _http("POST", f"{url}/write?{qs}", timeout_s, body=b"")
    if status == 204:
        write_ok = True
    else:
        write_ok = False
        out.append(Check("influxdb", "FAIL", where, f"write refused (HTTP {status}: {_influx_error(body)})",
                         f"GRANT WRITE ON \"{db}\" TO \"{cfg.username}\" (ingest needs write)" if cfg.username
                         else "look at InfluxDB's log"))
    status, body = query('SHOW MEASUREMENTS LIMIT 1')
    err = _influx_error(body) if status == 200 else f"HTTP {status}: {_influx_error(body)}"
    if err:
        out.append(Check("influxdb", "FAIL", where, f"query refused ({err})",
                         f"GRANT READ ON \"{db}\" TO \"{cfg.username}\" (report, export and Grafana read)"
                         if cfg.username else "look at InfluxDB's log"))
    elif write_ok:
        out.append(Check("influxdb", "OK", where, "exists; write and query allowed"))
    status, body = query(f'SHOW RETENTION POLICIES ON "{db}"')
    rps = {row[0]: row for s in json.loads(body)["results"][0].get("series", []) for row in s.get("values", [])} \
        if status == 200 else {}
    status, body = query("SHOW CONTINUOUS QUERIES", with_db=False)
    cqs = {row[0] for s in (json.loads(body)["results"][0].get("series", []) if status == 200 else [])
           if s.get("name") == db for row in s.get("values", [])}
    missing = [f"retention policy {r!r}" for r in INFLUX_RETENTION_POLICIES if r not in rps]
    missing += [f"continuous query {c!r}" for c in INFLUX_CONTINUOUS_QUERIES if c not in cqs]
    if missing:
        out.append(Check("influxdb", "WARN", where, f"missing {', '.join(missing)}: raw samples are kept forever and "
                         "trend dashboards and long reports have no per-minute data",
                         "run `spinewatch influx init --backfill`"))
    else:
        raw_duration = rps["raw"][1] if len(rps["raw"]) > 1 else "?"
        out.append(Check("influxdb", "OK", where, f"retention policies raw ({raw_duration}) and trend, "
                         "continuous queries posture_1m and slouch_copy present"))
    return out


def _influx2(cfg: InfluxConfig, url: str, timeout_s: float) -> list[Check]:
    """InfluxDB 2.x/3.x: token and bucket (API v2), and the DBRP mapping the InfluxQL reads need.
    Not exercised by the test suite (no 2.x server there)."""
    headers = {"Authorization": f"Token {cfg.token}"}
    where = f"{url} bucket {cfg.bucket!r}"
    qs = urllib.parse.urlencode({"name": cfg.bucket, "org": cfg.org})
    status, _, body = _http("GET", f"{url}/api/v2/buckets?{qs}", timeout_s, headers)
    if status in (401, 403):
        return [Check("influxdb", "FAIL", url, f"token refused (HTTP {status}: {_influx_error(body)})",
                      "set SPINEWATCH_INFLUX_TOKEN to a token with read and write access to the bucket")]
    if status != 200 or not json.loads(body).get("buckets"):
        return [Check("influxdb", "FAIL", where, f"bucket not found in org {cfg.org!r} (HTTP {status})",
                      "create it (influx bucket create --name BUCKET) or correct SPINEWATCH_INFLUX_BUCKET/_ORG")]
    qs = urllib.parse.urlencode({"db": cfg.bucket, "q": "SHOW MEASUREMENTS LIMIT 1"})
    status, _, body = _http("GET", f"{url}/query?{qs}", timeout_s, headers)
    err = _influx_error(body) if status == 200 else f"HTTP {status}: {_influx_error(body)}"
    if err:
        return [Check("influxdb", "FAIL", where, f"InfluxQL query failed ({err})",
                      "create the DBRP mapping: influx v1 dbrp create --db BUCKET --rp raw --bucket-id ID "
                      "--default (docs/storage.md)")]
    return [Check("influxdb", "OK", where, "token accepted, bucket exists, InfluxQL (DBRP) answers")]


# --------------------------------------------------------------------------- Grafana


def check_grafana(url: str, token: str, datasource_uid: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Check]:
    """/api/health, then the token (a search) and the SpineWatch data source (``grafana push``)."""
    if not url:
        return [Check("grafana", "WARN", "GRAFANA_URL", "not set: Grafana not checked",
                      "set GRAFANA_URL (and GRAFANA_TOKEN) to check the Grafana that `spinewatch grafana push` fills")]
    from spinewatch.errors import ConfigError  # noqa: PLC0415
    from spinewatch.service.dashboards.grafana_push import check_url  # noqa: PLC0415  (the one rule for Grafana URLs)

    try:
        url = check_url(url, "GRAFANA_URL")
    except ConfigError as exc:
        return [Check("grafana", "FAIL", "GRAFANA_URL", str(exc), "give the scheme: http://HOST:3000 or https://HOST")]
    try:
        status, _, body = _http("GET", f"{url}/api/health", timeout_s)
    except (OSError, urllib.error.URLError) as exc:
        return [Check("grafana", "FAIL", url, f"not reachable: {_reason(exc)}",
                      "start Grafana (systemctl start grafana-server, or docker compose up -d in deploy/) "
                      "or correct GRAFANA_URL")]
    try:
        health = json.loads(body)
    except ValueError:
        health = {}
    if status != 200 or health.get("database") != "ok":
        return [Check("grafana", "FAIL", url, f"/api/health: HTTP {status}, database {health.get('database')!r}",
                      "is it Grafana? look at Grafana's log (its database must be reachable)")]
    out = [Check("grafana", "OK", url, f"/api/health: Grafana {health.get('version', '?')}, database ok")]
    if not token:
        out.append(Check("grafana", "WARN", url, "no token: the API token was not checked",
                         "set GRAFANA_TOKEN to a service-account token (Editor role) for `spinewatch grafana push`"))
        return out
    auth = {"Authorization": f"Bearer {token}"}
    status, _, body = _http("GET", f"{url}/api/search?limit=1", timeout_s, auth)
    if status != 200:
        out.append(Check("grafana", "FAIL", url, f"token refused (HTTP {status}: {_influx_error(body)})",
                         "create a service-account token (Administration > Users and access > Service accounts, "
                         "Editor role) and put it in GRAFANA_TOKEN"))
        return out
    status, _, _ = _http("GET", f"{url}/api/datasources/uid/{urllib.parse.quote(datasource_uid)}", timeout_s, auth)
    if status == 200:
        out.append(Check("grafana", "OK", url, f"token accepted; data source {datasource_uid!r} present"))
    else:
        out.append(Check("grafana", "WARN", url, f"token accepted; data source {datasource_uid!r} missing "
                         f"(HTTP {status})", "run `spinewatch grafana push`"))
    return out


# --------------------------------------------------------------------------- Bluetooth (BlueZ)


async def _bluez(bus_address: str, timeout_s: float) -> list[Check]:
    from dbus_fast import AuthError, BusType, InvalidAddressError, Message, MessageType
    from dbus_fast.aio import MessageBus

    try:
        async with asyncio.timeout(timeout_s):
            bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    except (OSError, TimeoutError, AuthError, InvalidAddressError) as exc:
        return [Check("bluetooth", "FAIL", bus_address, f"D-Bus system bus not reachable: {_reason(exc)}",
                      FIX_NO_SYSTEM_BUS)]
    try:
        async with asyncio.timeout(timeout_s):
            reply = await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                           interface="org.freedesktop.DBus", member="NameHasOwner",
                                           signature="s", body=[BLUEZ_SERVICE]))
            if not (reply.body and reply.body[0]):
                return [Check("bluetooth", "FAIL", bus_address, "BlueZ (org.bluez) is not running on the system bus",
                              FIX_NO_BLUEZ)]
            reply = await bus.call(Message(destination=BLUEZ_SERVICE, path="/", member="GetManagedObjects",
                                           interface="org.freedesktop.DBus.ObjectManager"))
    except TimeoutError:
        return [Check("bluetooth", "FAIL", bus_address, f"BlueZ did not answer within {timeout_s:g} s",
                      "systemctl restart bluetooth")]
    finally:
        bus.disconnect()
    if reply.message_type != MessageType.METHOD_RETURN:
        return [Check("bluetooth", "FAIL", bus_address, f"BlueZ refused GetManagedObjects: {reply.error_name}",
                      FIX_DENIED)]
    adapters = []
    for path, ifaces in sorted(reply.body[0].items()):
        a = ifaces.get("org.bluez.Adapter1")
        if a is not None:
            powered = bool(getattr(a.get("Powered"), "value", False))
            address = str(getattr(a.get("Address"), "value", "?"))
            adapters.append((path.rsplit("/", 1)[-1], address, powered))
    if not adapters:
        return [Check("bluetooth", "FAIL", bus_address, "BlueZ runs but there is no Bluetooth adapter",
                      FIX_NO_ADAPTER)]
    names = ", ".join(f"{n} ({a}) {'powered' if p else 'off'}" for n, a, p in adapters)
    if not any(p for _, _, p in adapters):
        return [Check("bluetooth", "FAIL", bus_address, f"no adapter is powered: {names}",
                      FIX_POWERED_OFF)]
    return [Check("bluetooth", "OK", bus_address, f"BlueZ answers; adapter {names}")]


def check_bluetooth(bus_address: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Check]:
    """BlueZ over the D-Bus system bus: reachable, an adapter present and powered (Linux only).

    Args:
        bus_address: the system bus address (``DBUS_SYSTEM_BUS_ADDRESS``, as bleak uses it), for messages.
    """
    if not sys.platform.startswith("linux"):
        return [Check("bluetooth", "WARN", sys.platform, "the adapter check covers BlueZ (Linux) only; bleak uses "
                      "the system's own Bluetooth stack here", "run `spinewatch bridge scan` to see sensors")]
    return asyncio.run(_bluez(bus_address or DEFAULT_SYSTEM_BUS, timeout_s))
