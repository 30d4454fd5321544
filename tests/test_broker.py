"""Tests of the demo's embedded MQTT broker (mosquitto subprocess and in-process amqtt)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from spinewatch.errors import ConnectionFailed
from spinewatch.service.ops.embedded_broker import (
    BrokerStartError,
    EmbeddedBroker,
    find_mosquitto,
    probe_mqtt_protocol,
)
from tests._mqtt_helpers import TestClient, port_refuses

needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")
KINDS = [pytest.param("mosquitto", marks=needs_mosquitto), "amqtt"]


async def _roundtrip(broker: EmbeddedBroker) -> None:
    """Publish one QoS 1 message with paho and receive it on a second paho client."""
    sub = TestClient(broker.host, broker.port, mqtt5=broker.mqtt5)
    pub = TestClient(broker.host, broker.port, mqtt5=broker.mqtt5)
    try:
        assert not getattr(await asyncio.to_thread(sub.connect), "is_failure", True)
        granted = await asyncio.to_thread(sub.subscribe, "spinewatch/v1/p1/d1/#", 1)
        assert [int(getattr(g, "value", g)) for g in granted] == [1]
        await asyncio.to_thread(pub.connect)
        payload = json.dumps({"v": 1, "flexion_deg": [12.5, 13.0]}).encode()
        puback = await asyncio.to_thread(pub.publish, "spinewatch/v1/p1/d1/posture", payload, 1)
        assert not puback.is_failure  # type: ignore[attr-defined]
        got = await asyncio.to_thread(sub.get)
        assert (got.topic, got.payload, got.qos) == ("spinewatch/v1/p1/d1/posture", payload, 1)
    finally:
        await asyncio.to_thread(pub.close)
        await asyncio.to_thread(sub.close)


@pytest.mark.parametrize("kind", KINDS)
def test_publish_subscribe_qos1_and_gone_after_exit(kind: str) -> None:
    async def scenario() -> tuple[str, int]:
        async with EmbeddedBroker(kind) as broker:  # type: ignore[arg-type]
            assert broker.kind == kind
            assert broker.host == "127.0.0.1"
            assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
            assert broker.mqtt5 is (kind == "mosquitto")
            await _roundtrip(broker)
            return broker.host, broker.port

    host, port = asyncio.run(scenario())
    assert port_refuses(host, port)


@pytest.mark.parametrize(("kind", "expected"),
                         [pytest.param("mosquitto", "5", marks=needs_mosquitto), ("amqtt", "3.1.1")])
def test_probe_mqtt_protocol(kind: str, expected: str) -> None:
    async def scenario() -> str:
        async with EmbeddedBroker(kind) as broker:  # type: ignore[arg-type]
            return await probe_mqtt_protocol(broker.host, broker.port, timeout_s=3.0)

    assert asyncio.run(scenario()) == expected


def test_probe_unreachable_raises_connection_failed() -> None:
    async def scenario() -> None:
        async with EmbeddedBroker("amqtt") as broker:
            host, port = broker.host, broker.port
        await probe_mqtt_protocol(host, port, timeout_s=1.0)

    with pytest.raises(ConnectionFailed):
        asyncio.run(scenario())


@pytest.mark.parametrize("kind", KINDS)
def test_two_brokers_get_different_ports(kind: str) -> None:
    async def scenario() -> tuple[int, int]:
        async with EmbeddedBroker(kind) as a, EmbeddedBroker(kind) as b:  # type: ignore[arg-type]
            await _roundtrip(a)
            await _roundtrip(b)
            return a.port, b.port

    port_a, port_b = asyncio.run(scenario())
    assert port_a != port_b


def test_auto_prefers_mosquitto_when_installed() -> None:
    async def scenario() -> str:
        async with EmbeddedBroker() as broker:
            return broker.kind

    assert asyncio.run(scenario()) == ("mosquitto" if find_mosquitto() else "amqtt")


def test_amqtt_start_is_quiet(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """Starting and stopping amqtt prints nothing and logs nothing below WARNING from amqtt."""

    async def scenario() -> None:
        async with EmbeddedBroker("amqtt") as broker:
            await _roundtrip(broker)

    caplog.set_level(logging.DEBUG)  # root at DEBUG: amqtt must still stay at WARNING
    asyncio.run(scenario())
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    noisy = [r for r in caplog.records if r.name.startswith(("amqtt", "transitions")) and r.levelno < logging.WARNING]
    assert noisy == []


def test_mosquitto_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("spinewatch.service.ops.embedded_broker.find_mosquitto", lambda: None)

    async def scenario() -> None:
        async with EmbeddedBroker("mosquitto"):
            pass

    with pytest.raises(BrokerStartError, match="not on PATH"):
        asyncio.run(scenario())


@needs_mosquitto
def test_mosquitto_start_failure_quotes_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "spinewatch.service.ops.embedded_broker._mosquitto_conf",
        lambda port: f"listener {port} 127.0.0.1\nno_such_option 1\n",
    )

    async def scenario() -> None:
        async with EmbeddedBroker("mosquitto", startup_timeout_s=5.0):
            pass

    with pytest.raises(BrokerStartError) as info:
        asyncio.run(scenario())
    assert "exited with code" in str(info.value)
    assert "no_such_option" in info.value.log_tail


def test_bad_preference_is_rejected() -> None:
    with pytest.raises(ValueError, match="prefer"):
        EmbeddedBroker("rabbitmq")  # type: ignore[arg-type]
