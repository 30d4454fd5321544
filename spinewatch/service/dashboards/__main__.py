"""Regenerate dashboards/json/: ``python -m spinewatch.service.dashboards [OUT_DIR]``."""

from __future__ import annotations

import sys
from pathlib import Path

from spinewatch.service.dashboards import write_all

root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[3] / "dashboards" / "json"
for path in write_all(root):
    print(path)
