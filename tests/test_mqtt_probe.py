"""One MQTT handshake with the user's login and TLS (issue 12, section 4), through the real CLI.

The brokers are real: Mosquitto 2 with a password file (anonymous access off) on a plain and a
TLS listener (a certificate signed by a CA made for the test), and amqtt, a broker that speaks
MQTT 3.1.1 only (Mosquitto cannot be restricted to one version), with its own password file.
`doctor`, `config set`/`get` and `ingest` run as subprocesses and must all connect with the
configured login, in the version the broker speaks, and never print the password.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers import MosquittoServer, free_port, http_request, start_or_skip, tcp_connectable

from spinewatch.service.ops.embedded_broker import _amqtt_bound_port
from tests._waiting import wait_until

pytestmark = pytest.mark.network

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or shutil.which("mosquitto_passwd", path="/usr/bin:/usr/sbin")
OPENSSL = shutil.which("openssl") or "openssl"
USER, PASSWORD = "alice", "s3cret"
PATIENT, DEVICE = "p-probe", "d-probe"
CLI_TIMEOUT_S = 60.0
# a valid recording (it ships with the repository), so that bridge run gets as far as the broker URL
SHIPPED_RECORDING = Path(__file__).resolve().parents[1] / "data" / "recordings" / "broad-06-fast-rotation-75s.npz"


# --------------------------------------------------------------------------- brokers


def _write_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 / localhost signed by it (openssl): (ca.pem, cert.pem, key.pem)."""
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "cert.pem", directory / "key.pem", directory / "cert.csr"
    ext = directory / "server.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = critical, CA:FALSE\n"
                   "extendedKeyUsage = serverAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for argv in (
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=SpineWatch test CA"],
        ["req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
         "-extfile", ext],
    ):
        subprocess.run([OPENSSL, *map(str, argv)], check=True, capture_output=True, timeout=30)
    return ca, cert, key


class LoginMosquitto(MosquittoServer):
    """The harness's Mosquitto with anonymous access off, one user (alice), and a second, TLS listener."""

    def _prepare(self) -> list[str]:
        cmd = super()._prepare()
        passwd = self.base_dir / "passwd"
        subprocess.run([MOSQUITTO_PASSWD, "-c", "-b", str(passwd), USER, PASSWORD], check=True,
                       capture_output=True, timeout=10)
        self.ca_file, cert, key = _write_pki(self.base_dir)
        self.tls_port = free_port()
        conf = self.config_file.read_text().replace("allow_anonymous true",
                                                    f"allow_anonymous false\npassword_file {passwd}")
        conf += f"listener {self.tls_port} {self.host}\ncertfile {cert}\nkeyfile {key}\n"
        self.config_file.write_text(conf)
        return cmd

    def _probe(self) -> bool:
        return tcp_connectable(self.host, self.port) and tcp_connectable(self.host, self.tls_port)


@pytest.fixture(scope="module")
def login_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoginMosquitto]:
    if MOSQUITTO_PASSWD is None:
        pytest.skip("mosquitto_passwd is needed (Debian package mosquitto)")
    server = start_or_skip(LoginMosquitto, tmp_path_factory.mktemp("login-mosquitto"))
    yield server
    server.stop()


@dataclass(frozen=True)
class Amqtt311:
    host: str
    port: int


@pytest.fixture(scope="module")
def amqtt_311(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Amqtt311]:
    """amqtt (MQTT 3.1.1 only) on its own event loop in a thread, with a password file (alice only)."""
    from amqtt.broker import Broker
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    passwd = tmp_path_factory.mktemp("amqtt") / "passwd"
    passwd.write_text(f"{USER}:{PasswordHash((Argon2Hasher(),)).hash(PASSWORD)}\n")
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, object] = {}

    async def start() -> None:
        broker = Broker({"listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:0"}},
                         "plugins": {"amqtt.plugins.authentication.FileAuthPlugin": {"password_file": str(passwd)}}},
                        loop=loop)
        await broker.start()
        box["broker"], box["port"] = broker, _amqtt_bound_port(broker)

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:  # noqa: BLE001 - reported to the fixture below
            box["error"] = exc
        ready.set()
        if "error" not in box:
            loop.run_forever()

    thread = threading.Thread(target=run, name="amqtt-311", daemon=True)
    thread.start()
    assert ready.wait(30), "amqtt did not start"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    yield Amqtt311("127.0.0.1", int(box["port"]))  # type: ignore[call-overload]
    asyncio.run_coroutine_threadsafe(box["broker"].shutdown(), loop).result(30)  # type: ignore[attr-defined]
    loop.call_soon_threadsafe(loop.stop)
    thread.join(30)


# --------------------------------------------------------------------------- the CLI


def _env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPINEWATCH_", "GRAFANA_"))}
    return {**env, "SPINEWATCH_MQTT_URL": url, **extra}


def spinewatch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spinewatch", *args], env=env, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, check=False)


def _broker_line(doctor_out: str) -> str:
    return next(line for line in doctor_out.splitlines() if line.split()[1:2] == ["broker"])


@dataclass(frozen=True)
class Case:
    url: str
    extra_env: dict[str, str]
    protocol: str
    doctor_line: str


@pytest.fixture(params=["mosquitto-login", "mosquitto-login-tls", "amqtt-3.1.1-login"])
def case(request: pytest.FixtureRequest) -> Case:
    if request.param == "amqtt-3.1.1-login":
        b = request.getfixturevalue("amqtt_311")
        return Case(f"mqtt://{USER}:{PASSWORD}@{b.host}:{b.port}", {}, "3.1.1",
                    f"WARN  broker     mqtt://{b.host}:{b.port}: MQTT 3.1.1 accepted (user 'alice'), MQTT 5 refused")
    m = request.getfixturevalue("login_mosquitto")
    if request.param == "mosquitto-login":
        return Case(f"mqtt://{USER}:{PASSWORD}@{m.host}:{m.port}", {}, "5",
                    f"OK    broker     mqtt://{m.host}:{m.port}: MQTT 5 accepted, user 'alice' accepted")
    return Case(f"mqtts://{USER}:{PASSWORD}@{m.host}:{m.tls_port}", {"SPINEWATCH_MQTT_CA_FILE": str(m.ca_file)}, "5",
                f"OK    broker     mqtts://{m.host}:{m.tls_port}: MQTT 5 accepted, user 'alice' accepted")


def _subscribed(health_listen: str) -> bool:
    try:
        _status, body = http_request("GET", f"http://{health_listen}/healthz", timeout=2)
    except OSError:
        return False
    return bool(json.loads(body).get("subscribed"))


def _stored_thresholds(db: Path) -> list[float]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db) as con:
            rows = con.execute("SELECT fields FROM patient_config WHERE patient = ?", (PATIENT,)).fetchall()
    except sqlite3.OperationalError:  # the worker has not created its tables yet
        return []
    return [json.loads(f).get("threshold_deg") for (f,) in rows]


def test_every_command_connects_with_the_login_in_the_version_the_broker_speaks(case: Case, tmp_path: Path) -> None:
    """doctor, ingest and config set/get all probe with alice's login (and TLS): same version, no warning."""
    env = _env(case.url, **case.extra_env)
    doctor = spinewatch(env, "doctor", "--timeout", "5", "--skip", "influxdb", "--skip", "grafana",
                        "--skip", "bluetooth")
    assert _broker_line(doctor.stdout).startswith(case.doctor_line), doctor.stdout
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr

    db = tmp_path / "ingest.sqlite"
    health = f"127.0.0.1:{free_port()}"
    ingest = subprocess.Popen([sys.executable, "-m", "spinewatch", "ingest", "--sqlite", str(db)],
                              env={**env, "SPINEWATCH_HEALTH_LISTEN": health},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # only live config messages are stored, not the retained one replayed at subscription
        wait_until(lambda: _subscribed(health), 30, "the ingest worker to subscribe")
        threshold = 27.5
        put = spinewatch(env, "config", "set", "--patient", PATIENT, "--device", DEVICE, f"threshold_deg={threshold}")
        assert put.returncode == 0, put.stderr
        got = spinewatch(env, "config", "get", "--patient", PATIENT, "--device", DEVICE)
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["threshold_deg"] == threshold
        wait_until(lambda: threshold in _stored_thresholds(db), 30, "the ingest worker to store the config")
    finally:
        ingest.send_signal(signal.SIGTERM)
        out, err = ingest.communicate(timeout=30)
    assert ingest.returncode == 0, err
    first = err.splitlines()[0]
    assert first.startswith("ingest ") and f"(MQTT {case.protocol}) -> sqlite:" in first, err
    for res_err in (doctor.stderr, put.stderr, got.stderr, err):
        # the probe used the login: no "cannot probe ... assuming MQTT 5", no refusal
        assert "WARNING" not in res_err and "Traceback" not in res_err, res_err
    everything = doctor.stdout + doctor.stderr + put.stdout + put.stderr + got.stdout + got.stderr + out + err
    assert PASSWORD not in everything


def test_a_wrong_password_is_named_by_user_and_never_printed(login_mosquitto: LoginMosquitto) -> None:
    m = login_mosquitto
    env = _env(f"mqtt://{USER}:wr0ngpass@{m.host}:{m.port}")
    res = spinewatch(env, "-vv", "config", "get", "--patient", PATIENT, "--device", DEVICE, "--timeout", "2")
    assert res.returncode == 1
    # Mosquitto 2.0 answers a wrong password with "Not authorized", later versions "Bad user name or password"
    assert f"MQTT broker mqtt://{m.host}:{m.port} refused user 'alice' (" in res.stderr
    assert res.stderr.rstrip().splitlines()[-1].startswith(f"spinewatch: cannot reach mqtt://{m.host}:{m.port}")
    assert "wr0ngpass" not in res.stdout + res.stderr and "Traceback" not in res.stderr


def test_tls_with_an_untrusted_certificate_says_which_setting_to_set(login_mosquitto: LoginMosquitto) -> None:
    m = login_mosquitto
    env = _env(f"mqtts://{USER}:{PASSWORD}@{m.host}:{m.tls_port}")  # no CA file: the test CA is not trusted
    res = spinewatch(env, "doctor", "--timeout", "3", "--skip", "influxdb", "--skip", "grafana", "--skip", "bluetooth")
    line = _broker_line(res.stdout)
    assert res.returncode == 1
    assert line.startswith(f"FAIL  broker     mqtts://{m.host}:{m.tls_port}: TLS failed (certificate not trusted"), line
    assert "SPINEWATCH_MQTT_CA_FILE" in line and PASSWORD not in res.stdout + res.stderr


# --------------------------------------------------------------------------- no password, ever

BAD_PORT_URL = f"mqtt://{USER}:{PASSWORD}@127.0.0.1:99999"


@pytest.mark.parametrize("command", [
    ["doctor", "--skip", "bluetooth", "--skip", "grafana"],
    ["ingest", "--sqlite", "x.sqlite"],
    ["bridge", "run", "--replay", str(SHIPPED_RECORDING), "--patient", "p1"],
    ["demo", "--duration", "1m"],
    ["config", "get", "--patient", "p1", "--device", "d1"],
    ["calibrate", "--patient", "p1", "--device", "d1"],
], ids=lambda c: " ".join(c[:2]))
def test_an_invalid_broker_url_is_one_line_without_the_password(command: list[str], tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "spinewatch", "-vv", *command], env=_env(BAD_PORT_URL),
                         capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False, cwd=tmp_path)
    assert res.returncode != 0
    assert PASSWORD not in res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert "SPINEWATCH_MQTT_URL='mqtt://alice:***@127.0.0.1:99999' is not valid: a port number 1-65535" \
        in res.stdout + res.stderr


def test_an_unreachable_broker_is_reported_without_the_password(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    env = _env(f"mqtt://{USER}:{PASSWORD}@127.0.0.1:{port}")
    doctor = spinewatch(env, "-vv", "doctor", "--skip", "bluetooth", "--skip", "grafana", "--skip", "influxdb")
    assert doctor.returncode == 1 and "not reachable: connection refused" in doctor.stdout
    get = spinewatch(env, "-vv", "config", "get", "--patient", "p1", "--device", "d1", "--timeout", "1")
    assert get.returncode == 1 and f"cannot reach mqtt://127.0.0.1:{port}" in get.stderr
    ingest = subprocess.Popen([sys.executable, "-m", "spinewatch", "-vv", "ingest", "--sqlite", str(tmp_path / "i.db")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    assert ingest.stderr is not None
    watchdog = threading.Timer(CLI_TIMEOUT_S, ingest.kill)  # never hang the suite on a silent worker
    watchdog.start()
    for line in ingest.stderr:  # read until the worker said where it connects, then stop it
        lines.append(line)
        if line.startswith("ingest "):
            break
    ingest.send_signal(signal.SIGTERM)
    out, err = ingest.communicate(timeout=30)
    watchdog.cancel()
    text = "".join(lines) + err + out
    assert f"cannot probe MQTT broker mqtt://127.0.0.1:{port}" in text and "connection refused" in text
    for res_text in (doctor.stdout + doctor.stderr, get.stdout + get.stderr, text):
        assert PASSWORD not in res_text and "Traceback" not in res_text


def test_configs_and_their_errors_never_show_a_password() -> None:
    from spinewatch.errors import ConfigError
    from spinewatch.service.config import Config, redact_url

    cfg = Config.load({"SPINEWATCH_MQTT_URL": f"mqtts://{USER}:{PASSWORD}@broker.example.org:8883",
                       "SPINEWATCH_INFLUX_URL": "http://127.0.0.1:8086", "SPINEWATCH_INFLUX_DB": "d",
                       "SPINEWATCH_INFLUX_PASSWORD": "influx-pw", "SPINEWATCH_INFLUX_TOKEN": "tok-secret"})
    shown = repr(cfg)
    assert PASSWORD not in shown and "influx-pw" not in shown and "tok-secret" not in shown
    assert "mqtts://alice:***@broker.example.org:8883" in shown
    assert redact_url("mqtt://a%2Fb:p@ss:w@h:1/x") == "mqtt://a%2Fb:***@h:1/x"
    assert redact_url("mqtt://h:1") == "mqtt://h:1" and redact_url("not a url") == "not a url"
    with pytest.raises(ConfigError) as info:
        Config.load({"SPINEWATCH_INFLUX_URL": f"ftp://{USER}:{PASSWORD}@h:8086", "SPINEWATCH_INFLUX_DB": "d"})
    assert PASSWORD not in str(info.value) and "ftp://alice:***@h:8086" in str(info.value)


def test_doctor_and_the_stores_print_influx_and_grafana_urls_without_a_password(tmp_path: Path) -> None:
    from spinewatch.service.storage import Influx1Store

    port = free_port()
    env = _env("", SPINEWATCH_INFLUX_URL=f"http://bob:{PASSWORD}@127.0.0.1:{port}", SPINEWATCH_INFLUX_DB="x")
    res = spinewatch(env, "doctor", "--skip", "bluetooth", "--skip", "broker", "--timeout", "1",
                     "--grafana-url", f"http://admin:{PASSWORD}@127.0.0.1:{port}")
    assert f"FAIL  influxdb   http://bob:***@127.0.0.1:{port}: not reachable" in res.stdout
    assert f"FAIL  grafana    http://admin:***@127.0.0.1:{port}: not reachable" in res.stdout
    assert PASSWORD not in res.stdout + res.stderr and "Traceback" not in res.stderr
    assert Influx1Store(f"http://bob:{PASSWORD}@127.0.0.1:{port}", "x").address == f"http://bob:***@127.0.0.1:{port}"
