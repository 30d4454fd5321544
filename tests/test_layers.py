"""The layering of service/ (docs/developer-guide.md, "Layers"), checked by import-linter.

The contracts live in pyproject.toml under ``[tool.importlinter]``: the stages of service/
depend downwards only (cli > ops > reports | dashboards > bridge | ingest > storage >
transport > config), signal/ and firmware_bridge/ never import service/, model, errors
and backoff import no component, only the demo imports the embedded broker, sibling modules
form no import cycle, and private modules (``_name``) are imported only inside their package.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> str:
    beside = Path(sys.executable).with_name("lint-imports")  # the one installed with the test extra
    found = str(beside) if beside.is_file() else shutil.which("lint-imports")
    assert found, "lint-imports not found: install the test extra (pip install -e '.[test]')"
    return found


def test_import_contracts_are_kept():
    r = subprocess.run([_lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout, r.stdout


def test_the_contracts_cover_every_stage_of_service():
    """Every sub-package of service/ is in the layers contract (exhaustive), so a new one cannot
    slip in unchecked; the contract names the layers in the documented order."""
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in cfg["contracts"] if c["type"] == "layers")
    assert layers["exhaustive"] is True
    assert layers["layers"] == ["cli", "ops", "reports | dashboards", "bridge | ingest", "storage", "transport",
                                "config"]
