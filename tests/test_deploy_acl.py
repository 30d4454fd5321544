"""The deploy/ mosquitto config and ACL, enforced by a real mosquitto on a free loopback port."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from spinewatch.service.ops.embedded_broker import _free_loopback_port, find_mosquitto
from tests._mqtt_helpers import DEADLINE_S, TestClient

DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto"
MOSQUITTO = find_mosquitto()
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or shutil.which("mosquitto_passwd", path="/usr/bin:/usr/sbin")
NOT_AUTHORIZED = 135  # MQTT 5 reason code 0x87

pytestmark = pytest.mark.skipif(
    MOSQUITTO is None or MOSQUITTO_PASSWD is None, reason="mosquitto and mosquitto_passwd are needed"
)

USERS = {"p1/d1": "pw-d1", "p2/d9": "pw-d9", "ingest": "pw-ingest", "therapist": "pw-therapist"}


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    log_path: Path

    def client(self, username: str | None = None, password: str | None = None) -> TestClient:
        if username is not None and password is None:
            password = USERS[username]
        return TestClient(self.host, self.port, mqtt5=True, username=username, password=password)


def _test_conf(deploy_conf: str, port: int, workdir: Path) -> str:
    """deploy/mosquitto/mosquitto.conf with container paths, listener and persistence swapped for tmp ones."""
    replacements = {
        "password_file": f"password_file {workdir / 'passwd'}",
        "acl_file": f"acl_file {workdir / 'acl'}",
        "persistence": "persistence false",
        "persistence_location": None,
        "log_dest": "log_dest stderr",
        "listener": f"listener {port} 127.0.0.1",
    }
    out = []
    for line in deploy_conf.splitlines():
        key = line.split(maxsplit=1)[0] if line.strip() and not line.startswith("#") else ""
        if key in replacements:
            if replacements[key] is not None:
                out.append(replacements[key])  # type: ignore[arg-type]
            if key == "listener" and not line.strip().endswith("1883"):
                raise AssertionError(f"unexpected listener line in deploy conf: {line!r}")
        else:
            out.append(line)
    if os.geteuid() == 0:
        # As root, mosquitto drops to the 'mosquitto' user, which cannot read pytest's private tmp dir.
        out.append("user root")
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    workdir = tmp_path_factory.mktemp("deploy-acl")
    passwd = workdir / "passwd"
    for i, (user, password) in enumerate(USERS.items()):
        args = [MOSQUITTO_PASSWD, *(["-c"] if i == 0 else []), "-b", str(passwd), user, password]
        subprocess.run(args, check=True, capture_output=True, timeout=10)
    shutil.copy(DEPLOY_DIR / "acl", workdir / "acl")
    port = _free_loopback_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(_test_conf((DEPLOY_DIR / "mosquitto.conf").read_text(), port, workdir))
    log_path = workdir / "mosquitto.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(MOSQUITTO), "-c", str(conf)], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    b = Broker("127.0.0.1", port, log_path)
    try:
        _wait_listening(proc, b)
        yield b
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_listening(proc: subprocess.Popen[bytes], b: Broker) -> None:
    """Poll with a deadline until an authenticated MQTT 5 CONNECT succeeds."""
    deadline = time.monotonic() + 10.0
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited ({proc.returncode}):\n{b.log_path.read_text()}")
        client = b.client("ingest")
        try:
            rc = client.connect(timeout_s=1.0)
            if not rc.is_failure:  # type: ignore[attr-defined]
                return
        except (OSError, TimeoutError):
            pass
        finally:
            client.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"mosquitto did not accept CONNECT:\n{b.log_path.read_text()}")
        time.sleep(0.02)  # sync-ok: poll interval between attempts, not synchronisation


@pytest.fixture()
def clients() -> Iterator[list[TestClient]]:
    """Clients registered here are closed after the test."""
    made: list[TestClient] = []
    yield made
    for c in made:
        c.close()


def connected(made: list[TestClient], b: Broker, user: str | None, password: str | None = None) -> TestClient:
    c = b.client(user, password)
    made.append(c)
    rc = c.connect()
    assert not rc.is_failure, f"{user} refused: {rc}"  # type: ignore[attr-defined]
    return c


def _value(rc: object) -> int:
    return int(getattr(rc, "value", rc))  # type: ignore[call-overload]


def test_anonymous_and_wrong_password_are_refused(broker: Broker, clients: list[TestClient]) -> None:
    for user, password in [(None, None), ("p1/d1", "wrong")]:
        c = broker.client(user, password)
        clients.append(c)
        rc = c.connect()
        assert rc.is_failure, f"{user!r} was let in"  # type: ignore[attr-defined]


def test_device_publishes_only_under_its_own_ids(broker: Broker, clients: list[TestClient]) -> None:
    ingest = connected(clients, broker, "ingest")
    assert [_value(g) for g in ingest.subscribe("spinewatch/v1/#", 1)] == [1]
    device = connected(clients, broker, "p1/d1")

    assert _value(device.publish("spinewatch/v1/p1/d1/posture", b'{"n":1}')) == 0
    assert ingest.get().topic == "spinewatch/v1/p1/d1/posture"

    # Another patient's device topic: refused with PUBACK "Not authorized" and not delivered.
    assert _value(device.publish("spinewatch/v1/p2/d9/posture", b'{"spoof":1}')) == NOT_AUTHORIZED
    # The device cannot write its own (or anyone's) config.
    assert _value(device.publish("spinewatch/v1/p1/d1/config", b'{"spoof":2}')) == NOT_AUTHORIZED
    # Messages from one publisher arrive in order, so if the marker is next, the denied ones were dropped.
    assert _value(device.publish("spinewatch/v1/p1/d1/event", b'{"marker":1}')) == 0
    got = ingest.get()
    assert (got.topic, got.payload) == ("spinewatch/v1/p1/d1/event", b'{"marker":1}')
    with pytest.raises(queue.Empty):
        ingest.messages.get_nowait()


def test_therapist_writes_config_and_device_reads_only_its_own(broker: Broker, clients: list[TestClient]) -> None:
    device = connected(clients, broker, "p1/d1")
    assert [_value(g) for g in device.subscribe("spinewatch/v1/p1/d1/config", 1)] == [1]
    therapist = connected(clients, broker, "therapist")
    config = b'{"slouch_threshold_deg": 25}'
    assert _value(therapist.publish("spinewatch/v1/p1/d1/config", config)) == 0
    got = device.get()
    assert (got.topic, got.payload) == ("spinewatch/v1/p1/d1/config", config)
    # The therapist role cannot inject posture data; it may publish events (calibrate's result;
    # 16: accepted, no subscribers).
    assert _value(therapist.publish("spinewatch/v1/p1/d1/posture", b"{}")) == NOT_AUTHORIZED
    assert _value(therapist.publish("spinewatch/v1/p1/d1/event", b'{"kind":"calibration"}')) in (0, 16)


def test_device_does_not_receive_other_patients_config(broker: Broker, clients: list[TestClient]) -> None:
    # mosquitto 2.0 grants the SUBSCRIBE (SUBACK QoS 1) but filters each message by the `read` ACL.
    device = connected(clients, broker, "p1/d1")
    assert [_value(g) for g in device.subscribe("spinewatch/v1/+/+/config", 1)] == [1]
    therapist = connected(clients, broker, "therapist")
    assert _value(therapist.publish("spinewatch/v1/p2/d9/config", b'{"other":1}')) == 0
    assert _value(therapist.publish("spinewatch/v1/p1/d1/config", b'{"own":1}')) == 0
    # In-order delivery from one publisher: the first message the device sees is its own config.
    assert device.get().topic == "spinewatch/v1/p1/d1/config"
    with pytest.raises(queue.Empty):
        device.messages.get_nowait()


def test_ingest_shared_subscription(broker: Broker, clients: list[TestClient]) -> None:
    ingest = connected(clients, broker, "ingest")
    assert [_value(g) for g in ingest.subscribe("$share/ingest/spinewatch/v1/#", 1)] == [1]
    device = connected(clients, broker, "p2/d9")
    assert _value(device.publish("spinewatch/v1/p2/d9/status", b'{"battery_pct": 80}')) == 0
    assert ingest.get(DEADLINE_S).topic == "spinewatch/v1/p2/d9/status"


def test_compose_healthcheck_command_succeeds(broker: Broker) -> None:
    """Run the mosquitto health check of deploy/docker-compose.yml against the test broker."""
    import yaml  # test extra (pyyaml); mosquitto_sub comes from mosquitto-clients, which scripts/test installs

    compose = yaml.safe_load((DEPLOY_DIR.parent / "docker-compose.yml").read_text())
    kind, command = compose["services"]["mosquitto"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    # Compose turns $$ into $; point the command at the test broker's port.
    command = command.replace("$$", "$").replace("-p 1883", f"-p {broker.port}")
    env = {**os.environ, "MQTT_INGEST_PASSWORD": USERS["ingest"]}
    done = subprocess.run(["sh", "-c", command], env=env, capture_output=True, timeout=10)
    assert done.returncode == 0, done.stderr
    env["MQTT_INGEST_PASSWORD"] = "wrong"
    assert subprocess.run(["sh", "-c", command], env=env, capture_output=True, timeout=10).returncode != 0


def test_mqtt311_denied_publish_is_acked_and_dropped(broker: Broker, clients: list[TestClient]) -> None:
    """MQTT 3.1.1 has no PUBACK reason codes: mosquitto acks the denied publish and drops it."""
    ingest = connected(clients, broker, "ingest")
    ingest.subscribe("spinewatch/v1/#", 1)
    device = TestClient(broker.host, broker.port, mqtt5=False, username="p1/d1", password=USERS["p1/d1"])
    clients.append(device)
    assert not device.connect().is_failure  # type: ignore[attr-defined]
    assert _value(device.publish("spinewatch/v1/p2/d9/posture", b'{"spoof":1}')) == 0
    assert _value(device.publish("spinewatch/v1/p1/d1/posture", b'{"marker":1}')) == 0
    assert ingest.get().payload == b'{"marker":1}'
