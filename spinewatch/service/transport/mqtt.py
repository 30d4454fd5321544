"""paho-mqtt client set-up shared by every command: client construction, and the one MQTT handshake.

:func:`handshake` and :func:`probe` are the only CONNECT probes in SpineWatch: they send the
configured login and TLS settings exactly as :func:`make_client` does (both go through
:func:`configure_login_and_tls`). :func:`resolve_protocol` (``protocol = "auto"``),
``spinewatch doctor`` and the demo's embedded-broker readiness check all use them. Nothing here
prints or logs a password: messages name the broker by :attr:`MqttConfig.address` and the user
by name only.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Final, Literal

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from spinewatch.service.config import MqttConfig
from spinewatch.service.transport.neterrors import network_reason
from spinewatch.service.transport.retry import BACKOFF_CAP_S

_LOGGER = logging.getLogger(__name__)

Protocol = Literal["5", "3.1.1"]

# paho reconnects by itself; start fast after a blip, back off to the retry policy's cap when
# a broker stays away (a patient's bridge retries forever, every 30 s at most).
RECONNECT_MIN_S: Final = 1
RECONNECT_MAX_S: Final = int(BACKOFF_CAP_S)
# Connection-failure warnings at most this often, so a long outage doesn't flood the log.
WARN_INTERVAL_S: Final = 30.0
# How long one probe CONNECT may take by default (TCP, TLS and CONNACK), seconds.
PROBE_TIMEOUT_S: Final = 5.0
# CONNACK reason codes (MQTT 5 numbering; paho maps 3.1.1's return codes 4 and 5 onto them)
# that mean "who you are", not "what you speak".
LOGIN_REFUSED_CODES: Final = (134, 135)  # Bad user name or password, Not authorized
# CONNACK reason code of a broker that does not speak the version asked for.
UNSUPPORTED_PROTOCOL_CODE: Final = 132
_PAHO_VERSION: Final[dict[str, paho.MQTTProtocolVersion]] = {"5": paho.MQTTv5, "3.1.1": paho.MQTTv311}


def configure_login_and_tls(client: paho.Client, cfg: MqttConfig) -> None:
    """Give ``client`` the configured user name, password and TLS settings (``mqtts://``).

    The one place that applies them: the long-lived clients (:func:`make_client`) and the probe
    (:func:`handshake`) both call it, so what the probe learns holds for the real connection.
    TLS verifies the broker's certificate against ``cfg.ca_file`` when set, else against the
    system's trusted CAs (``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` are honoured).
    """
    if cfg.username:
        client.username_pw_set(cfg.username, cfg.password)
    if cfg.tls:
        client.tls_set(ca_certs=cfg.ca_file or None)


@dataclass(frozen=True, slots=True)
class Handshake:
    """The outcome of one MQTT CONNECT sent with the configured login and TLS.

    Attributes:
        protocol: the MQTT version the CONNECT spoke.
        reachable: the TCP connection (and the TLS handshake, for ``mqtts://``) succeeded.
        reason_code: the CONNACK's reason code (MQTT 5 numbering, 0 = accepted), or None when
            no CONNACK came (unreachable, connection dropped, answer not understood, timeout).
        detail: what happened, for messages: never contains the password.
    """

    protocol: Protocol
    reachable: bool
    reason_code: int | None
    detail: str

    @property
    def accepted(self) -> bool:
        return self.reason_code == 0

    @property
    def login_refused(self) -> bool:
        return self.reason_code in LOGIN_REFUSED_CODES

    @property
    def tls_failed(self) -> bool:
        return self.detail.startswith("TLS failed")

    @property
    def speaks_protocol(self) -> bool:
        """The broker answered in this MQTT version (accepted, or refused for a reason other than the version)."""
        return self.reason_code is not None and self.reason_code != UNSUPPORTED_PROTOCOL_CODE


def _socket_reason(exc: BaseException) -> str:
    """A short human cause of a connection error, with the setting to change for an untrusted certificate."""
    reason = network_reason(exc)
    if reason.startswith("TLS failed (certificate not trusted"):
        return reason[:-1] + "; set mqtt.ca_file / SPINEWATCH_MQTT_CA_FILE to the CA that signed it)"
    return reason


def handshake(cfg: MqttConfig, protocol: Protocol, timeout_s: float = PROBE_TIMEOUT_S) -> Handshake:
    """Blocking: one CONNECT in ``protocol`` with the configured login and TLS, wait for CONNACK, disconnect.

    Leaves no session behind (clean start, session expiry 0) and never raises for network
    trouble: the outcome says what happened.
    """
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=f"spinewatch-probe-{uuid.uuid4().hex[:12]}",
        protocol=_PAHO_VERSION[protocol],
    )
    client.connect_timeout = timeout_s
    configure_login_and_tls(client, cfg)
    got: dict[str, object] = {}

    def on_connect(_c: paho.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        got.setdefault("rc", rc)

    client.on_connect = on_connect
    try:
        client.connect(cfg.host, cfg.port, keepalive=10)
    except (OSError, ValueError) as exc:
        return Handshake(protocol, False, None, _socket_reason(exc))
    deadline = time.monotonic() + timeout_s
    try:
        while "rc" not in got:
            left = deadline - time.monotonic()
            if left <= 0:
                return Handshake(protocol, True, None, f"no CONNACK within {timeout_s:g} s")
            try:
                rc = client.loop(timeout=min(0.05, left))
            except (OSError, ValueError, IndexError, KeyError) as exc:
                # paho raises parsing errors when a 3.1.1-only broker answers an MQTT 5 CONNECT.
                return Handshake(protocol, True, None, f"handshake failed ({type(exc).__name__})")
            if rc != paho.MQTT_ERR_SUCCESS and "rc" not in got:
                return Handshake(protocol, True, None, f"connection dropped ({paho.error_string(rc)})")
        reason = got["rc"]
        code = int(getattr(reason, "value", reason))  # type: ignore[call-overload]
        if code == 0:
            client.disconnect()
            client.loop(timeout=0.01)
        return Handshake(protocol, True, code, str(reason))
    finally:
        sock = client.socket()
        if sock is not None:
            sock.close()


@dataclass(frozen=True, slots=True)
class Probe:
    """What :func:`probe` learnt about a broker.

    Attributes:
        attempts: each CONNECT sent, in order (MQTT 5 first when probing).
    """

    attempts: tuple[Handshake, ...]

    @property
    def last(self) -> Handshake:
        return self.attempts[-1]

    @property
    def protocol(self) -> Protocol | None:
        """The newest MQTT version the broker answered in (accepted or not), None if it answered none."""
        for h in self.attempts:
            if h.speaks_protocol:
                return h.protocol
        return None

    @property
    def accepted(self) -> bool:
        return self.last.accepted


def probe(cfg: MqttConfig, timeout_s: float = PROBE_TIMEOUT_S) -> Probe:
    """The one MQTT probe: CONNECT with the configured login and TLS, in the configured version.

    With ``protocol = "auto"``: MQTT 5 first; MQTT 3.1.1 only if the broker was reachable and
    did not answer in MQTT 5 (refused the version, dropped the connection, or sent an answer
    paho cannot parse as MQTT 5). A broker that answers MQTT 5 but refuses the login is an MQTT
    5 broker: the probe stops there.
    """
    versions: tuple[Protocol, ...] = ("5", "3.1.1") if cfg.protocol == "auto" else (cfg.protocol,)
    attempts: list[Handshake] = []
    for version in versions:
        h = handshake(cfg, version, timeout_s)
        attempts.append(h)
        if h.speaks_protocol or not h.reachable:
            break
        _LOGGER.debug("MQTT %s CONNECT to %s: %s; trying the next version", version, cfg.address, h.detail)
    return Probe(tuple(attempts))


def describe_login(cfg: MqttConfig) -> str:
    """``user 'alice'`` or ``anonymous``: who the probe said it was (never the password)."""
    return f"user {cfg.username!r}" if cfg.username else "anonymous"


def resolve_protocol(cfg: MqttConfig, timeout_s: float = PROBE_TIMEOUT_S) -> Protocol:
    """The MQTT version to speak: the configured one, or probed (:func:`probe`) when ``auto``.

    An unreachable broker (or one that answered no version) gives MQTT 5 with a warning; the
    clients keep retrying. A broker that refused the login gives the version it answered in,
    with a warning naming the user (never the password).
    """
    if cfg.protocol != "auto":
        return cfg.protocol
    result = probe(cfg, timeout_s)
    version = result.protocol
    if version is None:
        _LOGGER.warning("cannot probe MQTT broker %s (%s); assuming MQTT 5",
                        cfg.address, "; ".join(f"MQTT {h.protocol}: {h.detail}" for h in result.attempts))
        return "5"
    if result.last.login_refused:
        _LOGGER.warning("MQTT broker %s refused %s (%s); check the user:password in SPINEWATCH_MQTT_URL",
                        cfg.address, describe_login(cfg), result.last.detail)
    elif not result.accepted:
        _LOGGER.warning("MQTT broker %s refused the connection (MQTT %s: %s)", cfg.address, version,
                        result.last.detail)
    return version


class _RateLimitedWarning:
    def __init__(self) -> None:
        self._last = -1e18

    def __call__(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last >= WARN_INTERVAL_S:
            self._last = now
            _LOGGER.warning(msg, *args)


def make_client(
    cfg: MqttConfig,
    client_id: str,
    protocol: Protocol,
    *,
    manual_ack: bool = False,
    receive_maximum: int | None = None,
) -> tuple[paho.Client, Properties | None]:
    """A paho client for a persistent session, plus the CONNECT properties to pass.

    MQTT 5: clean_start False with a session expiry (also on the first connect, otherwise
    the broker forgets the session at disconnect). MQTT 3.1.1: clean_session False.
    """
    if protocol == "5":
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=client_id,
            protocol=paho.MQTTv5, manual_ack=manual_ack,
        )
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = cfg.session_expiry_s
        if receive_maximum:
            props.ReceiveMaximum = receive_maximum
    else:
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
            protocol=paho.MQTTv311, manual_ack=manual_ack,
        )
        props = None
    configure_login_and_tls(client, cfg)
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
    client.max_inflight_messages_set(cfg.max_inflight)
    # 0 = paho never drops queued messages on its own (its default limit drops silently)
    client.max_queued_messages_set(0)
    warn = _RateLimitedWarning()

    def on_connect_fail(c: paho.Client, userdata: object) -> None:
        warn("cannot reach MQTT broker %s; retrying every <= %d s", cfg.address, RECONNECT_MAX_S)

    def on_disconnect(c: paho.Client, userdata: object, flags: object, rc: object, props: object) -> None:
        if getattr(rc, "is_failure", False) or (isinstance(rc, int) and rc != 0):
            warn("lost MQTT broker %s (%s); reconnecting", cfg.address, rc)

    client.on_connect_fail = on_connect_fail
    client.on_disconnect = on_disconnect
    return client, props


def connect(client: paho.Client, cfg: MqttConfig, props: Properties | None, protocol: Protocol) -> None:
    """Start connecting in paho's background thread; it retries until the broker answers."""
    if protocol == "5":
        client.connect_async(cfg.host, cfg.port, cfg.keepalive_s, clean_start=False, properties=props)
    else:
        client.connect_async(cfg.host, cfg.port, cfg.keepalive_s)
    client.loop_start()


def read_retained(
    cfg: MqttConfig, protocol: Protocol, topic: str, client_prefix: str, timeout_s: float
) -> bytes | None:
    """The retained message of ``topic`` (None if there is none), from a one-shot client.

    The broker sends a retained message right after the SUBACK; its absence is known
    within a moment of it. The client keeps no session behind.

    Raises:
        ConnectionFailed: no SUBACK within ``timeout_s``.
    """
    import threading  # noqa: PLC0415

    from spinewatch.errors import ConnectionFailed  # noqa: PLC0415

    client, props = make_client(cfg, f"{client_prefix}-{uuid.uuid4().hex[:8]}", protocol)
    if props is not None:
        props.SessionExpiryInterval = 0  # a one-shot client leaves no session behind
    got: list[bytes] = []
    done = threading.Event()
    subscribed = threading.Event()
    client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *a: subscribed.set()

    def on_message(c: paho.Client, u: object, msg: paho.MQTTMessage) -> None:
        got.append(bytes(msg.payload))
        done.set()

    client.on_message = on_message
    connect(client, cfg, props, protocol)
    try:
        if not subscribed.wait(timeout_s):
            raise ConnectionFailed(cfg.address, "no answer to the subscription")
        done.wait(min(timeout_s, 1.0))  # a retained message follows the SUBACK at once
    finally:
        client.disconnect()
        client.loop_stop()
    return got[-1] if got and got[-1] else None
