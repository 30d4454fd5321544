"""paho-mqtt client construction shared by the publisher and the ingest worker."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final, Literal

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from spinewatch.service.config import MqttConfig

_LOGGER = logging.getLogger(__name__)

Protocol = Literal["5", "3.1.1"]

# paho reconnects by itself; start fast after a blip, back off to this cap when a broker
# stays away (a patient's bridge retries forever, every 30 s at most).
RECONNECT_MIN_S: Final = 1
RECONNECT_MAX_S: Final = 30
# Connection-failure warnings at most this often, so a long outage doesn't flood the log.
WARN_INTERVAL_S: Final = 30.0


def resolve_protocol(cfg: MqttConfig, timeout_s: float = 5.0) -> Protocol:
    """The MQTT version to speak: the configured one, or probed when ``auto``."""
    if cfg.protocol != "auto":
        return cfg.protocol
    from spinewatch.service.broker import probe_mqtt_protocol  # noqa: PLC0415

    try:  # called from a thread without an event loop (CLI main, or an executor)
        return asyncio.run(probe_mqtt_protocol(cfg.host, cfg.port, timeout_s))
    except Exception as exc:  # unreachable broker: MQTT 5, and keep retrying later
        _LOGGER.warning("cannot probe %s (%s); assuming MQTT 5", cfg.address, exc)
        return "5"


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
    if cfg.username:
        client.username_pw_set(cfg.username, cfg.password)
    if cfg.tls:
        client.tls_set()
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
    import uuid  # noqa: PLC0415

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
