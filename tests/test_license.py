"""The repository carries the licence pyproject declares, and README says which data has another."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_license_file_is_the_apache_2_license_pyproject_declares() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]["text"]
    text = (ROOT / "LICENSE").read_text()
    assert declared == "Apache-2.0"
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_readme_names_the_data_under_other_licences() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## License", 1)[1]
    assert "[LICENSE](LICENSE)" in section and "Apache License 2.0" in section
    assert "BROAD" in section and "CC BY 4.0" in section
