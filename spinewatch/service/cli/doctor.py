"""``spinewatch doctor``: check broker, InfluxDB, Grafana and Bluetooth; say what is wrong and how to fix it."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from spinewatch.errors import ConfigError
from spinewatch.service.ops.doctor import (
    CHECKS,
    DEFAULT_SYSTEM_BUS,
    DEFAULT_TIMEOUT_S,
    Check,
)


def run_checks(args: argparse.Namespace) -> list[Check]:
    """Every check not skipped, in order; a broken config skips the broker and InfluxDB checks."""
    from spinewatch.service.config import Config
    from spinewatch.service.dashboards import DATASOURCE
    from spinewatch.service.ops import doctor

    skip = set(args.skip or ())
    t = args.timeout
    source = args.config or os.environ.get("SPINEWATCH_CONFIG") or "environment"
    cfg: Config | None = None
    error: Exception | None = None
    try:
        cfg = Config.load(path=args.config)
    except ConfigError as exc:
        error = exc
    out = [doctor.check_config(error, source)] if "config" not in skip else []
    for name in ("broker", "influxdb"):
        if name in skip:
            continue
        if cfg is None:
            out.append(Check(name, "FAIL", source, "not checked: the configuration does not load",
                             "fix the config line above first"))
        elif name == "broker":
            out += doctor.check_broker(cfg.mqtt, t)
            if out[-1].status != "FAIL" and cfg.mqtt.url:  # connected: are messages being dropped?
                out += doctor.check_broker_drops(cfg.mqtt, t)
        else:
            out += doctor.check_influx(cfg.influx, t)
    if "grafana" not in skip:
        url = args.grafana_url or os.environ.get("GRAFANA_URL", "")
        out += doctor.check_grafana(url, os.environ.get(args.token_env, ""), DATASOURCE["uid"], t)
    if "bluetooth" not in skip:
        out += doctor.check_bluetooth(os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "") or DEFAULT_SYSTEM_BUS, t)
    return out


def cmd_doctor(args: argparse.Namespace) -> int:
    checks = run_checks(args)
    if args.json:
        print(json.dumps([c.as_dict() for c in checks], indent=2))
    else:
        for c in checks:
            print(c.line())
    failed = sum(c.status == "FAIL" for c in checks)
    warned = sum(c.status == "WARN" for c in checks)
    if not args.json:
        print(f"{failed} failed, {warned} warnings, {len(checks) - failed - warned} ok")
    return 1 if failed else 0


def add_doctor_commands(subparsers: Any) -> None:
    """Add ``doctor`` to the ``spinewatch`` command line."""
    d = subparsers.add_parser(
        "doctor", help="check broker, InfluxDB, Grafana and Bluetooth; say what is wrong and how to fix it",
        description=(
            "Check the installation, one line per check (OK, WARN or FAIL, the address checked, and on "
            "failure the cause and the fix): the config loads; the broker (SPINEWATCH_MQTT_URL) is reachable "
            "and accepts MQTT 5 or 3.1.1 and the login, and has not dropped messages for slow subscribers "
            "($SYS/broker/publish/messages/dropped); InfluxDB (SPINEWATCH_INFLUX_*) answers /ping, the "
            "database exists, writing and querying are allowed, `influx init`'s retention policies and "
            "continuous queries are there; Grafana (GRAFANA_URL, GRAFANA_TOKEN) is healthy, the token valid "
            "and the data source pushed; BlueZ answers on D-Bus with a powered adapter. Exit status 0 when "
            "nothing failed (warnings allowed), 1 otherwise. Details: docs/doctor.md."
        ),
        epilog="example: SPINEWATCH_MQTT_URL=mqtt://127.0.0.1:1883 SPINEWATCH_INFLUX_URL=http://127.0.0.1:8086 "
               "SPINEWATCH_INFLUX_DB=spinewatch spinewatch doctor --skip bluetooth",
    )
    d.add_argument("--skip", action="append", choices=CHECKS, metavar="CHECK",
                   help=f"leave a check out (repeatable): {', '.join(CHECKS)}; e.g. bluetooth on a server")
    d.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help=f"per network step, seconds (default {DEFAULT_TIMEOUT_S:g})")
    d.add_argument("--grafana-url", default="", metavar="URL", help="Grafana base URL (default: $GRAFANA_URL)")
    d.add_argument("--token-env", default="GRAFANA_TOKEN", metavar="VAR",
                   help="environment variable holding the Grafana token (default GRAFANA_TOKEN)")
    d.add_argument("--json", action="store_true", help="print the checks as a JSON list instead")
    d.set_defaults(func=cmd_doctor)
