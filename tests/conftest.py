"""Shared fixtures: real Mosquitto / InfluxDB 1.x / VictoriaMetrics on free loopback ports.

Session-scoped (one server for the whole run, started lazily on first use):
    ``mosquitto``, ``influxdb1``, ``victoriametrics``
Function-scoped (a fresh, empty server per test -- all three start in well
under a second, so use these for fault tests that stop/restart/kill):
    ``fresh_mosquitto``, ``fresh_influxdb1``, ``fresh_victoriametrics``

A missing binary skips the test with the Debian package to install.  Tests
using these fixtures should carry ``@pytest.mark.network``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import (  # noqa: E402
    InfluxDB1Server,
    MosquittoServer,
    VictoriaMetricsServer,
    _ServerBase,
    start_or_skip,
)

S = TypeVar("S", bound=_ServerBase)


def _serve(cls: type[S], base_dir: Path) -> Iterator[S]:
    server = start_or_skip(cls, base_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _outbox_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outboxes of every command a test runs (also as a subprocess) go to a temporary folder,
    never to the developer's ~/.local/share/spinewatch."""
    monkeypatch.setenv("SPINEWATCH_OUTBOX_DIR", str(tmp_path_factory.mktemp("outbox")))


# -- session scope ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    yield from _serve(MosquittoServer, tmp_path_factory.mktemp("mosquitto"))


@pytest.fixture(scope="session")
def influxdb1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1Server]:
    yield from _serve(InfluxDB1Server, tmp_path_factory.mktemp("influxdb1"))


@pytest.fixture(scope="session")
def victoriametrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetricsServer]:
    yield from _serve(VictoriaMetricsServer, tmp_path_factory.mktemp("victoriametrics"))


# -- function scope (fresh server per test) ------------------------------------------------


@pytest.fixture
def fresh_mosquitto(tmp_path: Path) -> Iterator[MosquittoServer]:
    yield from _serve(MosquittoServer, tmp_path / "mosquitto")


@pytest.fixture
def fresh_influxdb1(tmp_path: Path) -> Iterator[InfluxDB1Server]:
    yield from _serve(InfluxDB1Server, tmp_path / "influxdb1")


@pytest.fixture
def fresh_victoriametrics(tmp_path: Path) -> Iterator[VictoriaMetricsServer]:
    yield from _serve(VictoriaMetricsServer, tmp_path / "victoriametrics")


SERVER_FIXTURES = (
    "mosquitto", "influxdb1", "victoriametrics",
    "fresh_mosquitto", "fresh_influxdb1", "fresh_victoriametrics",
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """On failure, attach the tail of every server log the test used to the report."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    funcargs = getattr(item, "funcargs", {}) or {}
    for name in SERVER_FIXTURES:
        server = funcargs.get(name)
        if isinstance(server, _ServerBase):
            report.sections.append((f"{name} log ({call.when})", f"{server!r}\n{server.log_tail(30)}"))
