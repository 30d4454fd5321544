"""``spinewatch grafana push``: the SpineWatch folder, data source and dashboards into an existing Grafana."""

from __future__ import annotations

import argparse
import os
from typing import Any

from spinewatch.errors import ConfigError
from spinewatch.service.dashboards.grafana_push import FOLDER_TITLE, FOLDER_UID

__all__ = ["add_grafana_commands", "cmd_grafana_push"]


def cmd_grafana_push(args: argparse.Namespace) -> int:
    """``spinewatch grafana push``: read the settings, push, print what was done."""
    from spinewatch.service.config import Config  # noqa: PLC0415
    from spinewatch.service.dashboards import DASHBOARDS, DATASOURCE  # noqa: PLC0415
    from spinewatch.service.dashboards.grafana_push import check_url, connect, datasource_model, push  # noqa: PLC0415

    url = args.url or os.environ.get("GRAFANA_URL", "")
    token = os.environ.get(args.token_env, "")
    if not url:
        raise ConfigError("--url", url, "Grafana's base URL, e.g. https://grafana.example.org (or GRAFANA_URL)")
    url = check_url(url, "--url" if args.url else "GRAFANA_URL")
    if not token:
        raise ConfigError(args.token_env, "", "a Grafana service-account token with the Editor role or above")
    influx = Config.load(path=getattr(args, "config", None)).influx
    if influx.kind == "none":
        raise ConfigError("SPINEWATCH_INFLUX_URL", "", "the InfluxDB the dashboards read")
    ds = datasource_model(influx, DATASOURCE["uid"], args.datasource_url)
    result = push(connect(url, token), [b() for b in DASHBOARDS.values()], ds, args.folder_uid, args.folder)
    print(f"folder {args.folder_uid!r}: {result.folder}; data source {ds['uid']!r}: {result.datasource}; "
          f"dashboards: {', '.join(result.dashboards)}")
    return 0


def add_grafana_commands(subparsers: Any) -> None:
    """Add ``grafana push`` to the ``spinewatch`` command line."""
    g = subparsers.add_parser(
        "grafana", help="Grafana administration",
        description="Put the SpineWatch folder, data source and dashboards into an existing Grafana.",
        epilog="example: GRAFANA_TOKEN=glsa_... spinewatch grafana push --url https://grafana.example.org",
    )
    g_sub = g.add_subparsers(dest="grafana_command", required=True, metavar="SUBCOMMAND")
    p = g_sub.add_parser(
        "push", help="create or update the SpineWatch folder, data source and dashboards",
        description=(
            "Create or update, idempotently, the SpineWatch folder, the InfluxDB data source and every "
            "dashboard in an existing Grafana through its HTTP API. Needs `pip install 'spinewatch[grafana]'` "
            "and a service-account token (Editor role or above). The data source points at "
            "SPINEWATCH_INFLUX_URL / _DB (or _BUCKET + _TOKEN for InfluxDB 2.x/3.x via DBRP); give "
            "--datasource-url when Grafana reaches InfluxDB at another address, and a read-only InfluxDB "
            "user in SPINEWATCH_INFLUX_USERNAME / _PASSWORD."
        ),
        epilog="example: GRAFANA_TOKEN=glsa_... spinewatch grafana push --url https://grafana.example.org",
    )
    p.add_argument("--url", default="", help="Grafana base URL (default: $GRAFANA_URL)")
    p.add_argument("--token-env", default="GRAFANA_TOKEN", metavar="VAR",
                   help="environment variable holding the API token (default GRAFANA_TOKEN)")
    p.add_argument("--folder", default=FOLDER_TITLE, help=f"folder title (default {FOLDER_TITLE!r})")
    p.add_argument("--folder-uid", default=FOLDER_UID, help=f"folder uid (default {FOLDER_UID!r})")
    p.add_argument("--datasource-url", default="", metavar="URL",
                   help="InfluxDB URL as Grafana's server reaches it (default: SPINEWATCH_INFLUX_URL)")
    p.set_defaults(func=cmd_grafana_push)
