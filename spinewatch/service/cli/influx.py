"""``spinewatch influx init``: retention policies, downsampling and settings on InfluxDB 1.x or 2.x."""

from __future__ import annotations

import argparse
from typing import Any

from spinewatch.errors import ConfigError

__all__ = ["add_influx_commands"]


def _influx2_init(i: Any, args: argparse.Namespace) -> int:
    from spinewatch.service.storage.influx2_schema import (  # noqa: PLC0415
        Influx2Admin,
        Influx2Schema,
        apply_influx2_schema,
    )
    from spinewatch.service.transport.retry import retry_until_connected  # noqa: PLC0415

    try:
        schema = Influx2Schema(i.bucket, args.raw_retention)
    except ValueError as exc:
        raise ConfigError("--raw-retention", args.raw_retention, str(exc)) from exc
    admin = Influx2Admin(i.url, i.token)
    retry_until_connected(lambda: apply_influx2_schema(admin, i.org, schema, backfill=args.backfill), "InfluxDB")
    return 0


def _cmd_influx_init(args: argparse.Namespace) -> int:
    from spinewatch.service.config import Config  # noqa: PLC0415
    from spinewatch.service.storage import Influx1Store, StoreRejected  # noqa: PLC0415
    from spinewatch.service.storage.influx1_schema import Influx1Schema  # noqa: PLC0415
    from spinewatch.service.transport.retry import retry_until_connected  # noqa: PLC0415

    cfg = Config.load(path=args.config)
    i = cfg.influx
    if i.kind == "none":
        raise ConfigError("SPINEWATCH_INFLUX_URL", i.url, "the InfluxDB to set up, e.g. http://127.0.0.1:8086")
    if i.kind == "v2":
        return _influx2_init(i, args)
    try:
        schema = Influx1Schema(i.db, args.raw_retention)
    except ValueError as exc:
        raise ConfigError("--raw-retention", args.raw_retention, str(exc)) from exc
    store = Influx1Store(i.url, i.db, i.username, i.password)
    retry_until_connected(store.ensure_database, "InfluxDB")
    for q in schema.statements(store.retention_policies()):
        try:
            store.execute(q)
        except StoreRejected as exc:
            if q.startswith("DROP CONTINUOUS QUERY") and "not found" in str(exc):
                continue  # first run: nothing to replace
            raise
        print(f"ok: {q[:110]}{'...' if len(q) > 110 else ''}")
    if args.backfill:
        for q in schema.backfill_statements():
            store.execute(q)
            print(f"backfilled: {q[:90]}...")
    print(f"InfluxDB {store.address} database {i.db!r}: raw samples kept {args.raw_retention}, "
          "per-minute trend, slouch episodes and settings kept forever")
    return 0


def add_influx_commands(subparsers: Any) -> None:
    """Register ``influx init`` on the main parser's subparsers."""
    inf = subparsers.add_parser(
        "influx", help="InfluxDB administration",
        description="Set up InfluxDB for SpineWatch (retention policies, downsampling, settings).",
        epilog="example: SPINEWATCH_INFLUX_URL=http://127.0.0.1:8086 SPINEWATCH_INFLUX_DB=spinewatch "
               "spinewatch influx init",
    )
    inf_sub = inf.add_subparsers(dest="influx_command", required=True, metavar="SUBCOMMAND")
    init = inf_sub.add_parser(
        "init", help="create the database, retention policies and downsampling",
        description=(
            "Set up InfluxDB for SpineWatch: raw posture samples and slouch episodes, kept "
            "--raw-retention, and trend data kept forever (per-minute posture means in posture_1m "
            "and a copy of every slouch episode), filled every minute, and the patients' settings "
            "(patient_config, calibration) kept forever. On 1.x "
            "(SPINEWATCH_INFLUX_URL + SPINEWATCH_INFLUX_DB, and _USERNAME/_PASSWORD): retention "
            "policies 'raw' (default), 'trend' with continuous queries, and 'settings'. On 2.x/Cloud "
            "(SPINEWATCH_INFLUX_URL + _ORG + _BUCKET + _TOKEN, an operator token): buckets BUCKET and "
            "BUCKET_trend, the DBRP mappings BUCKET/raw, BUCKET/trend and BUCKET/settings (to "
            "BUCKET_trend) that let the InfluxQL "
            "dashboards and reports run, and two Flux tasks. Idempotent: run it again to change the "
            "retention."
        ),
        epilog="example: SPINEWATCH_INFLUX_URL=http://127.0.0.1:8086 SPINEWATCH_INFLUX_DB=spinewatch "
               "spinewatch influx init --raw-retention 90d --backfill",
    )
    init.add_argument("--raw-retention", default="90d", metavar="D",
                      help="how long raw samples are kept: 90d, 12w, 2160h or INF (default 90d)")
    init.add_argument("--backfill", action="store_true",
                      help="also downsample data written before the continuous queries existed (and recompute every "
                           "minute's wear seconds: run it once after upgrading; raw points stored "
                           "before wear_s existed count 0.01 s each), and copy settings stored before "
                           "'settings' existed")
    init.set_defaults(func=_cmd_influx_init)
