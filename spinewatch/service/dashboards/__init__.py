"""Grafana dashboards as code: JSON generated here, committed under dashboards/json/.

Every InfluxDB target is raw InfluxQL (``rawQuery: true``) using Grafana's ``$timeFilter``,
``$__interval`` and the template variables (``$patient``, ``$device``, ``$threshold_deg`` ...),
so the queries run unchanged on InfluxDB 1.x, 2.x (DBRP mapping) and 3.x. Definitions of
every figure: docs/dashboards.md.

Regenerate with ``python -m spinewatch.service.dashboards``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from spinewatch.service.dashboards import clinic, compliance, day, live, trends
from spinewatch.service.dashboards._common import (
    DATASOURCE,
    SERIES_FILTER,
    expand,
    iter_queries,
    resolve_query_variables,
    variable_defaults,
)
from spinewatch.service.dashboards._eval import Frame, evaluate, visible

__all__ = ["DASHBOARDS", "DATASOURCE", "SERIES_FILTER", "Frame", "evaluate", "expand", "iter_queries",
           "resolve_query_variables", "variable_defaults", "visible", "write_all"]

DASHBOARDS: Final[dict[str, Callable[[], dict[str, Any]]]] = {
    "clinic-overview.json": clinic.build,
    "patient-live.json": live.build,
    "patient-day.json": day.build,
    "patient-trends.json": trends.build,
    "rtm-compliance.json": compliance.build,
}


def write_all(out_dir: Path) -> list[Path]:
    """Write every dashboard's JSON into ``out_dir``; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, build in DASHBOARDS.items():
        p = out_dir / name
        p.write_text(json.dumps(build(), indent=2, sort_keys=True) + "\n")
        paths.append(p)
    return paths
