"""The one retry-delay policy (spinewatch/backoff.py): growth, cap and jitter kinds, as a table."""

from __future__ import annotations

import pytest

from spinewatch.backoff import JITTER_KINDS, backoff_delay_s

BLE = {"growth": 1.5, "max_exponent": 10}  # the shapes of the two callers
SERVER = {"base_s": 1.0, "growth": 2.0, "max_exponent": 15, "cap_s": 30.0}


@pytest.mark.parametrize(
    ("attempt", "kwargs", "expected_s"),
    [
        # growth: base * growth ** (attempt - 1)
        (1, {"base_s": 1.0, "cap_s": 60.0, **BLE}, 1.0),
        (2, {"base_s": 1.0, "cap_s": 60.0, **BLE}, 1.5),
        (3, {"base_s": 2.0, "cap_s": 60.0, **BLE}, 4.5),
        (1, SERVER, 1.0),
        (2, SERVER, 2.0),
        (5, SERVER, 16.0),
        # the exponent stops at max_exponent
        (11, {"base_s": 1.0, "cap_s": 100.0, **BLE}, 1.5**10),
        (50, {"base_s": 1.0, "cap_s": 100.0, **BLE}, 1.5**10),
        (10**6, {**SERVER, "cap_s": 1e9}, 2.0**15),  # finite however long it retries
        # the cap binds before jitter
        (6, SERVER, 30.0),
        (20, {"base_s": 2.0, "cap_s": 60.0, **BLE}, 60.0),
        (1, {"base_s": 5.0, "cap_s": 2.0, **BLE}, 2.0),
    ],
)
@pytest.mark.parametrize("jitter", JITTER_KINDS)
def test_growth_and_cap_at_the_top_of_the_jitter(attempt, kwargs, expected_s, jitter):
    assert backoff_delay_s(attempt, jitter=jitter, draw=1.0, **kwargs) == pytest.approx(expected_s)


@pytest.mark.parametrize(
    ("jitter", "draw", "expected_s"),
    [
        ("full", 0.0, 0.0),  # full jitter: anywhere in [0, delay]
        ("full", 0.25, 1.0),
        ("full", 1.0, 4.0),
        ("equal", 0.0, 2.0),  # equal jitter: never below half
        ("equal", 0.5, 3.0),
        ("equal", 1.0, 4.0),
    ],
)
def test_jitter_kinds(jitter, draw, expected_s):
    assert backoff_delay_s(3, **SERVER, jitter=jitter, draw=draw) == pytest.approx(expected_s)


@pytest.mark.parametrize(
    ("attempt", "jitter", "draw", "match"),
    [
        (0, "full", 0.5, "attempt"),
        (-1, "equal", 0.5, "attempt"),
        (1, "none", 0.5, "jitter must be one of"),
        (1, "full", 1.5, "draw"),
        (1, "equal", -0.1, "draw"),
    ],
)
def test_bad_arguments_are_refused(attempt, jitter, draw, match):
    with pytest.raises(ValueError, match=match):
        backoff_delay_s(attempt, **SERVER, jitter=jitter, draw=draw)


@pytest.mark.parametrize(("jitter", "low_s"), [("full", 0.0), ("equal", 4.0)])
def test_without_a_draw_it_jitters_within_the_kinds_range(jitter, low_s):
    draws = [backoff_delay_s(4, **SERVER, jitter=jitter) for _ in range(200)]
    assert len(set(draws)) > 1 and all(low_s <= d <= 8.0 for d in draws)
    assert max(draws) > 0.5 * (low_s + 8.0)  # spread over the range, not bunched at the bottom


def test_the_module_is_standard_library_only():
    """It sits below every component (beside model.py and errors.py): nothing of spinewatch,
    no third-party package."""
    import ast
    import sys
    from pathlib import Path

    import spinewatch.backoff

    tree = ast.parse(Path(spinewatch.backoff.__file__).read_text())
    roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    roots |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert roots <= set(sys.stdlib_module_names) | {"__future__"}, roots
