"""``spinewatch bridge run --replay FILE`` with a file that is not a recording: one line, exit 2.

Through the real CLI entry point (``spinewatch.service.cli.main``); the file is checked before
anything else (no broker needed), and the line names the file and what is wrong with it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spinewatch.firmware_bridge.replay import COLUMNS, FORMAT_LINE
from spinewatch.service.cli import main

HEADER = f"{FORMAT_LINE} rate_hz=100\n{','.join(COLUMNS)}\n"


def _missing(d: Path) -> Path:
    return d / "nofile.csv"


def _header_only(d: Path) -> Path:
    (p := d / "empty.csv").write_text(HEADER)
    return p


def _short_row(d: Path) -> Path:
    (p := d / "short.csv").write_text(HEADER + "0,0.1,0.2,9.8,0,0,0,0\n10000000,0.1,0.2\n")
    return p


def _not_utf8(d: Path) -> Path:
    (p := d / "latin1.csv").write_bytes(b"\xff\xfe\x00 not text")
    return p


def _not_npz(d: Path) -> Path:
    (p := d / "garbage.npz").write_bytes(b"this is not a zip archive\n")
    return p


def _folder(d: Path) -> Path:
    (p := d / "rec.csv").mkdir()
    return p


@pytest.mark.parametrize(("make", "problem"), [
    (_missing, "cannot be read (no such file or directory)"),
    (_header_only, "holds no samples"),
    (_short_row, "bad row: line 4 has 3 fields"),
    (_not_utf8, "not a CSV recording (not UTF-8 text)"),
    (_not_npz, "not a .npz recording (not a NumPy .npz archive)"),
    (_folder, "cannot be read (is a directory)"),
])
def test_replay_of_a_bad_file_is_one_line_naming_file_and_problem(make, problem, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SPINEWATCH_MQTT_URL", raising=False)  # the file is checked first
    path = make(tmp_path)
    rc = main(["bridge", "run", "--replay", str(path), "--patient", "p-replay"])
    err = capsys.readouterr().err
    assert rc == 2, err  # the CLI's status for usage/configuration errors
    assert "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith(f"spinewatch: configuration error: --replay='{path}' is not valid: "), line
    assert line.endswith(f"{path}: {problem}"), line
