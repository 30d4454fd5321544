"""The ``spinewatch`` command: the parser that gathers the command groups, and :func:`main`.

The modules of ``cli/`` print; elsewhere only the demo's console and caseload summary do
(``ops/live_view.py``, ``ops/clinic_demo.py``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from spinewatch import __version__
from spinewatch.errors import ConfigError, SpineWatchError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spinewatch",
        description="SpineWatch: posture monitoring from a back-worn IMU (BLE -> MQTT -> InfluxDB). "
                    "Each COMMAND has its own --help with an example.",
        epilog=(
            "examples:\n"
            "  spinewatch demo --duration 1h        # a simulated patient through the whole pipeline, no servers\n"
            "  spinewatch report --patient p-demo --from $(date -u +%F) --to $(date -u +%F) --format json "
            "--sqlite out/spinewatch.sqlite\n"
            "  spinewatch doctor --skip bluetooth   # is the installation working?"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"spinewatch {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    p.add_argument("--config", metavar="FILE", help="TOML config file (default: $SPINEWATCH_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from spinewatch.service.cli.bridge import add_bridge_commands  # noqa: PLC0415
    from spinewatch.service.cli.calibrate import add_calibrate_command
    from spinewatch.service.cli.config import add_config_commands  # noqa: PLC0415
    from spinewatch.service.cli.demo import add_demo_command  # noqa: PLC0415
    from spinewatch.service.cli.doctor import add_doctor_commands  # noqa: PLC0415
    from spinewatch.service.cli.export import add_export_commands  # noqa: PLC0415
    from spinewatch.service.cli.grafana import add_grafana_commands  # noqa: PLC0415
    from spinewatch.service.cli.influx import add_influx_commands  # noqa: PLC0415
    from spinewatch.service.cli.ingest import add_ingest_command  # noqa: PLC0415
    from spinewatch.service.cli.report import add_report_commands  # noqa: PLC0415

    add_demo_command(sub)
    add_ingest_command(sub)
    add_influx_commands(sub)
    add_bridge_commands(sub)
    add_calibrate_command(sub)
    add_config_commands(sub)
    add_grafana_commands(sub)
    add_report_commands(sub)
    add_export_commands(sub)
    add_doctor_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(2, args.verbose)
    env_level = os.environ.get("SPINEWATCH_LOG_LEVEL", "").upper()
    if env_level in ("DEBUG", "INFO", "WARNING", "ERROR") and not args.verbose:
        level = getattr(logging, env_level)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"spinewatch: configuration error: {exc}", file=sys.stderr)
        return 2
    except SpineWatchError as exc:
        print(f"spinewatch: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nspinewatch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
