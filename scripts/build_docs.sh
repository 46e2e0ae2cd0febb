#!/usr/bin/env bash
# Build the API reference from the docstrings into build/docs-api/ (open index.html). Offline:
# Sphinx's autodoc imports the package and reads it; nothing is fetched. Needs the docs extra:
#   .venv/bin/python -m pip install -e '.[docs]'
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
rm -rf docs/api/_generated
# autosummary writes one stub page per module into docs/api/_generated; they are build output.
trap 'rm -rf docs/api/_generated' EXIT
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$PY" -m sphinx -b html -q -j 1 docs/api build/docs-api "$@"
echo "API reference: build/docs-api/index.html"
