#!/usr/bin/env bash
# Create .venv and install the project into it; a no-op when nothing changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP="$VENV/.installed"
# The CPU build of torch: a plain "pip install torch" would pick a multi-GB CUDA build.
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

pick_python() {
    for candidate in python3.11 python3.12 python3.13 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
    echo "setup: Python 3.11 or newer is required" >&2
    exit 1
}

if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt scripts/setup.sh ]; then
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV" >&2
    "$(pick_python)" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)
"${PIP[@]}" install --upgrade pip 2>&1 | grep -v "is ignored" >&2 || true
if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
    echo "setup: installing $TORCH_SPEC (CPU build)" >&2
    "${PIP[@]}" install "$TORCH_SPEC" 2>&1 | grep -v "is ignored" >&2 || true
fi
echo "setup: installing the project and its dependencies" >&2
"${PIP[@]}" install -e ".[dev]" 2>&1 | grep -v "is ignored" >&2 || true
"$VENV/bin/python" -c 'import torch, tokenizers, bot' # fail loudly if the install did not take
touch "$STAMP"
