"""`spinewatch doctor` against real servers: what passes, and what fails with which fix.

Mosquitto and InfluxDB 1.x are the real servers on free loopback ports (with password files
and auth where a test needs them); Bluetooth is BlueZoo on a private D-Bus, or a private
D-Bus without BlueZ; Grafana is a local HTTP endpoint answering like Grafana's API
(no Grafana server on the test machines, as in tests/test_grafana_push.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import uuid
from pathlib import Path

import pytest
from _http_fake import JsonApiFake
from servers import (
    InfluxDB1Server,
    MosquittoServer,
    free_port,
    http_request,
    start_or_skip,
    tcp_connectable,
)

from spinewatch.service.cli import main
from spinewatch.service.dashboards import DATASOURCE

pytestmark = pytest.mark.network

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or shutil.which("mosquitto_passwd", path="/usr/bin:/usr/sbin")
GRAFANA_TOKEN = "glsa_doctor-test-token"
ENV_VARS = ("SPINEWATCH_MQTT_URL", "SPINEWATCH_MQTT_PROTOCOL", "SPINEWATCH_INFLUX_URL", "SPINEWATCH_INFLUX_DB",
            "SPINEWATCH_INFLUX_USERNAME", "SPINEWATCH_INFLUX_PASSWORD", "SPINEWATCH_CONFIG", "GRAFANA_URL",
            "GRAFANA_TOKEN", "SPINEWATCH_INFLUX_ORG", "SPINEWATCH_INFLUX_BUCKET", "SPINEWATCH_INFLUX_TOKEN")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


def doctor(capsys, *args: str) -> tuple[int, dict[str, list[str]]]:
    """Run the command; return its exit status and its check lines by component name."""
    capsys.readouterr()
    rc = main(["doctor", "--timeout", "2", *args])
    lines: dict[str, list[str]] = {}
    for line in capsys.readouterr().out.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[0] in ("OK", "WARN", "FAIL"):
            lines.setdefault(parts[1], []).append(line)
    return rc, lines


def closed_port() -> int:
    port = free_port()
    assert not tcp_connectable("127.0.0.1", port)
    return port


# ------------------------------------------------------------------------ Grafana stand-in


class FakeGrafana(JsonApiFake):
    """/api/health, /api/search and /api/datasources/uid/{uid} as Grafana answers them."""

    def __init__(self, datasource: bool = True) -> None:
        super().__init__(f"Bearer {GRAFANA_TOKEN}", {"message": "invalid API key"}, frozenset({"/api/health"}))
        self.datasource = datasource

    def route(self, method: str, path: str, query: dict, body: object) -> tuple[int, object]:
        if path == "/api/health":
            return 200, {"commit": "abc", "database": "ok", "version": "11.3.0"}
        if path == "/api/search":
            return 200, []
        if path == f"/api/datasources/uid/{DATASOURCE['uid']}" and self.datasource:
            return 200, {"uid": DATASOURCE["uid"], "type": "influxdb"}
        return 404, {"message": "Data source not found"}


# ------------------------------------------------------------------------ everything passes


@pytest.fixture
def initialised_influx(influxdb1, monkeypatch, capsys):
    db = f"doc_{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("SPINEWATCH_INFLUX_URL", influxdb1.url)
    monkeypatch.setenv("SPINEWATCH_INFLUX_DB", db)
    assert main(["influx", "init"]) == 0
    return db


def test_everything_passes_against_real_servers(fresh_mosquitto, initialised_influx, monkeypatch, capsys):
    # a broker of its own: the session broker's $SYS dropped count holds every earlier test's history
    mosquitto = fresh_mosquitto
    monkeypatch.setenv("SPINEWATCH_MQTT_URL", mosquitto.url)
    with FakeGrafana() as grafana:
        monkeypatch.setenv("GRAFANA_URL", grafana.url)
        monkeypatch.setenv("GRAFANA_TOKEN", GRAFANA_TOKEN)
        rc, lines = doctor(capsys, "--skip", "bluetooth")
    assert rc == 0, lines
    assert all(line.startswith("OK") for ls in lines.values() for line in ls), lines
    assert set(lines) == {"config", "broker", "influxdb", "grafana"}
    assert "MQTT 5 accepted" in lines["broker"][0] and mosquitto.url in lines["broker"][0]
    influx = "\n".join(lines["influxdb"])
    assert "InfluxDB 1." in influx and "write and query allowed" in influx and "retention policies raw" in influx
    assert "data source 'spinewatch-influxdb' present" in "\n".join(lines["grafana"])


def test_json_output_lists_every_check(fresh_mosquitto, monkeypatch, capsys):
    monkeypatch.setenv("SPINEWATCH_MQTT_URL", fresh_mosquitto.url)
    capsys.readouterr()
    rc = main(["doctor", "--json", "--skip", "bluetooth", "--skip", "grafana"])
    checks = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert [(c["name"], c["status"]) for c in checks] == [("config", "OK"), ("broker", "OK"), ("broker", "OK"),
                                                          ("influxdb", "WARN")]
    assert "no message dropped since the broker started" in checks[2]["message"]
    assert checks[3]["fix"].startswith("set SPINEWATCH_INFLUX_URL")


# ------------------------------------------------------------------------ failures and their fixes


def test_closed_ports_fail_with_how_to_start_each_server(monkeypatch, capsys):
    m, i, g = closed_port(), closed_port(), closed_port()
    monkeypatch.setenv("SPINEWATCH_MQTT_URL", f"mqtt://127.0.0.1:{m}")
    monkeypatch.setenv("SPINEWATCH_INFLUX_URL", f"http://127.0.0.1:{i}")
    monkeypatch.setenv("SPINEWATCH_INFLUX_DB", "spinewatch")
    rc, lines = doctor(capsys, "--skip", "bluetooth", "--grafana-url", f"http://127.0.0.1:{g}")
    assert rc == 1
    assert lines["broker"] == [(f"FAIL  broker     mqtt://127.0.0.1:{m}: not reachable: connection refused -> start "
                                "the broker (systemctl start mosquitto, or docker compose up -d in deploy/) or correct "
                                "SPINEWATCH_MQTT_URL")]
    assert f"127.0.0.1:{i}: not reachable: connection refused" in lines["influxdb"][0]
    assert "systemctl start influxdb" in lines["influxdb"][0]
    assert f"127.0.0.1:{g}: not reachable: connection refused" in lines["grafana"][0]
    assert "systemctl start grafana-server" in lines["grafana"][0]


def test_a_bad_config_value_fails_and_the_servers_are_not_checked(monkeypatch, capsys):
    monkeypatch.setenv("SPINEWATCH_MQTT_URL", "http://127.0.0.1:1883")
    rc, lines = doctor(capsys, "--skip", "bluetooth", "--skip", "grafana")
    assert rc == 1
    assert "SPINEWATCH_MQTT_URL='http://127.0.0.1:1883' is not valid" in lines["config"][0]
    assert "not checked: the configuration does not load" in lines["broker"][0]
    assert lines["influxdb"][0].startswith("FAIL")


class PasswordMosquitto(MosquittoServer):
    """The harness's Mosquitto with anonymous access off and one user, ingest / pw-ok."""

    def _prepare(self) -> list[str]:
        cmd = super()._prepare()
        passwd = self.base_dir / "passwd"
        subprocess.run([MOSQUITTO_PASSWD, "-c", "-b", str(passwd), "ingest", "pw-ok"], check=True,
                       capture_output=True, timeout=10)
        conf = self.config_file.read_text().replace("allow_anonymous true",
                                                    f"allow_anonymous false\npassword_file {passwd}")
        self.config_file.write_text(conf)
        return cmd

    def _probe(self) -> bool:
        return tcp_connectable(self.host, self.port)


@pytest.fixture(scope="module")
def password_broker(tmp_path_factory):
    if MOSQUITTO_PASSWD is None:
        pytest.skip("mosquitto_passwd is needed (Debian package mosquitto)")
    server = start_or_skip(PasswordMosquitto, tmp_path_factory.mktemp("pw-mosquitto"))
    yield server
    server.stop()


@pytest.mark.parametrize(("login", "status", "text"), [
    ("ingest:pw-ok@", "OK", "MQTT 5 accepted, user 'ingest' accepted"),
    ("ingest:wrong@", "FAIL", "user 'ingest' refused (CONNACK: "),
    ("", "FAIL", "anonymous refused (CONNACK: "),
])
def test_broker_credentials(password_broker, monkeypatch, capsys, login, status, text):
    monkeypatch.setenv("SPINEWATCH_MQTT_URL", f"mqtt://{login}{password_broker.host}:{password_broker.port}")
    rc, lines = doctor(capsys, "--skip", "bluetooth", "--skip", "grafana", "--skip", "influxdb")
    line = lines["broker"][0]
    assert line.startswith(status) and text in line, line
    assert "pw-ok" not in line and "wrong" not in line  # no password in the output
    assert rc == (0 if status == "OK" else 1)
    if login == "ingest:wrong@":
        assert line.endswith("-> check the user:password in SPINEWATCH_MQTT_URL against the broker's password "
                             "file (mosquitto_passwd)")
    if login == "":
        assert line.endswith("-> the broker wants a login: SPINEWATCH_MQTT_URL=mqtt://USER:PASSWORD@HOST:PORT")


def test_a_missing_database_fails_with_influx_init(influxdb1, monkeypatch, capsys):
    monkeypatch.setenv("SPINEWATCH_INFLUX_URL", influxdb1.url)
    monkeypatch.setenv("SPINEWATCH_INFLUX_DB", f"absent_{uuid.uuid4().hex[:6]}")
    rc, lines = doctor(capsys, "--skip", "bluetooth", "--skip", "grafana", "--skip", "broker")
    assert rc == 1
    assert lines["influxdb"][0].startswith("OK") and "/ping" in lines["influxdb"][0]
    assert "database does not exist" in lines["influxdb"][1] and "spinewatch influx init" in lines["influxdb"][1]


def test_a_database_without_influx_init_warns(influxdb1, monkeypatch, capsys):
    db = f"bare_{uuid.uuid4().hex[:6]}"
    influxdb1.create_database(db)
    monkeypatch.setenv("SPINEWATCH_INFLUX_URL", influxdb1.url)
    monkeypatch.setenv("SPINEWATCH_INFLUX_DB", db)
    rc, lines = doctor(capsys, "--skip", "bluetooth", "--skip", "grafana", "--skip", "broker")
    assert rc == 0  # it works, but without downsampling
    assert [line.split()[0] for line in lines["influxdb"]] == ["OK", "OK", "WARN"]
    assert "missing retention policy 'raw', retention policy 'trend'" in lines["influxdb"][2]
    assert lines["influxdb"][2].endswith("-> run `spinewatch influx init --backfill`")


class AuthInfluxDB(InfluxDB1Server):
    """The harness's InfluxDB 1.x with authentication on."""

    def _prepare(self) -> list[str]:
        cmd = super()._prepare()
        self.config_file.write_text(self.config_file.read_text().replace("auth-enabled = false", "auth-enabled = true"))
        return cmd


@pytest.fixture(scope="module")
def auth_influx(tmp_path_factory):
    server = start_or_skip(AuthInfluxDB, tmp_path_factory.mktemp("auth-influx"))
    # the first user may be created without credentials, and must be an admin
    server.query("CREATE USER admin WITH PASSWORD 'adm-pw' WITH ALL PRIVILEGES")
    def admin(q: str) -> None:
        qs = urllib.parse.urlencode({"q": q, "u": "admin", "p": "adm-pw"})
        status, body = http_request("POST", f"{server.url}/query?{qs}", b"")
        assert status == 200 and b"error" not in body, body

    admin('CREATE DATABASE "clinic"')
    admin("CREATE USER reader WITH PASSWORD 'rd-pw'")
    admin('GRANT READ ON "clinic" TO "reader"')
    yield server
    server.stop()


@pytest.mark.parametrize(("user", "password", "want"), [
    ("admin", "adm-pw", ["OK", "OK", "WARN"]),
    ("admin", "nope", ["OK", "FAIL"]),
    ("", "", ["OK", "FAIL"]),
    ("reader", "rd-pw", ["OK", "FAIL", "WARN"]),
])
def test_influx_credentials_and_permissions(auth_influx, monkeypatch, capsys, user, password, want):
    monkeypatch.setenv("SPINEWATCH_INFLUX_URL", auth_influx.url)
    monkeypatch.setenv("SPINEWATCH_INFLUX_DB", "clinic")
    if user:
        monkeypatch.setenv("SPINEWATCH_INFLUX_USERNAME", user)
        monkeypatch.setenv("SPINEWATCH_INFLUX_PASSWORD", password)
    rc, lines = doctor(capsys, "--skip", "bluetooth", "--skip", "grafana", "--skip", "broker")
    got = lines["influxdb"]
    assert [line.split()[0] for line in got] == want, got
    assert rc == (1 if "FAIL" in want else 0)
    text = "\n".join(got)
    assert "nope" not in text and "rd-pw" not in text
    if password == "nope":
        assert "user 'admin' refused (HTTP 401" in got[1] and "check SPINEWATCH_INFLUX_USERNAME" in got[1]
    if not user:
        assert "anonymous access refused (HTTP 401" in got[1]
        assert got[1].endswith("set SPINEWATCH_INFLUX_USERNAME and SPINEWATCH_INFLUX_PASSWORD")
    if user == "reader":
        assert "write refused (HTTP 403" in got[1] and got[1].endswith('GRANT WRITE ON "clinic" TO "reader" '
                                                                      "(ingest needs write)")


def test_grafana_bad_token_and_missing_data_source(monkeypatch, capsys):
    with FakeGrafana(datasource=False) as grafana:
        monkeypatch.setenv("GRAFANA_URL", grafana.url)
        monkeypatch.setenv("GRAFANA_TOKEN", "glsa_revoked")
        rc, lines = doctor(capsys, "--skip", "bluetooth", "--skip", "broker", "--skip", "influxdb")
        assert rc == 1
        assert lines["grafana"][0].startswith("OK") and "Grafana 11.3.0, database ok" in lines["grafana"][0]
        assert "token refused (HTTP 401: invalid API key)" in lines["grafana"][1]
        assert "service-account token" in lines["grafana"][1] and "glsa_revoked" not in lines["grafana"][1]
        monkeypatch.setenv("GRAFANA_TOKEN", GRAFANA_TOKEN)
        rc, lines = doctor(capsys, "--skip", "bluetooth", "--skip", "broker", "--skip", "influxdb")
        assert rc == 0
        assert lines["grafana"][1].startswith("WARN")
        assert lines["grafana"][1].endswith("-> run `spinewatch grafana push`")


# ------------------------------------------------------------------------ Bluetooth


@pytest.fixture
def bluezoo(monkeypatch):
    fakes = pytest.importorskip("fakes.bluez_peripheral")
    try:
        world = fakes.BluezooWorld().__enter__()
    except fakes.BluezooUnavailable as exc:
        pytest.skip(f"BlueZoo test needs dbus-daemon and bluezoo: {exc}")
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", world.address)
    try:
        yield world
    finally:
        world.__exit__()


def _wait_for_bluez(address: str) -> None:
    import asyncio

    from dbus_fast import BusType
    from dbus_fast.aio import MessageBus
    from fakes.bluez_peripheral import wait_for_bluez

    async def go() -> None:
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            await wait_for_bluez(bus)
        finally:
            bus.disconnect()

    asyncio.run(go())


def test_bluetooth_adapter_present_and_powered(bluezoo, capsys):
    _wait_for_bluez(bluezoo.address)
    rc, lines = doctor(capsys, "--skip", "broker", "--skip", "influxdb", "--skip", "grafana")
    assert rc == 0, lines
    line = lines["bluetooth"][0]
    assert line.startswith("OK") and bluezoo.address in line
    assert "hci0 (00:AA:00:00:00:01) powered" in line


def test_bluetooth_adapter_switched_off_fails_with_power_on(bluezoo, capsys):
    import asyncio

    from dbus_fast import BusType, Message, Variant
    from dbus_fast.aio import MessageBus

    _wait_for_bluez(bluezoo.address)

    async def power_off() -> None:
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            for hci in ("hci0", "hci1"):
                await bus.call(Message(destination="org.bluez", path=f"/org/bluez/{hci}",
                                       interface="org.freedesktop.DBus.Properties", member="Set", signature="ssv",
                                       body=["org.bluez.Adapter1", "Powered", Variant("b", False)]))
        finally:
            bus.disconnect()

    asyncio.run(power_off())
    rc, lines = doctor(capsys, "--skip", "broker", "--skip", "influxdb", "--skip", "grafana")
    assert rc == 1
    assert "no adapter is powered: hci0 (00:AA:00:00:00:01) off" in lines["bluetooth"][0]
    assert lines["bluetooth"][0].endswith("-> bluetoothctl power on (and rfkill unblock bluetooth)")


@pytest.fixture
def bus_without_bluez(tmp_path, monkeypatch):
    daemon = shutil.which("dbus-daemon")
    if daemon is None:
        pytest.skip("dbus-daemon is needed (Debian package dbus-daemon)")
    from fakes.bluez_peripheral import _BUS_CONFIG

    sock = Path(f"/tmp/sw-doctor-{uuid.uuid4().hex[:8]}")  # short path: unix sockets allow ~100 bytes
    (tmp_path / "bus.conf").write_text(_BUS_CONFIG.format(path=sock))
    proc = subprocess.Popen([daemon, f"--config-file={tmp_path / 'bus.conf'}", "--nofork", "--nopidfile",
                             "--print-address"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # the daemon prints its address once it listens
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={sock}")
        yield f"unix:path={sock}"
    finally:
        proc.terminate()
        proc.wait(5)
        sock.unlink(missing_ok=True)


def test_a_bus_without_bluez_fails_with_how_to_start_it(bus_without_bluez, capsys):
    rc, lines = doctor(capsys, "--skip", "broker", "--skip", "influxdb", "--skip", "grafana")
    assert rc == 1
    assert lines["bluetooth"] == [(f"FAIL  bluetooth  {bus_without_bluez}: BlueZ (org.bluez) is not running on the "
                                   "system bus -> apt install bluez && systemctl start bluetooth")]


def test_no_system_bus_fails_with_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    rc, lines = doctor(capsys, "--skip", "broker", "--skip", "influxdb", "--skip", "grafana")
    assert rc == 1
    line = lines["bluetooth"][0]
    assert "D-Bus system bus not reachable: no such file or directory" in line
    assert "apt install dbus bluez && systemctl start dbus bluetooth" in line


def test_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["doctor", "--help"])
    assert exit_.value.code == 0
    assert "spinewatch doctor --skip bluetooth" in capsys.readouterr().out
