"""The ``spinewatch`` command line: one module per command group, argument parsing and printing only.

| module | commands |
|---|---|
| ``main`` | the parser that gathers the groups, :func:`main` (the ``spinewatch`` entry point) |
| ``args`` | shared argument helpers: durations, speeds, sensor and replay options |
| ``demo``, ``ingest``, ``influx`` | ``demo``, ``ingest``, ``influx init`` |
| ``bridge``, ``calibrate``, ``config`` | ``bridge scan/run/record``, ``calibrate``, ``config get/set`` |
| ``report``, ``export``, ``doctor`` | ``report``, ``export``, ``doctor`` |

``grafana push`` is registered by :mod:`spinewatch.service.dashboards.grafana_push`.
"""

from spinewatch.service.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
