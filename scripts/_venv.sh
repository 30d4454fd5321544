# Sourced by scripts/test and scripts/demo: make .venv (Python >= 3.11) and install the
# project into it with pip install -e "$PIP_SPEC", re-running pip only when pyproject.toml
# or the spec changed. Expects ROOT, VENV, PIP_SPEC and the say/die functions.
# ---------------------------------------------------------------- Python + venv
py_ok() {  # is "$1" a Python >= 3.11?
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null
}

if [[ -x "$VENV/bin/python" ]] && ! py_ok "$VENV/bin/python"; then
    die ".venv uses $("$VENV/bin/python" -V 2>&1), but SpineWatch needs Python >= 3.11. Remove .venv and re-run."
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    PY=""
    for cand in ${PYTHON:-} python3 python3.13 python3.12 python3.11; do
        if command -v "$cand" >/dev/null 2>&1 && py_ok "$cand"; then PY=$(command -v "$cand"); break; fi
    done
    if [[ -z "$PY" ]]; then
        found=$(python3 -V 2>&1 || echo "no python3")
        die "Python >= 3.11 is required (found: $found). Install python3.11 (e.g. apt-get install python3.11 python3.11-venv) or set PYTHON=/path/to/python3.11."
    fi
    say "creating .venv with $("$PY" -V 2>&1)"
    if ! "$PY" -m venv "$VENV"; then
        rm -rf "$VENV"  # don't leave a half-made venv behind for the next run
        die "'$PY -m venv .venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
    fi
fi
if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    die ".venv has no working pip; remove .venv and re-run (on Debian/Ubuntu you may need: apt-get install python3-venv)"
fi

# Reinstall only when the project metadata changed (or the last install failed).
STAMP="$VENV/.spinewatch-install-stamp"
want=$( { echo "$PIP_SPEC"; cat pyproject.toml; cat setup.cfg setup.py 2>/dev/null || true; } | sha256sum | cut -d' ' -f1)
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]]; then
    say "installing spinewatch into .venv (pip install -e '$PIP_SPEC')"
    log=$(mktemp)
    if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$PIP_SPEC" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        die "pip install -e '$PIP_SPEC' failed (output above)"
    fi
    # pip -q still prints warnings/errors worth seeing; drop only the noise about
    # configured-but-absent local index directories
    grep -v "^WARNING: Location '.*' is ignored: it is neither a file nor a directory" "$log" >&2 || true
    rm -f "$log"
    echo "$want" >"$STAMP"
fi

