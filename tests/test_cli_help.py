"""Every command and command group has --help with an example, and the examples run (issue 13)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from spinewatch.service.cli import build_parser

TODAY_UTC = "$(date -u +%F)"


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                                        argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def _examples(epilog: str) -> list[str]:
    """The command lines of an epilog's ``example:`` / ``examples:`` (continuations joined, comments cut)."""
    commands = []
    for raw in epilog.replace("\\\n", " ").splitlines():
        line = re.sub(r"^\s*examples?:\s*", "", raw).strip()
        line = re.sub(r"\s+#.*$", "", line)  # a comment
        line = re.sub(r"\s+\([^()]*\)$", "", line)  # a remark in parentheses
        commands += [c.strip() for c in line.split("&&") if "spinewatch" in c]
    return commands


PARSERS = list(_walk(build_parser()))


def test_every_command_and_group_is_walked() -> None:
    paths = {p for p, _ in PARSERS}
    assert {(), ("influx",), ("bridge",), ("config",), ("grafana",), ("report",), ("influx", "init")} <= paths


@pytest.mark.parametrize(("path", "parser"), PARSERS, ids=[" ".join(p) or "spinewatch" for p, _ in PARSERS])
def test_help_shows_an_example_that_parses(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    assert "example" in parser.format_help(), f"spinewatch {' '.join(path)} --help has no example"
    examples = _examples(parser.epilog or "")
    assert examples, parser.epilog
    shown = []
    for example in examples:
        argv = shlex.split(example.replace(TODAY_UTC, dt.datetime.now(dt.UTC).date().isoformat()))
        while argv and re.match(r"^[A-Z_]+=", argv[0]):
            argv.pop(0)  # VAR=value before the command
        assert argv[0] == "spinewatch", example
        build_parser().parse_args(argv[1:])  # SystemExit (exit 2) if the example does not parse
        shown.append(argv[1:1 + len(path)] == list(path))
    assert any(shown), f"no example of `spinewatch {' '.join(path)}` in {examples}"


def test_no_example_uses_a_fixed_date_for_the_demos_data() -> None:
    """The demo simulates today: an example reading the demo's store must not name a fixed day."""
    for path, parser in PARSERS:
        for example in _examples(parser.epilog or ""):
            if "out/spinewatch.sqlite" in example or "p-demo" in example:
                assert not re.search(r"\d{4}-\d{2}-\d{2}", example), (path, example)


def test_the_report_example_runs_after_the_demo(tmp_path: Path) -> None:
    """`spinewatch report --help`'s demo example, run as printed (by a shell) after a short demo."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPINEWATCH_", "GRAFANA_"))}
    bindir = Path(sys.executable).parent
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    report_parser = dict(PARSERS)[("report",)]
    demo_example = next(e for e in _examples(report_parser.epilog or "") if "p-demo" in e)
    demo = subprocess.run(["spinewatch", "demo", "--duration", "10m"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert demo.returncode == 0, demo.stderr
    res = subprocess.run(["bash", "-c", demo_example], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    days = json.loads(res.stdout)["days"]
    assert [d["has_data"] for d in days] == [True]
