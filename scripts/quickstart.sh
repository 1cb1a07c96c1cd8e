#!/usr/bin/env bash
# Sets up .venv (if needed) with taskit, then runs the quick start on the memory broker.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e . 2>&1 \
  | { grep -v -e "is ignored: it is neither a file nor a directory" || true; }
exec .venv/bin/python examples/quickstart.py
